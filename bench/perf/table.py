"""The performance table: medians, IQRs, ratios to the base, the targets and whether met."""
from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

from .measure import Options
from .rows import RowSpec

TIME_TARGET = {"first": 1.6, "second": 4.0}  # max ratio of ms/step to the base's
MEMORY_TARGET = 1.5  # max ratio of peak MB to the base's


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
