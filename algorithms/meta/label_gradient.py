"""The meta-gradient of a hold-out loss with respect to imputed labels, and its pull-back.

:func:`label_meta_gradient` is dC_H(theta*(z))/dz with theta* = K virtual SGD steps on an
inner loss at fixed labels z (L2I journal Eq. 3; one step: conference Eq. 4-5). z is an
independent leaf inside the virtual step ("theta is not a function of z", journal App. B):
the step's own dependence on theta (the identity path theta -> theta* and the Hessian path
through grad_theta C at fixed z) is not part of the result. :func:`pull_back` turns it into
a gradient of the weights through z(theta) (journal Eq. 4):

    dC_H/dtheta = (dz/dtheta)^T  dC_H(theta*(z))/dz

Both are model-agnostic: they take parameters by name and closures for the losses, so any
loss works (cross-entropy for classification, squared error for regression).
"""
from __future__ import annotations

from typing import Callable

import torch

from .functional import virtual_sgd_step

Params = dict[str, torch.Tensor]


def label_meta_gradient(params: Params, z: torch.Tensor, inner_loss: Callable[[Params, torch.Tensor], torch.Tensor],
                        holdout_loss: Callable[[Params], torch.Tensor], inner_lr: float, inner_steps: int = 1,
                        comm=None) -> tuple[torch.Tensor, torch.Tensor]:
    """dC_H(theta*(z))/dz and C_H(theta*), theta* = ``inner_steps`` SGD steps of ``inner_loss``.

    params: theta by name (detached here); z [b, ...] the imputed labels (an independent
    variable: theta does not depend on z); inner_loss(params, z) -> scalar (this worker's
    share of the inner loss); holdout_loss(params) -> scalar (this worker's share of C_H).
    Second order: each virtual step keeps its graph. With ``comm`` the virtual step uses the
    global gradient, so on worker w the result is W * dC_H/dz_w for its rows z_w (the
    derivative of the *sum* of the workers' hold-out shares).
    Returns (grad [same shape as z], C_H(theta*) detached scalar).
    """
    z = z.detach().requires_grad_(True)
    cur = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    for _ in range(inner_steps):
        cur = virtual_sgd_step(cur, inner_loss(cur, z), inner_lr, comm=comm, create_graph=True)
    c_h = holdout_loss(cur)
    (g,) = torch.autograd.grad(c_h, z, allow_unused=True)
    if g is None:  # the inner loss does not reach z (e.g. lambda = 0 or every sample masked)
        g = torch.zeros_like(z)
    return g.detach(), c_h.detach()


def pull_back(params: Params, z_fn: Callable[[Params], torch.Tensor], grad_z: torch.Tensor) -> Params:
    """(dz/dtheta)^T grad_z: the vector-Jacobian product of z = z_fn(params) [b, ...]; one
    forward with graph and one backward. Parameters z does not reach get zeros."""
    p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    z = z_fn(p)
    grads = torch.autograd.grad(z, list(p.values()), grad_outputs=grad_z, allow_unused=True)
    return {n: (torch.zeros_like(p[n]) if g is None else g) for n, g in zip(p, grads)}
