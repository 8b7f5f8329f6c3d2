"""002 Table 5, as a figure and a table: test error at fixed training-time budgets, Meta-Semi
against ICT and against MixMatch."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..compare import curve, error_at_time, last_k_of
from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .style import FULL_IN, color, label, paper_style, pm

#: budgets as fractions of the pair's shorter mean training time (002's are 5.0 / 7.5 / 10.0 / 12.6 h = 0.40 /
#: 0.60 / 0.79 / 1 of its last, and 13.7 / 18.3 / 22.8 / 29.2 h = 0.47 / 0.63 / 0.78 / 1)
FRACTIONS = (0.4, 0.6, 0.8, 1.0)
#: (reference, method, network: None = any): the paper's panels (a) CNN-13 and (b) WRN-28
PAIRS = {"cpu": (("ict", "meta_semi", None), ("mixmatch", "meta_semi", None)),
         "paper": (("ict", "meta_semi", "cnn13"), ("mixmatch", "meta_semi", "wrn28_2"))}
_HOW = ("budgets at 40 / 60 / 80 / 100% of the shorter of the pair's mean training times, where the paper gives "
        "hours; a run's error at budget t is the median of its last 20 test evaluations made by t (the number it "
        "would report had it stopped then; runs are not re-trained with a schedule for t, which the paper's may "
        "have been); training time counts step time only and carries the noise of the machine's other load")


def cpu() -> Study:
    return Study((StudyPart(dict(suite="quick", datasets=("digits",), seeds=3, algorithms=("ict", "meta_semi",
                                                                                          "mixmatch"))),),
                 "digits (50 labels, cnn_small, 300 steps at batches 16+48, every method) instead of CIFAR-100 with "
                 "10,000 labels on CNN-13 and WRN-28; both panels share one setting; " + _HOW +
                 "; the runs are the quick suite's")


def paper() -> Study:
    plan = dict(datasets=("cifar100",), labels=(10000,), seeds=3)
    return Study((StudyPart(dict(plan, protocols=("meta_semi_table1",), algorithms=("ict", "meta_semi"))),
                  StudyPart(dict(plan, protocols=("meta_semi_table2",), algorithms=("mixmatch", "meta_semi")))),
                 "the 002 Table 1 (CNN-13) and Table 2 (WRN-28-2) protocols on CIFAR-100 with 10,000 labels, each "
                 "method at its own protocol budget (as the paper); 3 seeds; " + _HOW)


def _run_curves(ok: pd.DataFrame, evals: pd.DataFrame) -> dict[str, pd.DataFrame]:
    by_run = {rid: g for rid, g in evals.groupby("run_id")} if len(evals) else {}
    return {r.run_id: curve(by_run.get(r.run_id), r.steps_per_s, "test") for r in ok.itertuples()}


def budget_table(ok: pd.DataFrame, evals: pd.DataFrame, pairs) -> pd.DataFrame:
    """One row per (panel, method, budget): t, the seeds' errors at t, their mean and std."""
    curves = _run_curves(ok, evals)
    rows = []
    for i, (ref, method, network) in enumerate(pairs):
        sub = ok[ok["algorithm"].isin([ref, method]) & ((ok["network"] == network) if network else True)]
        ends = {a: np.mean([curves[r]["elapsed_s"].max() for r in g["run_id"] if len(curves[r])])
                for a, g in sub.groupby("algorithm") if len(g)}
        if len(ends) < 2:
            continue
        t_end = min(ends.values())
        for algo in (ref, method):
            g = sub[sub["algorithm"] == algo]
            for f in FRACTIONS:
                errs = [error_at_time(curves[r.run_id], f * t_end, last_k_of(r.config_json)) for r in g.itertuples()]
                errs = [e for e in errs if not math.isnan(e)]
                rows.append({"panel": i, "network": g["network"].iloc[0], "algorithm": algo, "fraction": f,
                             "t_s": f * t_end, "n": len(errs), "errors": errs,
                             "mean": float(np.mean(errs)) if errs else math.nan,
                             "std": float(np.std(errs, ddof=1)) if len(errs) > 1 else 0.0})
    return pd.DataFrame(rows)


def _mean_curve(runs: pd.DataFrame, curves: dict) -> pd.DataFrame:
    parts = [curves[r] for r in runs["run_id"] if len(curves[r])]
    if not parts:
        return pd.DataFrame(columns=["step", "elapsed_s", "mean", "std"])
    allc = pd.concat(parts)
    g = allc.groupby("step")
    return pd.DataFrame({"elapsed_s": g["elapsed_s"].mean(), "mean": g["error"].mean(),
                         "std": g["error"].std(ddof=1).fillna(0.0)}).reset_index()


def _t(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def plot(data: FigureData) -> Drawing:
    ok = data.ok()
    pairs = PAIRS[data.scale]
    table = budget_table(ok, data.evals, pairs) if len(ok) else pd.DataFrame()
    if table.empty:
        raise NothingToDraw("no pair of 002-table5 has finished runs on both sides")
    curves = _run_curves(ok, data.evals)
    panels = sorted(table["panel"].unique())
    with paper_style() as plt:
        fig, axes = plt.subplots(1, len(panels), figsize=(FULL_IN * 0.8, 2.5), squeeze=False, sharey=True)
        for ax, i in zip(axes[0], panels):
            ref, method, network = pairs[i]
            part = table[table["panel"] == i]
            for algo in (ref, method):
                runs = ok[(ok["algorithm"] == algo) & ((ok["network"] == network) if network else True)]
                c = _mean_curve(runs, curves)
                ax.plot(c["elapsed_s"], 100 * c["mean"], color=color(algo), label=label(algo))
                ax.fill_between(c["elapsed_s"], 100 * (c["mean"] - c["std"]), 100 * (c["mean"] + c["std"]),
                                color=color(algo), alpha=0.15, linewidth=0)
                pts = part[part["algorithm"] == algo]
                ax.errorbar(pts["t_s"], 100 * pts["mean"], yerr=100 * pts["std"], ls="none", marker="o", ms=3.5,
                            capsize=2.5, color=color(algo))
            for t in part["t_s"].unique():
                ax.axvline(t, color="0.6", lw=0.6, ls=":")
            ax.set_title(f"({'abcd'[i]}) {label(ref)} vs {label(method)}, {part['network'].iloc[0]}")
            ax.set_xlabel("training time (s, evaluations excluded)")
            ax.legend(loc="upper right")
        axes[0][0].set_ylabel("test error (%, EMA model)")
        fig.tight_layout()
    cells = table.assign(cell=[f"{pm(r.errors)} at {_t(r.t_s)}" for r in table.itertuples()],
                         budget=[f"{100 * f:.0f}% of T" for f in table["fraction"]])
    wide = cells.pivot_table(index=["panel", "network", "algorithm"], columns="budget", values="cell",
                             aggfunc="first", sort=False).reset_index()
    wide["algorithm"] = wide["algorithm"].map(label)
    return Drawing(fig, ["Lines: mean test error over the seeds against training time, band ± std; markers: the "
                         "error at each budget (dotted lines), mean ± std over the seeds, in %. T: the shorter of the two "
                         "methods' mean training times (the table beside the figure)."],
                   {"error_at_budget": wide.drop(columns=["panel"])})


FIGURE = Figure(
    name="002-table5", paper="002 (Meta-Semi)", number="Table 5", title="test error at fixed training-time budgets",
    shows="Test error of Meta-Semi and of ICT / MixMatch at fixed training-time budgets (and the curves of error "
          "against training time they are read from)",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
