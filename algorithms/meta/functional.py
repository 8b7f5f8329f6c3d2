"""The one primitive behind the first-order meta rules, and the functional passes around it.

One virtual SGD step theta_1 = theta - alpha * sum_j w_j grad L_j(theta), evaluated on the
labeled loss G, gives  dG(theta_1)/dw_j |_{w=0} = -alpha <grad G(theta), grad L_j(theta)>
(Meta-Semi Eq. 10; Meta-Gradient SSL Eq. 7-8). The inner product of every per-sample
gradient with one vector v = grad G is a *directional derivative along v* of the vector of
per-sample losses: one forward-mode pass (``torch.func.jvp``) or two perturbed forwards
(finite differences), never per-sample gradients or a double backward.

Meta passes are functional (``torch.func.functional_call``) and never touch the model's
BatchNorm running statistics: in ``train`` BN mode the statistics buffers are passed as None
(batch statistics, no update), in ``eval`` BN mode the module runs in eval mode with its
stored statistics.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Literal

import torch
from torch import nn
from torch.func import functional_call, jvp

BNMode = Literal["train", "eval"]
PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits [B, C], targets) -> [B]


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached views of the trainable parameters, by name (the point theta of a meta pass)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def meta_buffers(model: nn.Module, mode: BNMode) -> dict[str, torch.Tensor | None]:
    """Buffers for a functional meta pass that leaves running statistics untouched.

    ``train``: BatchNorm statistics (and their counters) are None, so BN normalises with the
    batch's statistics and updates nothing. ``eval``: the stored buffers (read only).
    """
    out: dict[str, torch.Tensor | None] = {}
    for mod_name, mod in model.named_modules():
        for b_name, buf in mod.named_buffers(recurse=False):
            key = f"{mod_name}.{b_name}" if mod_name else b_name
            is_bn = isinstance(mod, nn.modules.batchnorm._BatchNorm)
            out[key] = None if (is_bn and mode == "train") else buf
    return out


@contextlib.contextmanager
def bn_mode(model: nn.Module, mode: BNMode) -> Iterator[None]:
    """Run the block with the model in train (``train``) or eval (``eval``) mode, then restore."""
    was_training = model.training
    model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was_training)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any module of ``model`` is a BatchNorm layer (whose stored statistics an
    eval-mode meta pass reads)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def rng_state(device: torch.device) -> tuple:
    """The global RNG's state: (CPU state, ``device``'s CUDA state or None). Host tensors both:
    reading them never waits for the device."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def same_rng_state(a: tuple, b: tuple) -> bool:
    """Whether two :func:`rng_state` readings are equal (nothing drew from the RNG between them)."""
    return all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a, b))


@contextlib.contextmanager
def rng_rewind(device: torch.device) -> Iterator[tuple[Callable[[], object], Callable[[object], None]]]:
    """Yields ``(rewind, resume)``: ``rewind()`` sets the global RNG (CPU, and ``device`` if
    CUDA) back to where it stood on entry and returns where it stood before the call;
    ``resume(that)`` puts it there again. For a pass that must redraw an earlier pass's
    dropout masks and leave training's stream as if it had never run."""
    cuda = device.type == "cuda"

    def state() -> tuple:
        return rng_state(device)

    def put(st: tuple) -> None:
        torch.set_rng_state(st[0])
        if cuda:
            torch.cuda.set_rng_state(st[1], device)

    entry = state()

    def rewind() -> tuple:
        now = state()
        put(entry)
        return now

    yield rewind, put


@contextlib.contextmanager
def same_randomness(device: torch.device) -> Iterator[Callable[[], None]]:
    """Yields ``again()``, which rewinds the global RNG (CPU, and ``device`` if CUDA) to where it
    stood on entry, so two forwards draw identical dropout masks; the stream then continues
    from where the last forward left it (no draws are replayed for training)."""
    with rng_rewind(device) as (rewind, _):
        def again() -> None:
            rewind()

        yield again


def _forward(model: nn.Module, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model, (params, buffers), (x,), strict=False)


def loss_gradient(model: nn.Module, loss_fn: PerSampleLoss, x: torch.Tensor, targets: torch.Tensor,
                  mode: BNMode = "train") -> dict[str, torch.Tensor]:
    """grad_theta of mean_i loss_fn(f_theta(x), targets)_i, as a dict by parameter name.

    x [B, ...]; the model's parameters get no ``.grad`` and BN statistics are not updated.
    """
    params = {n: p.detach().requires_grad_(True) for n, p in parameters_of(model).items()}
    with bn_mode(model, mode):
        loss = loss_fn(_forward(model, params, meta_buffers(model, mode), x), targets).mean()
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params.keys(), grads))


def global_loss_gradient(model: nn.Module, loss_fn: PerSampleLoss, x: torch.Tensor, targets: torch.Tensor,
                         mode: BNMode, comm) -> dict[str, torch.Tensor]:
    """grad_theta of the *global* mean loss (by parameter name): :func:`loss_gradient` on this
    worker's shard x [b, ...], averaged over workers (equal shards). The labeled direction
    v = grad G of the first-order rules."""
    v = loss_gradient(model, loss_fn, x, targets, mode)
    return {n: comm.all_reduce_mean(t) for n, t in v.items()}


def squared_norm(tensors) -> torch.Tensor:
    """sum_t ||t||^2 in float64 over an iterable of tensors (detached; a 0-dim tensor)."""
    return sum((t.detach().double() ** 2).sum() for t in tensors)


def directional_derivatives(model: nn.Module, loss_fn: PerSampleLoss, x: torch.Tensor, targets: torch.Tensor,
                            direction: dict[str, torch.Tensor], mode: BNMode = "train",
                            method: Literal["jvp", "fd"] = "jvp", eps_scale: float = 0.01,
                            with_value: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """<grad_theta L_j(theta), v> for every sample j: x [B, ...], targets [B, ...] -> [B].

    ``direction`` v is a dict by parameter name (e.g. the labeled gradient from
    :func:`loss_gradient`, already averaged over workers). ``jvp``: exact, one forward-mode
    pass. ``fd``: central difference (L(theta + eps v) - L(theta - eps v)) / (2 eps) with
    eps = eps_scale / ||v|| (Meta-Gradient SSL Eq. 10-11), two forwards, O(eps^2) error.
    In ``train`` BN mode each forward uses the statistics of ``x`` itself.

    ``with_value``: return (L(theta) [B, ...], derivatives). ``jvp`` computes L(theta) anyway
    (the primal of the forward-mode pass: free); ``fd`` needs a third forward, at theta, after
    the two perturbed ones.
    """
    params = parameters_of(model)
    v = {n: direction[n].detach() for n in params}
    buffers = meta_buffers(model, mode)
    with bn_mode(model, mode):
        if method == "jvp":
            def losses_at(p: dict[str, torch.Tensor]) -> torch.Tensor:
                return loss_fn(_forward(model, p, buffers, x), targets)

            value, d = jvp(losses_at, (params,), (v,))
            return (value.detach(), d.detach()) if with_value else d.detach()
        if method == "fd":
            # eps is a 0-dim device tensor, so the step never waits for ||v||; a zero v gives zeros
            # shaped like the per-sample quantity ([B], or [B, C] for logits)
            norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v.values()))
            some = norm > 0
            eps = eps_scale / torch.where(some, norm, 1.0)
            with torch.no_grad(), same_randomness(x.device) as again:
                plus = loss_fn(_forward(model, {n: p + eps * v[n] for n, p in params.items()}, buffers, x), targets)
                again()  # dropout (or shake-shake) must draw the same masks in both forwards
                minus = loss_fn(_forward(model, {n: p - eps * v[n] for n, p in params.items()}, buffers, x), targets)
            d = torch.where(some, (plus - minus) / (2 * eps), torch.zeros_like(plus))
            if not with_value:
                return d
            with torch.no_grad():
                return loss_fn(_forward(model, params, buffers, x), targets), d
    raise ValueError(f"unknown meta-gradient method {method!r}: choose jvp or fd")


def functional_forward(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                       mode: BNMode = "train") -> torch.Tensor:
    """f_params(x) without touching the model's BatchNorm statistics (see :func:`meta_buffers`).

    ``params`` maps parameter names to tensors (possibly carrying a graph, e.g. stepped
    parameters of a virtual step); x [B, ...] -> logits [B, C].
    """
    with bn_mode(model, mode):
        return _forward(model, params, meta_buffers(model, mode), x)


def virtual_sgd_step(params: dict[str, torch.Tensor], loss: torch.Tensor, lr: float,
                     comm=None, create_graph: bool = True,
                     start: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """theta_1 = theta - lr * grad_theta(loss): one differentiable (virtual) SGD step.

    ``start`` (default ``params``): the point the step is taken from, when it is another
    tensor of the same value than the one the gradient is taken at (e.g. ``params`` detached,
    to drop the identity path theta -> theta_1 and keep the Hessian one).

    ``params`` must require grad and ``loss`` depend on them. Under data parallelism ``loss``
    is this worker's share of a global mean; pass ``comm`` so the step uses the global
    gradient through a differentiable all-reduce (``Comm.all_reduce_mean_autograd``). With
    ``create_graph`` the result stays differentiable w.r.t. ``params`` and anything ``loss``
    depends on (imputed labels), for second-order meta-gradients (L2I exact, Meta-Gradient
    SSL Alg. 1). Parameters the loss does not reach are returned unchanged.
    """
    names = list(params)
    start = params if start is None else start
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True)
    out = {}
    for n, g in zip(names, grads):
        if g is None:
            out[n] = start[n]
            continue
        if comm is not None and comm.world_size > 1:
            g = comm.all_reduce_mean_autograd(g)
        out[n] = start[n] - lr * g
    return out
