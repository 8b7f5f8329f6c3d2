"""How long a figure's missing runs will take, for the progress lines: an ESTIMATE.

CPU (the offline sets): seconds per training step and per evaluation as measured for the
suite budgets (docs/budgets.md: two runs at a time on 2 cores, under load), scaled by the
batch size; a run also pays a Tune trial start and its checkpoints. GPU (the papers' sets):
``bench.cost_estimate``'s FLOP-count GPU-hours. Other CPU datasets have no estimate (None).
"""
from __future__ import annotations

import math

from .config import RunConfig

#: dataset -> (seconds per step of a base method, of a meta rule on a base, at `batch` images
#: (labeled + unlabeled), seconds per evaluation); docs/budgets.md
CPU_STEP_COSTS: dict[str, tuple[float, float, int, float]] = {
    "two_circles": (0.0016, 0.0027, 160, 0.005),
    "digits": (0.015, 0.068, 64, 0.08),
    # TCDCN at 32+32, channels-last, two trials at a time on 2 idle cores (issue 16's acceptance grid, 100 labels:
    # Pseudo-Label / Mean Teacher 12.3-12.8 steps/s, their L2I-O 6.6-6.8; an evaluation ~0.5 s)
    "synthetic_landmarks": (0.08, 0.15, 64, 0.5),
}
#: Tune trial start, checkpoints and the final write of one run (seconds)
RUN_OVERHEAD_S = 1.5
#: base algorithms that take a meta step of their own and cost as a rule does (meta_semi's step
#: measured 3x Pseudo-Label's and as long as pseudo_label+meta_semi's, run side by side on digits)
META_BASES = ("meta_semi",)


def cpu_seconds(cfg: RunConfig) -> float | None:
    """Estimated CPU seconds of one run of ``cfg`` on one core, or None where nothing was measured."""
    cost = CPU_STEP_COSTS.get(cfg.dataset)
    if cost is None:
        return None
    base, rule, batch, per_eval = cost
    step = (rule if "+" in cfg.algorithm or cfg.algorithm in META_BASES else base) * (cfg.batch_labeled + cfg.batch_unlabeled) / batch
    evals = math.ceil(cfg.steps / cfg.eval_every)
    return cfg.steps * step + evals * per_eval + RUN_OVERHEAD_S


def estimate(configs: list[RunConfig], slots: int, gpu: bool) -> str:
    """'about N min on S CPUs' / 'about H GPU-hours' for running ``configs`` (empty: nothing)."""
    if not configs:
        return "nothing to run"
    if gpu:
        from .cost_estimate import gpu_hours

        return f"about {sum(gpu_hours(c.resolved()) for c in configs):.1f} GPU-hours (bench.cost_estimate, an estimate)"
    known = [c for c in configs if cpu_seconds(c) is not None]
    cpus = f"on {slots} CPU{'s' if slots > 1 else ''}"
    if len(known) == len(configs):
        return f"about {format_seconds(cpu_wall(configs, slots))} {cpus}"
    unknown = ", ".join(sorted({c.dataset for c in configs if cpu_seconds(c) is None}))
    missing = f"no estimate for the {len(configs) - len(known)} on {unknown} (no measured per-step cost)"
    return f"about {format_seconds(cpu_wall(known, slots))} {cpus} for {len(known)} of them; {missing}" if known else \
        f"no estimate (no measured per-step cost for {unknown})"


def cpu_wall(configs: list[RunConfig], slots: int) -> float | None:
    """Estimated wall seconds of ``configs`` with ``slots`` runs at a time (None: no estimate)."""
    secs = [cpu_seconds(c) for c in configs]
    if any(s is None for s in secs):
        return None
    return sum(secs) / max(1, min(slots, len(configs))) if configs else 0.0


def format_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
