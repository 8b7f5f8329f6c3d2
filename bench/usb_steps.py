"""Both sides of ``bench.usb_compare``: the inputs, our step and USB's step for one base
method, the networks' forward+backward, and a layer-by-layer check of the two WRN-28-2s.
Nothing here imports ``semilearn`` until a USB step or check is built."""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

@dataclass(frozen=True)
class BaseSpec:
    """One base method on both sides. ``second_view``: what USB's loader gives as ``x_ulb_s``
    for it (a strong view for FixMatch, a second weak view for MixMatch and Mean Teacher)."""

    ours: str
    usb: str
    batch_labeled: int
    batch_unlabeled: int
    second_view: str
    usb_config: dict = field(default_factory=dict)
    paper_batch: str = ""


# Batches scaled down for CPU from the papers' (the USB configs use the same 64 labeled).
BASES: dict[str, BaseSpec] = {
    "fixmatch": BaseSpec("fixmatch", "fixmatch", 16, 48, "strong", {"ulb_loss_ratio": 1.0},
                         "paper: 64 + 7 x 64 unlabeled x 2 views"),
    "mixmatch": BaseSpec("mixmatch", "mixmatch", 32, 32, "weak",
                         {"ulb_loss_ratio": 100.0, "mixup_alpha": 0.5, "T": 0.5, "unsup_warm_up": 1 / 64},
                         "paper: 64 + 64 unlabeled x K=2 views"),
    "mean_teacher": BaseSpec("mean_teacher", "meanteacher", 32, 32, "weak",
                             {"ulb_loss_ratio": 50.0, "unsup_warm_up": 0.4},
                             "USB config: 64 + 64 unlabeled, student and teacher views"),
}
TOTAL_STEPS = 2 ** 20  # USB's classic configs (1,048,576 iterations); sets the schedules only


@dataclass
class Views:
    """One step's inputs: x_lb [B_l, 3, 32, 32], y_lb [B_l], x_ulb_w / x_ulb_s [B_u, 3, 32, 32]
    (augmented), and the raw x_l / x_u they came from (for ``--with-augment``)."""

    x_l: torch.Tensor
    x_u: torch.Tensor
    x_lb: torch.Tensor
    y_lb: torch.Tensor
    x_ulb_w: torch.Tensor
    x_ulb_s: torch.Tensor


def make_views(spec: BaseSpec, count: int, seed: int) -> list[Views]:
    """``count`` steps' inputs: CIFAR-10-normalised random pixels, augmented with our CIFAR-10
    weak (and, for FixMatch's second view, strong) augmentation."""
    from datasets.augment import WEAK, strong_augment_for, weak_augment_for

    g = torch.Generator().manual_seed(seed)
    stats = WEAK["cifar10"]
    mean, std = torch.tensor(stats.mean)[:, None, None], torch.tensor(stats.std)[:, None, None]
    weak, strong = weak_augment_for("cifar10"), strong_augment_for("cifar10")
    second = strong if spec.second_view == "strong" else weak
    out = []
    for _ in range(count):
        x_l = (torch.rand((spec.batch_labeled, 3, 32, 32), generator=g) - mean) / std
        x_u = (torch.rand((spec.batch_unlabeled, 3, 32, 32), generator=g) - mean) / std
        y = torch.randint(0, 10, (spec.batch_labeled,), generator=g)
        out.append(Views(x_l, x_u, weak(x_l, g), y, weak(x_u, g), second(x_u, g)))
    return out


class Replay:
    """An augmentation returning prepared views in call order: ours sees USB's inputs."""

    def __init__(self) -> None:
        self.queue: list[torch.Tensor] = []

    def load(self, views: list[torch.Tensor]) -> None:
        if self.queue:
            raise RuntimeError(f"{len(self.queue)} prepared views were not used by the last step")
        self.queue = list(views)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        del generator
        view = self.queue.pop(0)
        if view.shape != x.shape:
            raise RuntimeError(f"replayed view {tuple(view.shape)} for a batch {tuple(x.shape)}")
        return view


def replay_order(base: str, v: Views) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weak, strong) views in the order our method asks for them, matching USB's roles."""
    if base == "fixmatch":  # views(x_l), views(x_u), strong_views(x_u)
        return [v.x_lb, v.x_ulb_w], [v.x_ulb_s]
    if base == "mixmatch":  # augment(x_l), then K = 2 views of x_u
        return [v.x_lb, v.x_ulb_w, v.x_ulb_s], []
    # BaseMethod.prepare: views(x_l), the student's view, the teacher's view (USB: student on
    # x_ulb_s, EMA teacher on x_ulb_w)
    return [v.x_lb, v.x_ulb_s, v.x_ulb_w], []


def ours_step(base: str, spec: BaseSpec, views: list[Views], channels_last: bool, augment: bool,
              seed: int) -> Callable[[int], None]:
    """Our step for ``views[i % len(views)]``: what bench.engine does per iteration."""
    from algorithms import Batch, Comm, Stepper, TrainContext, get_algorithm
    from algorithms.ema import WeightEMA
    from algorithms.networks import build_network, set_memory_format
    from datasets.augment import strong_augment_for, weak_augment_for

    from .config import RunConfig
    from .engine import make_optimizer

    cfg = RunConfig(dataset="cifar10", algorithm=spec.ours, network="wrn28_2", n_labels=40, steps=TOTAL_STEPS,
                    batch_labeled=spec.batch_labeled, batch_unlabeled=spec.batch_unlabeled,
                    channels_last=channels_last, seed=seed)
    torch.manual_seed(seed)
    model = set_memory_format(build_network(cfg.network, (3, 32, 32), 10), cfg.channels_last)
    weak, strong = (weak_augment_for("cifar10"), strong_augment_for("cifar10")) if augment else (Replay(), Replay())
    generator = torch.Generator().manual_seed(seed)
    ctx = TrainContext(10, cfg.steps, Comm(), weak, generator, num_unlabeled=spec.batch_unlabeled * len(views),
                       strong_augment=strong)
    algo = get_algorithm(cfg.algorithm)(model, cfg.typed_hparams(), ctx)
    optimizer, scheduler = make_optimizer(model, cfg)
    stepper = Stepper(model, optimizer, scheduler, ctx.comm)
    eval_ema = WeightEMA(model, cfg.ema_decay)
    state = {"step": 0}

    def step(i: int) -> None:
        v = views[i % len(views)]
        if not augment:
            w, s = replay_order(base, v)
            weak.load(w)
            strong.load(s)
        u_idx = torch.arange(spec.batch_unlabeled) + (i % len(views)) * spec.batch_unlabeled
        model.train()
        diag = algo.train_step(Batch(v.x_l, v.y_lb, v.x_u, u_idx), state["step"], stepper)
        eval_ema.update(model)
        if not math.isfinite(diag["loss"]):
            raise RuntimeError(f"ours {base}: loss not finite at step {state['step']}")
        state["step"] += 1
        if not augment and (weak.queue or strong.queue):
            raise RuntimeError(f"ours {base}: the step left prepared views unused")

    return step


def usb_step(spec: BaseSpec, views: list[Views], channels_last: bool, seed: int, workdir: str) -> Callable[[int], None]:
    """USB's step for ``views[i % len(views)]``: its train_step, then its per-step hooks."""
    import semilearn

    cfg = dict(algorithm=spec.usb, net="wrn_28_2", net_from_name=False, dataset="none", num_classes=10,
               batch_size=spec.batch_labeled, uratio=spec.batch_unlabeled // spec.batch_labeled,
               num_train_iter=TOTAL_STEPS, epoch=1024, num_eval_iter=10 ** 12, num_log_iter=10 ** 12,
               ema_m=0.999, optim="SGD", lr=0.03, momentum=0.9, weight_decay=5e-4, layer_decay=1.0,
               amp=False, use_cat=True, clip_grad=0.0, seed=seed, save_dir=workdir, save_name=spec.usb,
               **spec.usb_config)
    with contextlib.redirect_stdout(io.StringIO()):  # its constructor prints progress
        args = semilearn.get_config(cfg)
        args.distributed = False  # set by USB's train.py, not by get_config
        torch.manual_seed(seed)
        alg = semilearn.get_algorithm(args, semilearn.get_net_builder(args.net, args.net_from_name), None, None)
    if channels_last:  # Module.to converts the parameters in place: the optimizer keeps them
        alg.model.to(memory_format=torch.channels_last)
        alg.ema_model.to(memory_format=torch.channels_last)
    alg.model.train()
    alg.hooks_dict["EMAHook"].before_run(alg)  # the shadow weights, as its trainer's before_run
    hooks = [alg.hooks_dict["ParamUpdateHook"], alg.hooks_dict["EMAHook"]]

    def step(i: int) -> None:
        v = views[i % len(views)]
        alg.out_dict, alg.log_dict = alg.train_step(x_lb=v.x_lb, y_lb=v.y_lb, x_ulb_w=v.x_ulb_w, x_ulb_s=v.x_ulb_s)
        for hook in hooks:
            hook.after_train_step(alg)
        alg.it += 1

    return step


def network_check() -> str:
    """One line comparing the two WRN-28-2s layer by layer: every Conv2d's weight shape (and
    bias), input and output shape on a 3x32x32 batch, BatchNorm and Linear shapes, parameter counts."""
    from torch import nn
    from semilearn.nets import wrn_28_2

    from algorithms.networks import build_network, count_parameters

    def layers(model: nn.Module, forward: Callable) -> list[tuple]:
        found = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: found.append(
                     (type(mod).__name__, tuple(mod.weight.shape), mod.bias is not None,
                      tuple(inp[0].shape), tuple(out.shape))))
                 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
        with torch.no_grad():
            forward(torch.randn(2, 3, 32, 32))
        for h in hooks:
            h.remove()
        return sorted(found)

    torch.manual_seed(0)
    ours, usb = build_network("wrn28_2", (3, 32, 32), 10), wrn_28_2(num_classes=10)
    a, b = layers(ours, ours), layers(usb, usb)
    differ = [f"{x[0]}{x[1]} bias {x[2]} (ours) vs {y[2]} (usb)" for x, y in zip(a, b) if x != y]
    same = len(a) == len(b) and all(x[:2] + x[3:] == y[:2] + y[3:] for x, y in zip(a, b))
    kinds = {k: sum(x[0] == k for x in a) for k in ("Conv2d", "BatchNorm2d", "Linear")}
    return (f"networks: {kinds['Conv2d']} convs, {kinds['BatchNorm2d']} BatchNorms, {kinds['Linear']} linear; "
            f"layer shapes and activation shapes {'identical' if same else 'DIFFERENT'}; "
            f"parameters ours {count_parameters(ours):,}, usb {count_parameters(usb):,}"
            + (f"; differences: {'; '.join(differ)}" if differ else ""))


def network_pass(images: torch.Tensor, side: str, channels_last: bool, inplace: bool = True,
                 seed: int = 0) -> Callable[[int], None]:
    """Forward + backward (of the logits' sum) of one WRN-28-2 in train mode on ``images``
    [N, 3, 32, 32]: ``side`` "ours" (``inplace=False``: its activations out of place, the
    network before in-place activations) or "usb"."""
    from torch import nn

    from algorithms.networks import build_network, set_memory_format

    torch.manual_seed(seed)
    if side == "ours":
        model = build_network("wrn28_2", (3, 32, 32), 10)
        for m in model.modules():
            if isinstance(m, nn.LeakyReLU):
                m.inplace = inplace
        model = set_memory_format(model, channels_last)
        forward = model
    else:
        from semilearn.nets import wrn_28_2

        model = set_memory_format(wrn_28_2(num_classes=10), channels_last)
        forward = lambda x: model(x)["logits"]  # noqa: E731
    model.train()

    def step(i: int) -> None:
        del i
        model.zero_grad(set_to_none=True)
        forward(images).sum().backward()

    return step
