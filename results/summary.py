"""Summaries of the runs table: per (dataset, n_labels, algorithm) mean +- std over seeds."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

GROUP_KEYS = ["dataset", "n_labels", "algorithm"]
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


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, n_labels, algorithm).

    Statistics are over runs with status ``ok`` only: ``n_runs`` (ok runs),
    ``test_error_mean``/``test_error_std`` (sample std, ddof=1; NaN for fewer than two
    runs), ``val_error_mean``, ``steps_per_s_mean``, ``wall_time_s_mean``. ``n_failed``
    and ``n_diverged`` count the other runs of the group. Error columns are fractions.
    """
    if runs is None or len(runs) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("n_labels", "n_runs", "n_failed", "n_diverged")
                                          else "float64" if c not in ("dataset", "algorithm") else object)
                             for c in SUMMARY_COLUMNS})
    missing = [c for c in GROUP_KEYS + ["status", "test_error", "val_error", "steps_per_s", "wall_time_s"]
               if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {', '.join(missing)}")

    rows = []
    for key, g in runs.groupby(GROUP_KEYS, sort=True, dropna=False):
        ok = g[g["status"] == "ok"]
        te = ok["test_error"].astype(float)
        rows.append({
            "dataset": key[0],
            "n_labels": key[1],
            "algorithm": key[2],
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


def format_table(summary: pd.DataFrame) -> str:
    """Fixed-width text table, one line per group, sorted by dataset, labels, algorithm.

    Errors are shown in percent; ``-`` marks a value that does not exist (no ok run,
    or a std of a single run)."""
    header = ["dataset", "labels", "algorithm", "test error % (n)", "val error %", "steps/s", "wall s",
              "failed/diverged"]
    lines = []
    if summary is not None and len(summary):
        s = summary.sort_values(GROUP_KEYS, kind="stable")
        for r in s.itertuples(index=False):
            te_mean = r.test_error_mean * 100 if not _isnan(r.test_error_mean) else math.nan
            te_std = r.test_error_std * 100 if not _isnan(r.test_error_std) else math.nan
            ve = r.val_error_mean * 100 if not _isnan(r.val_error_mean) else math.nan
            lines.append([
                str(r.dataset), str(r.n_labels), str(r.algorithm),
                f"{_fmt(te_mean, '.2f')} ± {_fmt(te_std, '.2f')} ({r.n_runs})",
                _fmt(ve, ".2f"), _fmt(r.steps_per_s_mean, ".2f"), _fmt(r.wall_time_s_mean, ".0f"),
                f"{r.n_failed}/{r.n_diverged}",
            ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
    right = {1, 3, 4, 5, 6, 7}

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
