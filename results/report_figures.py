"""The report's figures, drawn from the eval rows only: per setting, the EMA model's test
error against training time (the cost view) and its training-set and test error against
steps (paper 003 Fig. 1's curves)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .compare import curve


def slug(text: str) -> str:
    """A file-name-safe version of a setting label."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def mean_curves(runs: pd.DataFrame, evals: dict[str, pd.DataFrame], split: str) -> dict[str, pd.DataFrame]:
    """Per algorithm: step, mean elapsed_s and mean error over the seeds evaluated at that step."""
    out = {}
    for algo, g in runs.groupby("algorithm", sort=True):
        parts = [curve(evals.get(r.run_id), r.steps_per_s, split) for r in g.itertuples(index=False)]
        parts = [p for p in parts if len(p)]
        if not parts:
            continue
        allc = pd.concat(parts)
        allc["elapsed_s"] = allc["elapsed_s"].astype(float)
        allc["error"] = allc["error"].astype(float)
        out[algo] = allc.groupby("step", as_index=False)[["elapsed_s", "error"]].mean()
    return out


def _style(i: int) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return {"color": cmap(i % 20), "linestyle": ("-", "--", ":", "-.")[(i // 20) % 4]}


def _legend_fig(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(7.5 + (1.6 if n > 8 else 0), 4.0))


def time_figure(runs: pd.DataFrame, evals: dict[str, pd.DataFrame], title: str, path: str) -> bool:
    """Test error (EMA, %) against training seconds, one line per algorithm; False if nothing to draw."""
    curves = mean_curves(runs, evals, "test")
    if not curves:
        return False
    plt, (fig, ax) = _legend_fig(len(curves))
    for i, (algo, c) in enumerate(curves.items()):
        ax.plot(c["elapsed_s"], 100 * c["error"], label=algo, linewidth=1.3, **_style(i))
    ax.set_xlabel("training time (s, evaluations excluded)")
    ax.set_ylabel("test error (%, EMA model)")
    ends = [c["elapsed_s"].max() for c in curves.values()]
    if min(ends) > 0 and max(ends) / min(ends) > 10:  # a cheap and an expensive method: both stay readable
        ax.set_xscale("log")
    _finish(plt, fig, ax, title, path)
    return True


def train_test_figure(runs: pd.DataFrame, evals: dict[str, pd.DataFrame], title: str, path: str) -> bool:
    """EMA error on the labeled training set (dashed) and on the test set (solid) against steps."""
    test, train = mean_curves(runs, evals, "test"), mean_curves(runs, evals, "train")
    if not test:
        return False
    plt, (fig, ax) = _legend_fig(len(test))
    for i, (algo, c) in enumerate(test.items()):
        st = _style(i)
        ax.plot(c["step"], 100 * c["error"], label=algo, color=st["color"], linewidth=1.3)
        if algo in train:
            t = train[algo]
            ax.plot(t["step"], 100 * t["error"], color=st["color"], linewidth=1.0, linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylabel("error (%, EMA model)")
    _finish(plt, fig, ax, title + " — solid: test set, dashed: labeled training set", path)
    return True


def _finish(plt, fig, ax, title: str, path: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    lines = len(ax.get_legend_handles_labels()[0])
    ax.legend(fontsize=7 if lines <= 24 else 5.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              ncol=1 if lines <= 24 else 2, frameon=False)
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(0.0, lo), min(100.0, hi) if np.isfinite(hi) else 100.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
