"""Meta-learning machinery shared by the meta rules: functional passes, virtual steps,
directional derivatives (the first-order primitive), rules and their composition with bases."""
from .functional import (bn_mode, directional_derivatives, functional_forward, loss_gradient, meta_buffers,
                         parameters_of, virtual_sgd_step)

__all__ = ["bn_mode", "directional_derivatives", "functional_forward", "loss_gradient", "meta_buffers",
           "parameters_of", "virtual_sgd_step"]
