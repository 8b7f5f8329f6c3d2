"""The performance table: medians, IQRs, ratios to the base, the targets and whether met."""
from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

from ..paired_timing import median_ratio
from .measure import Options
from .rows import RowSpec

# issue 14's targets, by the order of the meta step's derivatives: max ratio to the base's ms/step and peak MB
# (a rule whose method needs more passes than its limit allows is held to its pass-count floor instead,
# and a meta step that must run beside the base's graph to its memory floor: docs/benchmarks.md argues each)
TIME_TARGET = {"first": 1.6, "second": 3.0}
MEMORY_TARGET = {"first": 1.3, "second": 1.6}
FLOOR_SLACK = 1.15  # max ratio of a row's time (memory) ratio to its pass-count (memory) floor ratio

BOOTSTRAP = 2000  # resamples of the pairs for the ratio's interval
LEVEL = 0.95


def paired_ratio(base_ms: list[float], ms: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Median over pairs of ms[i] / base_ms[i], and a percentile bootstrap interval (``LEVEL``,
    ``BOOTSTRAP`` resamples of the pairs with replacement, seeded) around it: (median, low, high).

    Pairs from one process are not independent (a slow minute slows both rows of several
    pairs alike, which is what pairing cancels; it can also move many ratios at once), so
    the interval is a guide to the ratio's noise, not an exact coverage; ``--repeat`` adds
    pairs from fresh processes."""
    return median_ratio(ms, base_ms, level=LEVEL, resamples=BOOTSTRAP, seed=seed)


def summarize(rows: list[RowSpec], results: dict[str, dict]) -> list[dict[str, Any]]:
    """Table records: medians, IQRs, the paired time ratio to the reference row with its
    interval (a row with ``base_ms``; a base is 1 against itself), memory ratio, targets and
    whether met (on the median ratio)."""
    out = []
    by_name = {}
    for spec in rows:
        r = results.get(spec.name, {})
        rec: dict[str, Any] = {"name": spec.name, "rule": spec.rule or "-", "order": spec.order,
                               "reference": spec.reference or "", "error": r.get("error", "")}
        if r.get("ms"):
            q25, q50, q75 = np.percentile(r["ms"], [25, 50, 75])
            rec.update(ms_median=float(q50), ms_iqr=float(q75 - q25), steps=len(r["ms"]),
                       state_mb=r["state_bytes"] / 2**20, step_mb=r["step_bytes"] / 2**20,
                       peak_mb=(r["state_bytes"] + r["step_bytes"]) / 2**20, holdout=r.get("holdout", 0))
            if r.get("base_ms"):
                rec["time_ratio"], rec["ratio_low"], rec["ratio_high"] = paired_ratio(r["base_ms"], r["ms"])
                rec["pairs"] = len(r["ms"])
            elif spec.reference == spec.name:
                rec["time_ratio"] = rec["ratio_low"] = rec["ratio_high"] = 1.0
        by_name[spec.name] = rec
        out.append(rec)
    for rec in out:
        ref = by_name.get(rec["reference"])
        ok = "time_ratio" in rec and ref is not None and "ms_median" in ref
        for k in ("time_ratio", "ratio_low", "ratio_high"):
            rec[k] = rec.get(k, float("nan")) if ok else float("nan")
        r = results.get(rec["name"], {})
        floors = r.get("floor_ms")
        if ok and floors and len(floors) == len(r.get("base_ms", ())):
            # paired like the ratio: each pair's floor is its base step plus the rule's passes timed right after
            base, ms, fl = (np.asarray(r[k], dtype=float) for k in ("base_ms", "ms", "floor_ms"))
            rec["floor_ratio"] = float(np.median((base + fl) / base))
            rec["x_floor"] = float(np.median(ms / (base + fl)))
        else:
            rec["floor_ratio"] = rec["x_floor"] = float("nan")
        rec.setdefault("pairs", 0)
        rec["mem_ratio"] = rec["peak_mb"] / ref["peak_mb"] if ok and ref["peak_mb"] > 0 else float("nan")
        floor_step = r.get("floor_step_bytes")
        if rec["mem_ratio"] == rec["mem_ratio"] and floor_step is not None:
            # the row's own state plus the step that holds the base's graph and the floor passes together
            rec["mem_floor_ratio"] = (r["state_bytes"] + floor_step) / 2**20 / ref["peak_mb"]
            rec["x_mem_floor"] = rec["mem_ratio"] / rec["mem_floor_ratio"]
        else:
            rec["mem_floor_ratio"] = rec["x_mem_floor"] = float("nan")
        limit, mem_limit = TIME_TARGET.get(rec["order"]), MEMORY_TARGET.get(rec["order"])
        rec["target"] = f"<={limit:g}x, mem<={mem_limit:g}x" if limit else "-"
        if limit is None:
            rec["met"] = "-"
        elif not ok:
            rec["met"] = "n/a"
        else:
            # a row over its order's limit still meets its target within FLOOR_SLACK of its floor
            slow = rec["time_ratio"] > limit and not rec["x_floor"] <= FLOOR_SLACK
            heavy = rec["mem_ratio"] > mem_limit and not rec["x_mem_floor"] <= FLOOR_SLACK
            misses = [w for w, bad in (("time", slow), ("mem", heavy)) if bad]
            rec["met"] = "yes" if not misses else "NO (" + ", ".join(misses) + ")"
    return out


def pair_records(rows: list[RowSpec], results: dict[str, dict]) -> list[dict[str, Any]]:
    """Every timed pair, one record each: name, reference, repeat, index (within the repeat),
    base_ms, ms, ratio."""
    out = []
    for spec in rows:
        r = results.get(spec.name, {})
        base_ms = r.get("base_ms")
        if not base_ms:
            continue
        index: dict[int, int] = {}
        for rep, b, m in zip(r["repeat"], base_ms, r["ms"]):
            i = index[rep] = index.get(rep, -1) + 1
            out.append({"name": spec.name, "reference": spec.reference, "repeat": rep, "index": i,
                        "base_ms": b, "ms": m, "ratio": m / b})
    return out


def format_table(records: list[dict[str, Any]]) -> str:
    head = ["name", "rule", "order", "ms/step", "IQR", "x base", f"{LEVEL:.0%} CI", "pairs", "floor", "x floor",
            "peak MB", "step MB", "x base mem", "mem floor", "x mem floor", "target", "met"]

    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)

    lines = []
    for r in records:
        if r.get("error"):
            lines.append([r["name"], r["rule"], r["order"], "failed: " + r["error"][:80], *[""] * 12, r["target"], "n/a"])
            continue
        ci = f"{num(r['ratio_low'], '.2f')}-{num(r['ratio_high'], '.2f')}" if r.get("pairs") else "-"
        lines.append([r["name"], r["rule"], r["order"], num(r.get("ms_median"), ".2f"), num(r.get("ms_iqr"), ".2f"),
                      num(r["time_ratio"], ".2f"), ci, r.get("pairs", 0) or "-", num(r.get("floor_ratio"), ".2f"),
                      num(r.get("x_floor"), ".2f"), num(r.get("peak_mb"), ".2f"),
                      num(r.get("step_mb"), ".2f"), num(r["mem_ratio"], ".2f"), num(r.get("mem_floor_ratio"), ".2f"),
                      num(r.get("x_mem_floor"), ".2f"), r["target"], r["met"]])
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
            f"{opts.batch_unlabeled} unlabeled (+ hold-out where a rule asks); {opts.warmup} warm-up + {opts.steps} timed steps "
            f"per process; a variant timed in pairs with its base (base step, variant step, ...) in one process")
