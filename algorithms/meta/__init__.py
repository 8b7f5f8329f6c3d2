"""Meta-learning machinery shared by the meta rules: functional passes, virtual steps,
directional derivatives (the first-order primitive), the label meta-gradient, shared weights
and projections, the rule template and its composition with base methods."""
from .functional import (bn_mode, directional_derivatives, functional_forward, global_loss_gradient, loss_gradient,
                         meta_buffers, parameters_of, squared_norm, virtual_sgd_step)
from .label_gradient import label_meta_gradient, pull_back, unrolled_meta_gradient
from .weights import clip_to_simplex, positive_part_weights, sign_weights

__all__ = ["bn_mode", "clip_to_simplex", "directional_derivatives", "functional_forward", "global_loss_gradient",
           "label_meta_gradient", "loss_gradient", "meta_buffers", "parameters_of", "positive_part_weights", "pull_back",
           "sign_weights", "squared_norm", "unrolled_meta_gradient", "virtual_sgd_step"]
