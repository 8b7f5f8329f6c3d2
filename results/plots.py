"""Figures and tables read only from the Parquet results (runs/, studies/).

``python -m results.plots --results-dir DIR [--study ID] [--out STEM]`` draws a sensitivity
study in the layout of Meta-Semi's Fig. 3 (paper 002 Sec. 4.3): one panel per method, test
error against the varied hyperparameter's value, mean over seeds with one standard deviation
as error bars, one line per value of the second parameter of a 2-D grid (as ICT's beta x w),
the panels sharing the error axis; written as PNG and PDF. The registered figure 002-fig3
(``python -m bench.figure 002-fig3``) draws its own study with the same functions.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import pandas as pd

from .store import ResultStore
from .trials import SearchStore


class PlotError(ValueError):
    """Nothing to plot (one-line message)."""


def study_row(results_dir: str, study_id: str | None = None) -> dict:
    """The studies-table row of ``study_id`` (the most recent study when None)."""
    studies = SearchStore(results_dir).load_studies(None if study_id is None else [study_id])
    if studies.empty:
        raise PlotError(f"no sensitivity study {'' if study_id is None else repr(study_id) + ' '}under "
                        f"{os.path.abspath(results_dir)}")
    return studies.sort_values("created_at").iloc[-1].to_dict()


def sensitivity_table(results_dir: str, study_id: str | None = None) -> pd.DataFrame:
    """Per (algorithm, value[, value2]) of a studies-table study: see :func:`sweep_table`.
    Only the study's own runs (its suite) with status ok count."""
    study = study_row(results_dir, study_id)
    params: dict[str, list[str]] = json.loads(study["params_json"])
    runs = ResultStore(results_dir).load_runs(json.loads(study["run_ids_json"]))
    if not runs.empty:
        runs = runs[(runs["suite"] == study["suite"]) & (runs["status"] == "ok")]
    return sweep_table(runs, params)


SWEEP_COLUMNS = ["algorithm", "param", "value", "param2", "value2", "n", "test_error_mean", "test_error_std",
                 "val_error_mean"]


def sweep_table(runs: pd.DataFrame, params: dict[str, list[str]]) -> pd.DataFrame:
    """Per (algorithm, value[, value2]) of the varied hyperparameters ``params`` ({algorithm: one
    or two names}): seeds and mean/std of test and validation error over ``runs`` (all counted).

    Columns: algorithm, param, value, param2, value2 (None for a 1-D sweep), n, test_error_mean,
    test_error_std (ddof 1; NaN for one seed), val_error_mean.
    """
    rows = []
    for algo, names in params.items():
        sub = runs[runs["algorithm"] == algo] if not runs.empty else runs
        keys = [f"hp_{n}" for n in names]
        if sub.empty or any(k not in sub.columns for k in keys):
            continue
        for vals, grp in sub.groupby(keys, sort=True):
            vals = vals if isinstance(vals, tuple) else (vals,)
            te = grp["test_error"].astype(float)
            rows.append({"algorithm": algo, "param": names[0], "value": float(vals[0]),
                         "param2": names[1] if len(names) > 1 else None,
                         "value2": float(vals[1]) if len(names) > 1 else None,
                         "n": int(len(grp)), "test_error_mean": float(te.mean()),
                         "test_error_std": float(te.std(ddof=1)) if len(te) > 1 else float("nan"),
                         "val_error_mean": float(grp["val_error"].astype(float).mean())})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def format_sensitivity(table: pd.DataFrame) -> str:
    lines = [f"{'algorithm':<24} {'value':>18} {'seeds':>5} {'test error (%)':>16} {'val error (%)':>13}"]
    for r in table.itertuples():
        v = f"{r.param}={r.value:g}" + ("" if r.param2 is None else f", {r.param2}={r.value2:g}")
        sd = "" if math.isnan(r.test_error_std) else f" +- {100 * r.test_error_std:.2f}"
        lines.append(f"{r.algorithm:<24} {v:>18} {r.n:>5} {100 * r.test_error_mean:>8.2f}{sd:<8} "
                     f"{100 * r.val_error_mean:>13.2f}")
    return "\n".join(lines)


def draw_sweep(axes: dict, table: pd.DataFrame, names: dict[str, str] | None = None) -> None:
    """Draw a :func:`sweep_table` onto ``axes`` ({algorithm: matplotlib axes}): test error (%)
    against the first parameter, mean ± std over seeds as error bars, one line per value of the
    second parameter (line styles), in the method's colour (``results.figures.style``)."""
    from .figures.style import color, label

    styles = ("-", "--", ":", "-.")
    for algo, ax in axes.items():
        sub = table[table["algorithm"] == algo]
        if sub.empty:
            ax.set_title(f"{label(algo)} (no runs)")
            continue
        seconds = sorted(sub["value2"].dropna().unique())
        for i, v2 in enumerate(seconds or [None]):
            grp = (sub if v2 is None else sub[sub["value2"] == v2]).sort_values("value")
            text = label(algo) if v2 is None else f"{(names or {}).get(grp['param2'].iloc[0], grp['param2'].iloc[0])} = {v2:g}"
            ax.errorbar(grp["value"], 100 * grp["test_error_mean"], yerr=100 * grp["test_error_std"].fillna(0.0),
                        marker="os^D"[i % 4], capsize=2.5, color=color(algo), linestyle=styles[i % 4],
                        alpha=1.0 - 0.15 * i, label=text)
        values = sub["value"]
        if values.min() > 0 and values.max() / values.min() >= 20:
            ax.set_xscale("log")
        param = sub["param"].iloc[0]
        ax.set_xlabel((names or {}).get(param, param))
        ax.set_title(label(algo))
        ax.legend(loc="best")


def plot_sensitivity(results_dir: str, study_id: str | None = None, out: str | None = None) -> list[str]:
    """Draw the study as ``out``.png and ``out``.pdf (default: results_dir/figures/sensitivity-<id>):
    one panel per method, side by side with a shared error axis (the layout of 002 Fig. 3)."""
    from .figures.style import FULL_IN, COLUMN_IN, paper_style

    study = study_row(results_dir, study_id)
    table = sensitivity_table(results_dir, study["study_id"])
    if table.empty:
        raise PlotError(f"study {study['study_id']} has no finished runs to plot")
    algos = list(dict.fromkeys(table["algorithm"]))
    with paper_style() as plt:
        fig, axes = plt.subplots(1, len(algos), figsize=(min(FULL_IN, COLUMN_IN * max(1, len(algos)) * 0.8 + 0.8), 2.6),
                                 squeeze=False, sharey=True)
        draw_sweep(dict(zip(algos, axes[0])), table)
        axes[0][0].set_ylabel("test error (%)")
        fig.suptitle(f"{study['dataset']}, {study['n_labels']} labels, {study['steps']} steps, "
                     f"{study['seeds']} seeds (mean ± std)", fontsize=8)
        fig.tight_layout()
        stem = out or os.path.join(os.path.abspath(results_dir), "figures", f"sensitivity-{study['study_id']}")
        stem = stem[:-4] if stem.endswith((".png", ".pdf")) else stem
        os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
        paths = [f"{stem}.png", f"{stem}.pdf"]
        for p in paths:
            fig.savefig(p, dpi=150)
        plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m results.plots", description="Sensitivity figure (Meta-Semi Fig. 3 style) "
                                "from the Parquet results")
    p.add_argument("--results-dir", default="bench-results")
    p.add_argument("--study", help="study id (default: the most recent one)")
    p.add_argument("--out", help="output path without extension (default: RESULTS_DIR/figures/sensitivity-ID)")
    args = p.parse_args(argv)
    try:
        paths = plot_sensitivity(args.results_dir, args.study, args.out)
        print(format_sensitivity(sensitivity_table(args.results_dir, study_row(args.results_dir, args.study)["study_id"])))
    except PlotError as e:
        print(f"results.plots: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
