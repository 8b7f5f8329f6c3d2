"""Summaries of the runs table: per (metric, dataset, n_labels, network, steps, algorithm) mean +- std
over seeds, and the fixed-width table ``bench.run`` prints (with each method's paired
difference to its reference from :mod:`results.compare`).

The metric (``error`` or ``nme_iod``, :data:`results.schema.METRICS`) is a group key, so no statistic
mixes metrics, and :func:`format_table` prints one block per metric under its own column title.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .schema import LEGACY_METRIC

GROUP_KEYS = ["metric", "dataset", "n_labels", "network", "steps", "algorithm"]
#: the title of each metric's column in :func:`format_table` (values x 100)
METRIC_TITLES = {"error": "error %", "nme_iod": "NME/IOD %"}
#: columns older or synthetic runs tables may lack: absent means one value for every run
_OPTIONAL_KEYS = {"network": "", "steps": 0}
SUMMARY_COLUMNS = GROUP_KEYS + [
    "n_runs", "test_error_mean", "test_error_std", "val_error_mean",
    "steps_per_s_mean", "wall_time_s_mean", "n_failed", "n_diverged",
]


def last_k_median(errors: Sequence[float], k: int = 20) -> float:
    """Median of the last ``k`` values (all of them if fewer); NaN for an empty sequence."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    a = np.asarray(list(errors), dtype=float)
    if a.size == 0:
        return float("nan")
    return float(np.median(a[-k:]))


def with_metric(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``metric`` column, rows written before it (null or absent) as ``error``."""
    table = table.copy()
    table["metric"] = table["metric"].fillna(LEGACY_METRIC) if "metric" in table.columns else LEGACY_METRIC
    return table


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, dataset, n_labels, network, steps, algorithm).

    Statistics are over runs with status ``ok`` only: ``n_runs`` (ok runs),
    ``test_error_mean``/``test_error_std`` (sample std, ddof=1; NaN for fewer than two
    runs), ``val_error_mean``, ``steps_per_s_mean``, ``wall_time_s_mean``. ``n_failed``
    and ``n_diverged`` count the other runs of the group. Error columns are fractions.
    """
    if runs is None or len(runs) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("n_labels", "steps", "n_runs", "n_failed", "n_diverged")
                                          else "float64" if c not in ("metric", "dataset", "network", "algorithm") else object)
                             for c in SUMMARY_COLUMNS})
    runs = with_metric(runs.assign(**{k: v for k, v in _OPTIONAL_KEYS.items() if k not in runs.columns}))
    missing = [c for c in GROUP_KEYS + ["status", "test_error", "val_error", "steps_per_s", "wall_time_s"]
               if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {', '.join(missing)}")

    rows = []
    for key, g in runs.groupby(GROUP_KEYS, sort=True, dropna=False):
        ok = g[g["status"] == "ok"]
        te = ok["test_error"].astype(float)
        rows.append({
            **dict(zip(GROUP_KEYS, key)),
            "n_runs": int(len(ok)),
            "test_error_mean": float(te.mean()) if len(ok) else math.nan,
            "test_error_std": float(te.std(ddof=1)) if te.notna().sum() >= 2 else math.nan,
            "val_error_mean": float(ok["val_error"].astype(float).mean()) if len(ok) else math.nan,
            "steps_per_s_mean": float(ok["steps_per_s"].astype(float).mean()) if len(ok) else math.nan,
            "wall_time_s_mean": float(ok["wall_time_s"].astype(float).mean()) if len(ok) else math.nan,
            "n_failed": int((g["status"] == "failed").sum()),
            "n_diverged": int((g["status"] == "diverged").sum()),
        })
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return out.sort_values(GROUP_KEYS, kind="stable").reset_index(drop=True)


def _fmt(x: float, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def delta_cell(mean: float, low: float, high: float) -> str:
    """A paired difference in percentage points with its interval, e.g. ``-2.10 [-4.01, -0.19]``."""
    if _isnan(mean):
        return "-"
    if _isnan(low):
        return f"{100 * mean:+.2f} [n<2]"
    return f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def format_table(summary: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> str:
    """Fixed-width text table, one line per group, sorted by dataset, labels, network, steps, algorithm:
    one block per metric (classification error, landmark NME / inter-ocular distance), each with its
    own header, blocks separated by a blank line.

    Metrics are shown in percent; ``-`` marks a value that does not exist (no ok run, or a std of
    a single run). With ``comparisons`` (:func:`results.compare.comparisons` of the same runs),
    each method shows its paired test-metric difference to its reference (the base for
    ``BASE+RULE``, else ``supervised``): mean over seed pairs and 95% paired-t interval, in
    percentage points, and the verdict (``better``/``worse``/``no evidence``)."""
    if summary is None or not len(summary):
        return _block(None, LEGACY_METRIC, comparisons)
    summary = with_metric(summary)
    return "\n\n".join(_block(summary[summary["metric"] == m], m, comparisons)
                        for m in sorted(summary["metric"].unique()))


def _block(summary: pd.DataFrame | None, metric: str, comparisons: pd.DataFrame | None) -> str:
    """The table of one metric's groups."""
    title = METRIC_TITLES.get(metric, f"{metric} %")
    header = ["dataset", "labels", "network", "steps", "algorithm", f"test {title} (n)", "Δ test pp [95% CI]",
              "vs (pairs)", "verdict", f"val {title}", "steps/s", "wall s", "failed/diverged"]
    refs = {}
    if comparisons is not None and len(comparisons):
        for c in comparisons.itertuples(index=False):
            mine = "rule vs base" if "+" in c.method else "vs supervised"
            if c.kind == mine:
                refs[(c.dataset, c.n_labels, c.network, c.steps, c.method)] = c
    lines = []
    if summary is not None and len(summary):
        s = summary.sort_values(GROUP_KEYS, kind="stable")
        for r in s.itertuples(index=False):
            te_mean = r.test_error_mean * 100 if not _isnan(r.test_error_mean) else math.nan
            te_std = r.test_error_std * 100 if not _isnan(r.test_error_std) else math.nan
            ve = r.val_error_mean * 100 if not _isnan(r.val_error_mean) else math.nan
            c = refs.get((r.dataset, r.n_labels, r.network, r.steps, r.algorithm))
            lines.append([
                str(r.dataset), str(r.n_labels), str(r.network), str(r.steps), str(r.algorithm),
                f"{_fmt(te_mean, '.2f')} ± {_fmt(te_std, '.2f')} ({r.n_runs})",
                delta_cell(c.mean, c.t_low, c.t_high) if c is not None else "-",
                f"{c.reference} ({c.n})" if c is not None else "-",
                ("no evidence" if c.verdict.startswith("no evidence") else c.verdict) if c is not None else "-",
                _fmt(ve, ".2f"), _fmt(r.steps_per_s_mean, ".2f"), _fmt(r.wall_time_s_mean, ".0f"),
                f"{r.n_failed}/{r.n_diverged}",
            ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
    right = {1, 3, 5, 6, 9, 10, 11, 12}

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [fmt_line(header), fmt_line(["-" * w for w in widths])]
    out += [fmt_line(l) for l in lines]
    if not lines:
        out.append("(no runs)")
    return "\n".join(out)


def _isnan(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def format_comparisons(test: pd.DataFrame, val: pd.DataFrame) -> str:
    """Text table of paired comparisons (:func:`results.compare.comparisons` of test and
    validation errors): one line per (setting, kind, method), Δ in percentage points."""
    header = ["setting", "kind", "method", "reference", "pairs", "Δ test pp [95% t]", "improved", "verdict",
              "Δ val pp [95% t]", "val verdict"]
    lines = []
    vals = {(r.setting, r.kind, r.method): r for r in val.itertuples(index=False)} if len(val) else {}
    for r in test.itertuples(index=False):
        v = vals.get((r.setting, r.kind, r.method))
        lines.append([r.setting, r.kind, r.method, r.reference, str(r.n), delta_cell(r.mean, r.t_low, r.t_high),
                      f"{r.n_improved}/{r.n}", r.verdict,
                      delta_cell(v.mean, v.t_low, v.t_high) if v is not None else "-", v.verdict if v is not None else "-"])
    if not lines:
        return "(no pairs: no setting holds a method and its reference)"
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    right = {4, 5, 6, 8}
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines])


def final_tables(runs: pd.DataFrame) -> str:
    """What ``bench.run`` prints at the end: the summary with each method's paired Δ to its
    reference, then every paired comparison (rule vs base, method vs supervised)."""
    from .compare import comparisons, with_settings

    if runs is None or len(runs) == 0:
        return format_table(summarize(runs))
    s = with_settings(runs)
    test, val = comparisons(s, "test_error"), comparisons(s, "val_error")
    return "\n".join([format_table(summarize(runs), test), "",
                      "Paired comparisons (Δ = method − reference over seeds with the same splits; pp = percentage "
                      "points; verdict 'better'/'worse' only when the 95% t and bootstrap intervals exclude 0):",
                      format_comparisons(test, val)])
