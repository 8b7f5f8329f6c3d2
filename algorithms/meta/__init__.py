"""Meta-learning machinery shared by the meta rules: functional passes and meta-gradients."""
from .functional import bn_mode, directional_derivatives, loss_gradient, meta_buffers, parameters_of

__all__ = ["bn_mode", "directional_derivatives", "loss_gradient", "meta_buffers", "parameters_of"]
