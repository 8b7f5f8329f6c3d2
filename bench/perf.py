"""python -m bench.perf: per-step time and peak memory of every base and every BASE+RULE pair.

Every row trains the same network on the same dataset and batch sizes (default: digits,
cnn_small, 32 labeled + 96 unlabeled, plus the hold-out batch a rule asks for through
``holdout_batch_size()``), built as the engine builds a run (``bench.engine._Run``: split,
device tensors, ``TrainContext`` with the dataset's augmentations, ``make_optimizer``,
``Stepper``, evaluation EMA, epoch samplers, hold-out sampler). Each row is compared with its
base (a ``BASE+RULE`` row with ``BASE``; a standalone meta method with the base named in
:data:`STANDALONE_REFERENCE`) against the targets of issue 4: first-order rules at most 1.6x
their base's time, exact second-order variants at most 4x, peak memory at most 1.5x.

Time: ``algo.train_step(batch, step, stepper)`` alone, timed with ``time.perf_counter``
(after ``torch.cuda.synchronize`` on a GPU); drawing the batch and the engine's evaluation
EMA are outside the timer, since they cost the same for every row and would only dilute
the ratios. ``--warmup`` steps are not timed; the table gives the median and the
interquartile range (q75 - q25) of ``--steps`` timed steps. Step indices start in the
middle of a nominal :data:`HORIZON`-step run, so ramp-ups and any rule warm-up are over.
CPU runs call ``torch.set_flush_denormal(True)`` as the engine does (finite-difference
forwards were measured 10x slower without it).

Memory, in two parts whose sum is "peak MB" (the number the memory target is checked on):
- state: bytes of the distinct tensor storages reachable from the model (and its
  gradients), the optimizer, the algorithm (teachers, label tables, the rule's state) and
  the evaluation EMA, after the timed steps. Data tensors are left out: they are the same for
  every row, and on a GPU the engine's device-resident dataset would drown the differences.
- step: the peak of live tensor bytes during one training step above those live at its
  start (activations, autograd graphs, meta-gradient temporaries). On a GPU from the caching
  allocator's statistics (``max_memory_allocated`` after ``reset_peak_memory_stats``, minus
  ``memory_allocated`` at the step's start; the largest over the timed steps). On a CPU from
  the allocation events of ``torch.profiler`` with ``profile_memory=True`` over two extra,
  untimed steps: the running sum of allocations and frees, in time order, and its maximum
  during the second (the first lets the profiler see the blocks the second frees).
Limits: only tensors count (not Python objects, nor oneDNN/MKL scratch memory allocated outside
torch's allocator, nor the CUDA context or cuDNN workspaces); the CPU figure is from one step
(a data-dependent branch in another step could allocate more), and it misses frees of blocks
older than the step before it (an upper bound then); peak RSS was not used because
on CPU it is process-wide and monotone, and for these small models dominated by lazily
loaded library pages rather than by what the algorithm allocates.

Each row runs in a fresh subprocess (``python -m bench.perf --one NAME ...``, one JSON line
back), so allocator caches, thread pools and lazily initialised kernels of one row do not
favour the next; ``--in-process`` runs them all here (quicker, less isolated).
The exit status is 0 even when targets are missed (a summary line lists them); bad input
gets one line on stderr and status 2 before anything is measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from algorithms import ConfigError, get_algorithm, list_algorithms, list_compositions
from algorithms.hparams import from_dict

from .cli_errors import UsageError, fail, make_parser, split_list

PROG = "bench.perf"
HORIZON = 1000  # nominal run length: schedules see steps HORIZON // 2, HORIZON // 2 + 1, ...
TIME_TARGET = {"first": 1.6, "second": 4.0}  # max ratio of ms/step to the base's
MEMORY_TARGET = 1.5  # max ratio of peak MB to the base's
# Standalone meta methods and the registered base closest to them in cost without the meta
# step: Meta-Semi = EMA-teacher pseudo-labels + MixUp of labeled and unlabeled inputs, as ICT.
STANDALONE_REFERENCE = {"meta_semi": "ict"}
# Rule names whose meta step is first order when no variant field says otherwise.
DEFAULT_ORDER = {"meta_semi": "first", "l2rw": "first", "meta_grad": "first", "l2i_l": "first", "l2i_o": "second"}
FIRST_ORDER_VALUES = ("fd", "jvp", "approx", "approximate", "first_order", "first-order", "finite_difference")
SECOND_ORDER_VALUES = ("exact", "second_order", "second-order", "double_backward")
RESULT_TAG = "PERF_RESULT "


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: an algorithm with some hyperparameters set (a variant)."""

    name: str  # shown in the table, e.g. "pseudo_label+meta_grad[meta_grad_method=fd]"
    algorithm: str  # registry name, e.g. "pseudo_label+meta_grad"
    hparams: dict[str, Any] = field(default_factory=dict)
    rule: str = ""  # "" for a base
    order: str = "base"  # base | first | second | ?
    reference: str | None = None  # row name of the base it is compared with


@dataclass(frozen=True)
class Options:
    dataset: str = "digits"
    network: str = "cnn_small"
    n_labels: int = 50
    batch_labeled: int = 32
    batch_unlabeled: int = 96
    steps: int = 20
    warmup: int = 5
    device: str = "cpu"
    threads: int = 1
    seed: int = 0


# --------------------------------------------------------------------------- rows and variants

def _rule_of(cls: type) -> tuple[str, type | None]:
    """(rule name, class whose Hparams hold the meta-step settings) or ("", None) for a base."""
    rule = getattr(cls, "rule_class", None)
    if rule is not None:
        return rule.name, rule
    if cls.name in STANDALONE_REFERENCE:
        return cls.name, cls
    return "", None


def order_of_value(value: Any, field_name: str = "") -> str | None:
    """first/second for a variant value ("exact" -> second; fd, jvp, approx, first_order ->
    first; a bool field named first_order/exact by its truth), None if it says nothing."""
    if isinstance(value, bool):
        if "first_order" in field_name:
            return "first" if value else "second"
        if "exact" in field_name:
            return "second" if value else "first"
        return None
    text = str(value).lower()
    if text in SECOND_ORDER_VALUES:
        return "second"
    if text in FIRST_ORDER_VALUES:
        return "first"
    return None


def _is_variant_field(name: str, hint: Any) -> bool:
    if typing.get_origin(hint) is Literal:
        return name.endswith("method") or name.endswith("variant")
    if hint is bool:
        return name in ("first_order", "exact") or name.endswith("_first_order")
    return False


def variant_fields(hparams_cls: type) -> dict[str, tuple]:
    """The meta-step method fields of ``hparams_cls`` and their values: Literal fields named
    ``*variant`` or ``*method``, and bool fields named ``first_order``/``exact``. A value
    ``none``/``off`` (meta step switched off, e.g. meta_grad_method=none) costs what the base
    costs and is left out."""
    hints = typing.get_type_hints(hparams_cls)
    out = {}
    for f in dataclasses.fields(hparams_cls):
        hint = hints[f.name]
        if _is_variant_field(f.name, hint):
            values = (False, True) if hint is bool else typing.get_args(hint)
            out[f.name] = tuple(v for v in values if str(v).lower() not in ("none", "off"))
    return out


def _row_order(rule: str, rule_hp_cls: type | None, values: dict[str, Any]) -> str:
    if not rule:
        return "base"
    defaults = {}
    if rule_hp_cls is not None:
        for f in dataclasses.fields(rule_hp_cls.Hparams):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
    merged = {**defaults, **values}
    orders = [order_of_value(merged[k], k) for k in variant_fields(rule_hp_cls.Hparams)] if rule_hp_cls else []
    if "second" in orders:
        return "second"
    if "first" in orders:
        return "first"
    return getattr(rule_hp_cls, "order", None) or DEFAULT_ORDER.get(rule, "?")


def _variant_name(algorithm: str, values: dict[str, Any]) -> str:
    if not values:
        return algorithm
    return f"{algorithm}[{','.join(f'{k}={v}' for k, v in values.items())}]"


def expand_rows(algorithm: str, cls: type, explicit: list[dict[str, Any]] | None = None,
                auto: bool = True) -> list[RowSpec]:
    """The rows of one algorithm: one per explicit variant (a dict of hyperparameters), else
    one per combination of its rule's method-field values (``auto``), else one with defaults.
    Raises ConfigError if an explicit variant names an unknown field or a value out of range."""
    rule, holder = _rule_of(cls)
    if rule and cls.name in STANDALONE_REFERENCE:
        reference = STANDALONE_REFERENCE[cls.name]
    elif rule:
        reference = cls.base_class.name
    else:
        reference = cls.name
    if explicit:
        combos = explicit
        for values in combos:
            from_dict(cls.Hparams, values, f"{algorithm} hyperparameter")  # unknown field / bad value -> ConfigError
    elif auto and holder is not None and variant_fields(holder.Hparams):
        fields_ = variant_fields(holder.Hparams)
        combos = [dict(zip(fields_, vals)) for vals in itertools.product(*fields_.values())]
    else:
        combos = [{}]
    return [RowSpec(_variant_name(algorithm, v), algorithm, dict(v), rule, _row_order(rule, holder, v), reference)
            for v in combos]


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:FIELD=VALUE[,FIELD=VALUE]`` -> (NAME, {FIELD: VALUE}); values stay strings
    (the Hparams types them: bools as true/false) except true/false."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise UsageError(f"--variants entry {text!r} is not NAME:FIELD=VALUE[,FIELD=VALUE]")
    values: dict[str, Any] = {}
    try:
        pairs = split_list(rest)
    except ValueError as e:
        raise UsageError(f"--variants entry {text!r}: {e}") from None
    for pair in pairs:
        k, eq, v = pair.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"--variants entry {text!r}: {pair!r} is not FIELD=VALUE")
        v = v.strip()
        values[k.strip()] = {"true": True, "false": False}.get(v.lower(), v)
    return name, values


def plan_rows(algorithms: list[str] | None, variants: list[str], auto: bool,
              resolve=get_algorithm) -> list[RowSpec]:
    """Every row to measure: ``algorithms`` (default: every base with a composition, every
    composition, the standalone meta methods) expanded into variants, and the bases they are
    compared with put first where missing. UsageError on bad input."""
    explicit: dict[str, list[dict[str, Any]]] = {}
    for entry in variants:
        name, values = parse_variant(entry)
        explicit.setdefault(name, []).append(values)
    if algorithms is None:
        comps = list_compositions()
        bases = sorted({c.partition("+")[0] for c in comps})
        algorithms = bases + comps + [a for a in STANDALONE_REFERENCE if a in list_algorithms()]
    for name in explicit:
        if name not in algorithms:
            algorithms = [*algorithms, name]
    rows: list[RowSpec] = []
    names: list[str] = []
    for name in algorithms:
        if name in names:
            continue
        try:
            cls = resolve(name)
            new = expand_rows(name, cls, explicit.get(name), auto)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        names.append(name)
        rows.extend(new)
    present = {r.name for r in rows}
    missing = []
    for r in rows:
        if r.reference and r.reference not in present and r.reference not in missing:
            missing.append(r.reference)
    added: list[RowSpec] = []
    for ref in missing:  # a ratio needs its base: measure it too, first
        try:
            added.extend(expand_rows(ref, resolve(ref), None, auto))
        except ConfigError as e:
            raise UsageError(str(e)) from None
    return added + rows


# --------------------------------------------------------------------------- measuring one row

def _storage_bytes(roots: list[Any], exclude: list[torch.Tensor]) -> int:
    """Bytes of the distinct tensor storages reachable from ``roots`` through modules,
    optimizers, containers and objects of this project (parameters' ``.grad`` included)."""
    def key(t: torch.Tensor):
        s = t.untyped_storage()
        return (str(s.device), s.data_ptr())

    skip = {key(t) for t in exclude if t is not None and t.numel() > 0}
    seen: set[int] = set()
    storages: dict[tuple, int] = {}
    stack = list(roots)
    while stack:
        o = stack.pop()
        if o is None or id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            try:
                if o.numel() > 0 and key(o) not in skip:
                    storages[key(o)] = o.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):  # sparse/meta tensors have no plain storage
                pass
            if o.grad is not None:
                stack.append(o.grad)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, (torch.nn.Module, torch.optim.Optimizer)) or (
                hasattr(o, "__dict__") and type(o).__module__.split(".")[0] in ("algorithms", "bench")):
            stack.extend(vars(o).values())
    return sum(storages.values())


def _cpu_step_peak(step_fn) -> int:
    """Peak live CPU tensor bytes during ``step_fn()`` above those live at its start.

    ``step_fn`` runs twice under the profiler and the second call is measured: the profiler
    sees no free of a block allocated before it started, so a step that frees what the
    previous step allocated (outputs kept for a teacher, a replaced table) would otherwise
    look as if it kept them.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step_fn()
        with record_function("bench.perf.measured_step"):
            step_fn()
    events = list(prof.profiler.kineto_results.events())
    (mark,) = [e for e in events if e.name() == "bench.perf.measured_step"]
    # Raw allocator records in time order (the FunctionEvent view folds them into ops).
    memory = sorted((e for e in events if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")),
                    key=lambda e: e.start_ns())
    live = peak = 0
    start: int | None = None
    for e in memory:
        if e.start_ns() > mark.end_ns():
            break
        if start is None and e.start_ns() >= mark.start_ns():
            start = peak = live  # live bytes when the measured step begins
        live += e.nbytes()
        if start is not None:
            peak = max(peak, live)
    return 0 if start is None else max(0, peak - start)


def measure(spec: RowSpec, opts: Options, cls: type | None = None) -> dict[str, Any]:
    """Build ``spec`` as the engine builds a run and measure it. Returns a dict with
    ms (list of per-step milliseconds), state_bytes, step_bytes, holdout (hold-out batch size)."""
    import datasets
    from algorithms import Stepper, TrainContext, make_comm
    from algorithms.ema import WeightEMA
    from algorithms.networks import build_network
    from datasets.augment import strong_augment_for, weak_augment_for

    from .config import RunConfig
    from .engine import _Run, make_optimizer
    from .sampling import EpochSampler

    cls = cls or get_algorithm(spec.algorithm)
    device = torch.device(opts.device)
    torch.set_num_threads(opts.threads)
    torch.set_flush_denormal(True)
    cfg = RunConfig(dataset=opts.dataset, algorithm=spec.algorithm, network=opts.network, n_labels=opts.n_labels,
                    steps=HORIZON, seed=opts.seed, batch_labeled=opts.batch_labeled, batch_unlabeled=opts.batch_unlabeled)
    # Mirrors _Run.__init__ (which resolves the algorithm by name; a test's unregistered dummy
    # rule has none); the engine's own hold-out sampler and next_batch are reused below.
    run = _Run.__new__(_Run)
    run.cfg, run.comm, run.device = cfg, make_comm(), device
    data = datasets.load(cfg.dataset)
    info = data.info
    n_val = datasets.resolve_n_val(info, cfg.n_labels, cfg.val_protocol, cfg.n_val)
    split = datasets.make_split(cfg.dataset, data.y_train, info.num_classes, cfg.n_labels, n_val, cfg.split_seed)
    lab = torch.from_numpy(split.labeled.copy())
    run.x_l, run.y_l = data.x_train[lab].to(device), data.y_train[lab].to(device)
    if cls.uses_unlabeled:
        x_u = data.x_train[torch.from_numpy(split.unlabeled.copy())]
        if data.x_extra_unlabeled is not None:
            x_u = torch.cat([x_u, data.x_extra_unlabeled])
        run.x_u = x_u.to(device)
    else:
        run.x_u = run.x_l[:0]
    torch.manual_seed(cfg.seed)
    model = build_network(cfg.network, info.input_shape, info.num_classes).to(device)
    run.model = model
    run.generator = torch.Generator().manual_seed(cfg.seed * 7919 + 1)
    ctx = TrainContext(info.num_classes, cfg.steps, run.comm, weak_augment_for(cfg.dataset), run.generator,
                       num_unlabeled=run.x_u.shape[0], strong_augment=strong_augment_for(cfg.dataset))
    hp = from_dict(cls.Hparams, spec.hparams, f"{spec.algorithm} hyperparameter")
    run.algo = algo = cls(model, hp, ctx)
    optimizer, scheduler = make_optimizer(model, cfg)
    stepper = Stepper(model, optimizer, scheduler, run.comm)
    eval_ema = WeightEMA(model, cfg.ema_decay)
    run.sample_l = EpochSampler(run.x_l.shape[0], cfg.batch_labeled, run.generator)
    run.sample_u = EpochSampler(max(1, run.x_u.shape[0]), cfg.batch_unlabeled, run.generator) if cls.uses_unlabeled else None
    run.sample_h = run._holdout_sampler()
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    step = HORIZON // 2
    ms: list[float] = []
    step_peak = 0
    for i in range(opts.warmup + opts.steps):
        batch = run.next_batch()
        model.train()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            start_bytes = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        algo.train_step(batch, step, stepper)
        sync()
        elapsed = time.perf_counter() - t0
        if cuda:
            step_peak = max(step_peak, torch.cuda.max_memory_allocated(device) - start_bytes)
        eval_ema.update(model)
        step += 1
        if i >= opts.warmup:
            ms.append(1000.0 * elapsed)
    if not cuda:
        model.train()
        step_peak = _cpu_step_peak(lambda: algo.train_step(run.next_batch(), step, stepper))
    data_tensors = [run.x_l, run.y_l, run.x_u, getattr(run, "x_h", None), getattr(run, "y_h", None)]
    state = _storage_bytes([model, optimizer, algo, eval_ema], data_tensors)
    return {"ms": ms, "state_bytes": state, "step_bytes": int(step_peak), "holdout": algo.holdout_batch_size()}


# --------------------------------------------------------------------------- table

def summarize(rows: list[RowSpec], results: dict[str, dict]) -> list[dict[str, Any]]:
    """Table records: medians, IQRs, ratios to the reference row, targets and whether met."""
    out = []
    by_name = {}
    for spec in rows:
        r = results.get(spec.name, {})
        rec: dict[str, Any] = {"name": spec.name, "rule": spec.rule or "-", "order": spec.order,
                               "reference": spec.reference or "", "error": r.get("error", "")}
        if "ms" in r and r["ms"]:
            q25, q50, q75 = np.percentile(r["ms"], [25, 50, 75])
            rec.update(ms_median=float(q50), ms_iqr=float(q75 - q25), steps=len(r["ms"]),
                       state_mb=r["state_bytes"] / 2**20, step_mb=r["step_bytes"] / 2**20,
                       peak_mb=(r["state_bytes"] + r["step_bytes"]) / 2**20, holdout=r.get("holdout", 0))
        by_name[spec.name] = rec
        out.append(rec)
    for rec in out:
        ref = by_name.get(rec["reference"])
        ok = "ms_median" in rec and ref is not None and "ms_median" in ref
        rec["time_ratio"] = rec["ms_median"] / ref["ms_median"] if ok else float("nan")
        rec["mem_ratio"] = rec["peak_mb"] / ref["peak_mb"] if ok and ref["peak_mb"] > 0 else float("nan")
        limit = TIME_TARGET.get(rec["order"])
        rec["target"] = f"<={limit:g}x, mem<={MEMORY_TARGET:g}x" if limit else "-"
        if limit is None:
            rec["met"] = "-"
        elif not ok:
            rec["met"] = "n/a"
        else:
            misses = [w for w, bad in (("time", rec["time_ratio"] > limit), ("mem", rec["mem_ratio"] > MEMORY_TARGET)) if bad]
            rec["met"] = "yes" if not misses else "NO (" + ", ".join(misses) + ")"
    return out


def format_table(records: list[dict[str, Any]]) -> str:
    head = ["name", "rule", "order", "ms/step", "IQR", "x base", "peak MB", "step MB", "x base mem", "target", "met"]

    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)

    lines = []
    for r in records:
        if r.get("error"):
            lines.append([r["name"], r["rule"], r["order"], "failed: " + r["error"][:80], "", "", "", "", "", r["target"], "n/a"])
            continue
        lines.append([r["name"], r["rule"], r["order"], num(r.get("ms_median"), ".2f"), num(r.get("ms_iqr"), ".2f"),
                      num(r["time_ratio"], ".2f"), num(r.get("peak_mb"), ".2f"), num(r.get("step_mb"), ".2f"),
                      num(r["mem_ratio"], ".2f"), r["target"], r["met"]])
    widths = [max(len(h), *(len(str(l[i])) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(l) for l in lines)])


def environment(opts: Options) -> str:
    dev = opts.device
    if dev == "cuda":
        dev = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        dev = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    flush = torch.set_flush_denormal(True)
    return (f"device: {dev}; torch {torch.__version__}; python {platform.python_version()}; threads {opts.threads}; "
            f"flush-denormal {'on' if flush else 'unsupported'}\n"
            f"dataset {opts.dataset}, network {opts.network}, {opts.n_labels} labels, batch {opts.batch_labeled} labeled + "
            f"{opts.batch_unlabeled} unlabeled (+ hold-out where a rule asks); {opts.warmup} warm-up + {opts.steps} timed steps")


# --------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.perf", __doc__.splitlines()[0])
    p.add_argument("--algorithms", help="comma-separated names, BASE+RULE allowed (default: every base with a "
                   "composition, every composition, and the standalone meta methods); bases of the rows are added")
    p.add_argument("--variants", nargs="+", default=[], metavar="NAME:FIELD=VALUE",
                   help="explicit variant rows, e.g. pseudo_label+l2i_o:variant=exact (several per name allowed; "
                   "replaces the automatic variants of that name)")
    p.add_argument("--no-auto-variants", action="store_true",
                   help="do not expand a rule's method fields (Literal *method / variant) into one row per value")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--network", default="cnn_small")
    p.add_argument("--n-labels", type=int, default=50)
    p.add_argument("--batch-labeled", type=int, default=32)
    p.add_argument("--batch-unlabeled", type=int, default=96)
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table to this .csv or .parquet file")
    p.add_argument("--in-process", action="store_true", help="measure every row in this process (no subprocesses)")
    p.add_argument("--dry-run", action="store_true", help="list the rows (name, order, base) and exit")
    p.add_argument("--one", help=argparse.SUPPRESS)  # worker mode: measure one row, print one JSON line
    p.add_argument("--hparams", default="{}", help=argparse.SUPPRESS)
    return p


def _options(args: argparse.Namespace) -> Options:
    import datasets
    from algorithms.networks import check_network

    for flag, v, low in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0), ("--n-labels", args.n_labels, 1),
                         ("--batch-labeled", args.batch_labeled, 1), ("--batch-unlabeled", args.batch_unlabeled, 1),
                         ("--seed", args.seed, 0)):
        if v < low:
            raise UsageError(f"{flag} must be {'positive' if low else 'non-negative'}, got {v}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no GPU here")
    if args.dataset not in datasets.list_datasets():
        raise UsageError(f"unknown dataset {args.dataset!r} (valid: {', '.join(datasets.list_datasets())})")
    info = datasets.get_info(args.dataset)
    try:
        n_val = datasets.resolve_n_val(info, args.n_labels, "scarce", None)
        datasets.validate_request(info, args.n_labels, n_val)
        check_network(args.network, info.input_shape)
        datasets.check_available(args.dataset)
    except (datasets.SplitError, datasets.DatasetUnavailable, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.out and not args.out.endswith((".csv", ".parquet")):
        raise UsageError(f"--out must end in .csv or .parquet, got {args.out!r}")
    return Options(args.dataset, args.network, args.n_labels, args.batch_labeled, args.batch_unlabeled, args.steps,
                   args.warmup, device, args.threads or torch.get_num_threads(), args.seed)


def _worker_args(spec: RowSpec, opts: Options) -> list[str]:
    return [sys.executable, "-m", "bench.perf", "--one", spec.algorithm, "--hparams", json.dumps(spec.hparams),
            "--dataset", opts.dataset, "--network", opts.network, "--n-labels", str(opts.n_labels),
            "--batch-labeled", str(opts.batch_labeled), "--batch-unlabeled", str(opts.batch_unlabeled),
            "--steps", str(opts.steps), "--warmup", str(opts.warmup), "--device", opts.device,
            "--threads", str(opts.threads), "--seed", str(opts.seed)]


def _spawn(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _measure_isolated(spec: RowSpec, opts: Options) -> dict[str, Any]:
    proc = _spawn(_worker_args(spec, opts))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return {"error": tail}


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def run_rows(rows: list[RowSpec], opts: Options, in_process: bool = False,
             classes: dict[str, type] | None = None, log=print) -> dict[str, dict]:
    """Measure every row (in a subprocess each unless ``in_process``); failures become
    ``{"error": one line}`` so the table still prints. ``classes`` maps algorithm names to
    classes for in-process rows that the registry does not know (tests' dummy rules)."""
    results = {}
    for spec in rows:
        started = time.perf_counter()
        if in_process:
            try:
                results[spec.name] = measure(spec, opts, (classes or {}).get(spec.algorithm))
            except Exception as e:  # a failing row is a result too: the table goes on
                results[spec.name] = {"error": _one_line(e)}
        else:
            results[spec.name] = _measure_isolated(spec, opts)
        log(f"  measured {spec.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def _write(records: list[dict[str, Any]], path: str) -> None:
    import pandas as pd

    frame = pd.DataFrame(records)
    if path.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        opts = _options(args)
        if args.one:
            spec = expand_rows(args.one, get_algorithm(args.one), [json.loads(args.hparams)] if args.hparams != "{}" else None,
                               auto=False)[0]
        else:
            try:
                names = split_list(args.algorithms) if args.algorithms is not None else None
            except ValueError as e:
                raise UsageError(f"--algorithms: {e}") from None
            rows = plan_rows(names, args.variants, not args.no_auto_variants)
    except ImportError as e:  # a broken algorithm or rule file: say which, in one line
        fail(PROG, f"cannot load the algorithm registry: {_one_line(e)}")
    except ConfigError as e:
        fail(PROG, str(e))
    except UsageError as e:
        fail(PROG, str(e))
    if args.one:
        try:
            result = measure(spec, opts)
        except Exception as e:  # reported as the row's error by the parent
            result = {"error": _one_line(e)}
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0
    if args.dry_run:
        for r in rows:
            print(f"{r.name}  {r.order}  base={r.reference}")
        return 0
    print(environment(opts), flush=True)  # before the progress lines on stderr
    if not rows:
        print("nothing to measure")
        return 0
    records = summarize(rows, run_rows(rows, opts, args.in_process))
    print(format_table(records))
    missed = [r["name"] for r in records if r["met"].startswith("NO")]
    unknown = [r["name"] for r in records if r["met"] == "n/a"]
    print(f"targets missed: {len(missed)}" + (f" ({', '.join(missed)})" if missed else "")
          + (f"; not measured: {', '.join(unknown)}" if unknown else ""))
    if args.out:
        _write(records, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
