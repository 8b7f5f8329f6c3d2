"""Our training step against USB's (semilearn 0.3.2), side by side in one process: FixMatch,
MixMatch and Mean Teacher on WRN-28-2, same inputs, same threads.

USB is not a dependency of this project; install it in an environment of its own, with this
project importable (its own dependencies beyond torch are pandas and pyarrow here)::

    python3 -m venv /work/usb-venv
    /work/usb-venv/bin/pip install torch torchvision semilearn==0.3.2 pandas pyarrow
    PYTHONPATH=$PWD /work/usb-venv/bin/python -m bench.usb_compare

Without ``semilearn`` the command says so in one line and exits with status 2.

What a step is, on both sides: everything the trainer does per iteration once a batch of
augmented views is on the device. USB: its algorithm's ``train_step`` (forwards, losses,
``.item()`` logging), then its per-step hooks, ``ParamUpdateHook`` (backward, optimizer and
scheduler steps, ``zero_grad``) and ``EMAHook`` (EMA of the weights, copied into its
``ema_model``); the other hooks act every ``num_eval_iter`` steps or time CUDA events. Ours:
``Algorithm.train_step`` (augmentation, forwards, losses, Stepper), the evaluation EMA and the
finiteness check, as ``bench.engine`` runs them. Both get the same prepared views (made once
with our CIFAR-10 augmentations): USB augments in DataLoader worker processes, outside its
step, so ours replays the views too; ``--with-augment`` adds a row of ours augmenting inside
its step, as the engine does.

USB's side is built as its trainer builds it: ``semilearn.get_config`` (its defaults and its
algorithm's arguments) with the values of its classic CIFAR-10 configs (lambda_u 1 / 100 / 50,
MixMatch alpha 0.5 and warm-up 1/64, Mean Teacher warm-up 0.4, EMA 0.999, SGD lr 0.03
Nesterov, weight decay 5e-4 off BatchNorm and biases, 2^20 iterations), its WRN-28-2
(``semilearn.nets.wrn_28_2``: conv1 with a bias, 16 parameters more than ours), no data
loaders (``dataset`` none). Ours: the default ``RunConfig`` (the same SGD, decay on every
weight) and each method's default hyperparameters.

Timing: a shared warm-up, then rounds in which every contender takes one step (order rotated
each round, ``bench.paired_timing``); each contender's time over USB's in the same round is one
paired ratio, reported as the median with a 95% bootstrap interval over the rounds.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from .cli_errors import UsageError, fail, make_parser
from .paired_timing import interleaved_times, median_ratio

PROG = "bench.usb_compare"
TARGET = 0.85  # issue 14: our base steps at <= 0.85x USB's


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


def _parse_batch(text: str) -> tuple[str, int, int]:
    name, sep, sizes = text.partition("=")
    lab, plus, unl = sizes.partition("+")
    if not sep or not plus or not lab.strip().isdigit() or not unl.strip().isdigit():
        raise UsageError(f"--batch wants BASE=LABELED+UNLABELED, e.g. fixmatch=16+48, got {text!r}")
    name, b_l, b_u = name.strip(), int(lab), int(unl)
    if name not in BASES:
        raise UsageError(f"--batch: unknown base {name!r} (valid: {', '.join(BASES)})")
    if b_l < 1 or b_u < b_l or b_u % b_l:
        raise UsageError(f"--batch {text!r}: USB needs the unlabeled batch to be a positive multiple of the labeled one")
    return name, b_l, b_u


def build_parser():
    p = make_parser(PROG, PROG, __doc__.splitlines()[0])
    p.add_argument("--bases", default=",".join(BASES), help="comma-separated subset of " + ", ".join(BASES))
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (one step of every contender each)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds before them")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads, for both")
    p.add_argument("--batch", action="append", default=[], metavar="BASE=L+U",
                   help="override a base's global batch, e.g. fixmatch=64+448 (defaults: "
                   + ", ".join(f"{n}={s.batch_labeled}+{s.batch_unlabeled}" for n, s in BASES.items()) + ")")
    p.add_argument("--no-channels-last", action="store_true", help="leave out our channels_last contender")
    p.add_argument("--usb-channels-last", action="store_true",
                   help="add USB with its network in channels_last (its trainer has no such option; a reference)")
    p.add_argument("--with-augment", action="store_true",
                   help="add ours augmenting inside its step, as bench.engine runs it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", help="write every round's time and ratio to this .csv file")
    return p


def _environment(threads: int) -> str:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"torch {torch.__version__}, semilearn {version('semilearn')}, {threads} threads, {cpu}, "
            f"{os.cpu_count()} CPUs, load average {load}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if importlib.util.find_spec("semilearn") is None:
        fail(PROG, "semilearn is not importable here; install semilearn==0.3.2 in a separate environment "
                   "(see python -m bench.usb_compare --help and docs/performance.md)")
    try:
        bases = [b.strip() for b in args.bases.split(",") if b.strip()]
        unknown = [b for b in bases if b not in BASES]
        if not bases or unknown:
            raise UsageError(f"--bases: unknown or empty {unknown or args.bases!r} (valid: {', '.join(BASES)})")
        for flag, value, low in (("--rounds", args.rounds, 2), ("--warmup", args.warmup, 0),
                                 ("--threads", args.threads, 1), ("--seed", args.seed, 0)):
            if value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        if args.csv and not args.csv.endswith(".csv"):
            raise UsageError(f"--csv must end in .csv, got {args.csv!r}")
        specs = dict(BASES)
        for text in args.batch:
            name, b_l, b_u = _parse_batch(text)
            specs[name] = BaseSpec(**{**specs[name].__dict__, "batch_labeled": b_l, "batch_unlabeled": b_u})
    except UsageError as e:
        fail(PROG, str(e))

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as bench.engine does, for both
    warnings.filterwarnings("ignore", category=FutureWarning)  # timm's, on importing semilearn
    print(f"# {_environment(args.threads)}")
    print(f"# {args.rounds} interleaved rounds after {args.warmup} warm-up rounds; ratio = median of per-round "
          "ratios to usb [95% bootstrap interval]")
    print(f"{'base':13s} {'contender':10s} {'batch':>7s} {'median ms':>10s}  {'ratio to usb':24s} <= {TARGET}")
    records = []
    with tempfile.TemporaryDirectory() as workdir:
        for base in bases:
            spec = specs[base]
            views = make_views(spec, 4, args.seed)
            steps = {"usb": usb_step(spec, views, False, args.seed, workdir),
                     "ours": ours_step(base, spec, views, False, False, args.seed)}
            if not args.no_channels_last:
                steps["ours+cl"] = ours_step(base, spec, views, True, False, args.seed)
            if args.usb_channels_last:
                steps["usb+cl"] = usb_step(spec, views, True, args.seed, workdir)
            if args.with_augment:
                steps["ours+aug"] = ours_step(base, spec, views, False, True, args.seed)
            started = time.perf_counter()
            print(f"  measuring {base}: {len(steps)} contenders x ({args.warmup} + {args.rounds}) steps ...",
                  file=sys.stderr, flush=True)
            times = interleaved_times(steps, args.rounds, args.warmup)
            print(f"  {base} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            batch = f"{spec.batch_labeled}+{spec.batch_unlabeled}"
            for name, ts in times.items():
                if name == "usb":
                    ratio, verdict = "1", ""
                else:
                    r, lo, hi = median_ratio(ts, times["usb"], seed=args.seed)
                    ratio, verdict = f"{r:.3f} [{lo:.3f}, {hi:.3f}]", ("yes" if r <= TARGET else "no")
                print(f"{base:13s} {name:10s} {batch:>7s} {1000 * statistics.median(ts):10.1f}  {ratio:24s} {verdict}",
                      flush=True)
                records += [{"base": base, "contender": name, "round": k, "seconds": t,
                             "ratio_to_usb": t / times["usb"][k]} for k, t in enumerate(ts)]
    print("# batches: labeled + unlabeled; " + "; ".join(f"{b}: {BASES[b].paper_batch}" for b in bases))
    print(f"# end: load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.csv:
        import pandas as pd

        pd.DataFrame(records).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
