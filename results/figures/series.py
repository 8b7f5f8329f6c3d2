"""Seed statistics the figures draw: mean ± std of a run column per x value, and mean ± std
curves of eval rows over steps (every figure's error bars and bands come from the seeds)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import color, label


def per_value(runs: pd.DataFrame, x: str, y: str = "test_error") -> pd.DataFrame:
    """Per value of column ``x``: mean, sample std (0 for one seed) and n of column ``y``, sorted by x."""
    if not len(runs):
        return pd.DataFrame(columns=["x", "mean", "std", "n"])
    rows = []
    for xv, g in runs.groupby(x, sort=True):
        v = g[y].astype(float).dropna().to_numpy()
        if len(v):
            rows.append({"x": float(xv), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                         "n": len(v)})
    return pd.DataFrame(rows, columns=["x", "mean", "std", "n"])


def error_bars(ax, table: pd.DataFrame, algorithm: str, scale: float = 100.0, **kw) -> None:
    """``table`` of :func:`per_value` as a line with ±1 std error bars in the method's colour."""
    if len(table):
        ax.errorbar(table["x"], scale * table["mean"], yerr=scale * table["std"], marker="o", capsize=2.5,
                    color=color(algorithm), label=kw.pop("label", label(algorithm)), **kw)


def eval_curve(evals: pd.DataFrame, run_ids, column: str = "error", split: str = "test", model: str = "ema",
               x: str = "step") -> pd.DataFrame:
    """Mean, std and n over the runs of ``column`` at each ``x`` of their ``split``/``model`` eval rows."""
    e = evals[evals["run_id"].isin(list(run_ids)) & (evals["split"] == split) & (evals["model"] == model)]
    if not len(e) or column not in e.columns:
        return pd.DataFrame(columns=["x", "mean", "std", "n"])
    g = e.assign(value=e[column].astype(float)).groupby(x)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "n": g.count()}).reset_index()
    return out.rename(columns={x: "x"})[["x", "mean", "std", "n"]]


def band(ax, curve: pd.DataFrame, algorithm: str, scale: float = 100.0, linestyle: str = "-", label_text=None,
         transform=None, colour: str | None = None) -> None:
    """A mean curve with a ±1 std band in the method's colour (or ``colour``); ``transform`` maps the mean
    (e.g. 1 - error)."""
    if not len(curve):
        return
    m = curve["mean"].to_numpy(dtype=float)
    s = curve["std"].to_numpy(dtype=float)
    lo, hi = m - s, m + s
    if transform is not None:
        m, lo, hi = transform(m), transform(lo), transform(hi)
    c = colour or color(algorithm)
    ax.plot(curve["x"], scale * m, color=c, linestyle=linestyle,
            label=label(algorithm) if label_text is None else label_text)
    ax.fill_between(curve["x"].to_numpy(dtype=float), scale * np.minimum(lo, hi), scale * np.maximum(lo, hi),
                    color=c, alpha=0.15, linewidth=0)
