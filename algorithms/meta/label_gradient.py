"""The meta-gradient of a hold-out loss through imputed labels, along each of its paths.

With z = z(theta) imputed by the model and theta* = K virtual SGD steps from theta on an
inner loss C(theta', z) at fixed labels z (L2I journal Eq. 3; one step: conference Eq. 4),

    dC_H(theta*)/dtheta = g^T [ I                              (identity: theta -> theta*)
                                - eta d(grad_theta' C)/dtheta'  (Hessian, z fixed)
                                - eta d(grad_theta' C)/dz dz/dtheta ]  (through z),  g = grad C_H(theta*)

for one step. Three readings of L2I differentiate different parts of it:

* through z only (journal Eq. 4 and App. B, "theta is not a function of z"; the official
  code, which differentiates w.r.t. a copy of the weights that only imputes):
  :func:`label_meta_gradient` (dC_H(theta*(z))/dz, z an independent leaf) then
  :func:`pull_back` ((dz/dtheta)^T of it);
* z and the Hessian term (theta* = sg(theta) - eta grad_theta C(theta, z(theta)): the graph
  of a virtual step started from the detached weights, differentiated w.r.t. the weights):
  :func:`unrolled_meta_gradient` with ``identity=False``;
* the total derivative (conference Eq. 7, g^T (I - eta grad grad C_A) with C_A's labels the
  model's output): :func:`unrolled_meta_gradient` with ``identity=True``.

All are model-agnostic: they take parameters by name and closures for the losses, so any
loss works (cross-entropy for classification, squared error for regression).
"""
from __future__ import annotations

from typing import Callable, Literal

import torch

from .functional import rng_rewind, virtual_sgd_step

Params = dict[str, torch.Tensor]


def label_meta_gradient(params: Params, z: torch.Tensor, inner_loss: Callable[[Params, torch.Tensor], torch.Tensor],
                        holdout_loss: Callable[[Params], torch.Tensor], inner_lr: float, inner_steps: int = 1,
                        comm=None, mixed: Literal["forward", "reverse"] = "forward") -> tuple[torch.Tensor, torch.Tensor]:
    """dC_H(theta*(z))/dz and C_H(theta*), theta* = ``inner_steps`` SGD steps of ``inner_loss``.

    params: theta by name (detached here); z [b, ...] the imputed labels (an independent
    variable: theta does not depend on z); inner_loss(params, z) -> scalar (this worker's
    share of the inner loss); holdout_loss(params) -> scalar (this worker's share of C_H).
    Second order (exact). With ``comm`` the virtual step uses the global gradient, so on
    worker w the result is W * dC_H/dz_w for its rows z_w (the derivative of the *sum* of the
    workers' hold-out shares).

    How the mixed second derivative is taken: ``reverse``, a double backward through the
    virtual steps' graphs (any ``inner_steps``); ``forward`` (one step only; more fall back to
    ``reverse``), by :func:`one_step_label_gradient`: the same quantity without any graph of
    the virtual step, one forward-mode pass instead of the double backward.
    Returns (grad [same shape as z], C_H(theta*) detached scalar).
    """
    if mixed == "forward" and inner_steps == 1:
        return one_step_label_gradient(params, z, inner_loss, holdout_loss, inner_lr, comm=comm)
    z = z.detach().requires_grad_(True)
    cur = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    for _ in range(inner_steps):
        cur = virtual_sgd_step(cur, inner_loss(cur, z), inner_lr, comm=comm, create_graph=True)
    c_h = holdout_loss(cur)
    (g,) = torch.autograd.grad(c_h, z, allow_unused=True)
    if g is None:  # the inner loss does not reach z (e.g. lambda = 0 or every sample masked)
        g = torch.zeros_like(z)
    return g.detach(), c_h.detach()


def _global(t: torch.Tensor, comm) -> torch.Tensor:
    return comm.all_reduce_mean(t) if comm is not None and comm.world_size > 1 else t


def one_step_label_gradient(params: Params, z: torch.Tensor, inner_loss: Callable[[Params, torch.Tensor], torch.Tensor],
                            holdout_loss: Callable[[Params], torch.Tensor], inner_lr: float,
                            comm=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`label_meta_gradient` for one virtual step, forward over reverse.

    With theta* = theta - eta grad_theta C(theta, z) (global gradient) and v = grad C_H(theta*)
    (averaged over workers), the chain rule gives exactly

        dC_H(theta*(z))/dz = -eta d/dz <v, grad_theta C(theta, z)> = -eta D_v[grad_z C(., z)](theta),

    the directional derivative along v of the map theta -> grad_z C(theta, z): one forward-mode
    pass (``torch.func.jvp``) of a z-gradient that reaches back only through the loss. Passes:
    the inner forward and backward (no graph kept: theta* is a value), the hold-out forward and
    backward at theta*, the forward-mode pass over the inner input; no second-order graph, so
    the peak memory is a training step's. The forward-mode pass sees the dropout masks of the
    virtual step's forward (the RNG is rewound for it and then set where the hold-out forward
    left it, so the stream continues as after :func:`label_meta_gradient`'s ``reverse``).
    Same arguments and result (W * dC_H/dz_w on worker w) as :func:`label_meta_gradient`.
    """
    z = z.detach()
    theta = {n: t.detach() for n, t in params.items()}
    device = z.device
    with rng_rewind(device) as (rewind, resume):
        at = {n: t.detach().requires_grad_(True) for n, t in theta.items()}
        grads = torch.autograd.grad(inner_loss(at, z), list(at.values()), allow_unused=True)
        star = {n: (t if g is None else (t - inner_lr * _global(g, comm)).requires_grad_(True))
                for (n, t), g in zip(theta.items(), grads)}
        c_h = holdout_loss(star)
        wanted = [n for n, t in star.items() if t.requires_grad]
        hold = torch.autograd.grad(c_h, [star[n] for n in wanted], allow_unused=True) if wanted else ()
        found = dict(zip(wanted, hold))
        v = {n: torch.zeros_like(t) if found.get(n) is None else _global(found[n], comm) for n, t in theta.items()}
        resume_at = rewind()  # the forward-mode pass draws the virtual step's dropout masks again

        def grad_z(p: Params) -> torch.Tensor:
            return torch.func.grad(lambda zz: inner_loss(p, zz))(z)

        _, tangent = torch.func.jvp(grad_z, (theta,), (v,))
        resume(resume_at)
    return (-inner_lr * tangent).detach(), c_h.detach()


def unrolled_meta_gradient(params: Params, z_fn: Callable[[Params], torch.Tensor],
                           inner_loss: Callable[[Params, torch.Tensor], torch.Tensor],
                           holdout_loss: Callable[[Params], torch.Tensor], inner_lr: float, inner_steps: int = 1,
                           identity: bool = True, comm=None) -> tuple[Params, torch.Tensor]:
    """dC_H(theta*)/dtheta through z(theta), the Hessian term and (``identity``) theta -> theta*.

    theta* = K SGD steps of ``inner_loss(., z)`` with z = z_fn(theta), the first from theta
    (``identity``: the total derivative, 000 Eq. 7) or from sg(theta) (its gradient still taken
    at theta: the identity path dropped, z and Hessian kept); each step's gradient is the
    partial one at fixed z (z is a label). params: theta by name (detached here); z_fn(params)
    -> z [b, ...]; inner_loss(params, z) -> scalar (this worker's share); holdout_loss(params)
    -> scalar (this worker's share of C_H). With ``comm`` the virtual steps use the global
    gradient; the result is this worker's part (the average over workers is the global
    meta-gradient, as a Stepper takes it).

    Passes: z's forward with graph, per step one inner forward and a backward with graph,
    the hold-out forward, then one backward through all of it (second order).
    Returns (grads by parameter name, C_H(theta*) detached scalar).
    """
    theta = {n: t.detach().requires_grad_(True) for n, t in params.items()}  # theta' of the inner problem
    imputer = {n: t.detach().requires_grad_(True) for n, t in params.items()}  # theta as z's parameters
    z = z_fn(imputer)
    start = theta if identity else {n: t.detach() for n, t in theta.items()}
    cur = virtual_sgd_step(theta, inner_loss(theta, z), inner_lr, comm=comm, create_graph=True, start=start)
    for _ in range(inner_steps - 1):
        cur = virtual_sgd_step(cur, inner_loss(cur, z), inner_lr, comm=comm, create_graph=True)
    c_h = holdout_loss(cur)
    names = list(params)
    grads = torch.autograd.grad(c_h, [theta[n] for n in names] + [imputer[n] for n in names], allow_unused=True)
    out = {}
    for i, n in enumerate(names):
        parts = [g for g in (grads[i], grads[len(names) + i]) if g is not None]
        out[n] = sum(parts) if parts else torch.zeros_like(theta[n])
    return out, c_h.detach()


def pull_back(params: Params, z_fn: Callable[[Params], torch.Tensor], grad_z: torch.Tensor) -> Params:
    """(dz/dtheta)^T grad_z: the vector-Jacobian product of z = z_fn(params) [b, ...]; one
    forward with graph and one backward. Parameters z does not reach get zeros."""
    _, pull = output_and_pull_back(params, z_fn)
    return pull(grad_z)


def output_and_pull_back(params: Params, z_fn: Callable[[Params], torch.Tensor]
                         ) -> tuple[torch.Tensor, Callable[[torch.Tensor], Params]]:
    """z = z_fn(params) [b, ...] (detached) and ``pull(grad_z)`` = (dz/dtheta)^T grad_z on the
    graph of that same forward: one forward for the value and its pull-back (where
    :func:`pull_back` after a separate no-grad forward of z takes two). The graph lives until
    ``pull`` is called (once)."""
    p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    z = z_fn(p)

    def pull(grad_z: torch.Tensor) -> Params:
        grads = torch.autograd.grad(z, list(p.values()), grad_outputs=grad_z, allow_unused=True)
        return {n: (torch.zeros_like(p[n]) if g is None else g) for n, g in zip(p, grads)}

    return z.detach(), pull
