"""Figures and tables read only from the Parquet results (runs/, studies/).

``python -m results.plots --results-dir DIR [--study ID] [--out STEM]`` draws a sensitivity
study in the style of Meta-Semi's Fig. 3 (paper 002 Sec. 4.3): test error against the
varied hyperparameter's value, mean over seeds with one standard deviation as error bars,
one line per method (and per value of the second parameter of a 2-D grid, as ICT's beta x w),
written as PNG and PDF.
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
    """Per (algorithm, value[, value2]): seeds finished and mean/std of test and validation error.

    Columns: algorithm, param, value, param2, value2 (None for a 1-D study), n, test_error_mean,
    test_error_std (ddof 1; NaN for one seed), val_error_mean. Only runs with status ok count.
    """
    study = study_row(results_dir, study_id)
    params: dict[str, list[str]] = json.loads(study["params_json"])
    runs = ResultStore(results_dir).load_runs(json.loads(study["run_ids_json"]))
    if not runs.empty:
        runs = runs[(runs["suite"] == study["suite"]) & (runs["status"] == "ok")]
    rows = []
    for algo, names in params.items():
        sub = runs[runs["algorithm"] == algo] if not runs.empty else runs
        if sub.empty:
            continue
        keys = [f"hp_{n}" for n in names]
        for vals, grp in sub.groupby(keys, sort=True):
            vals = vals if isinstance(vals, tuple) else (vals,)
            te = grp["test_error"].astype(float)
            rows.append({"algorithm": algo, "param": names[0], "value": float(vals[0]),
                         "param2": names[1] if len(names) > 1 else None,
                         "value2": float(vals[1]) if len(names) > 1 else None,
                         "n": int(len(grp)), "test_error_mean": float(te.mean()),
                         "test_error_std": float(te.std(ddof=1)) if len(te) > 1 else float("nan"),
                         "val_error_mean": float(grp["val_error"].astype(float).mean())})
    cols = ["algorithm", "param", "value", "param2", "value2", "n", "test_error_mean", "test_error_std", "val_error_mean"]
    return pd.DataFrame(rows, columns=cols)


def format_sensitivity(table: pd.DataFrame) -> str:
    lines = [f"{'algorithm':<24} {'value':>18} {'seeds':>5} {'test error (%)':>16} {'val error (%)':>13}"]
    for r in table.itertuples():
        v = f"{r.param}={r.value:g}" + ("" if r.param2 is None else f", {r.param2}={r.value2:g}")
        sd = "" if math.isnan(r.test_error_std) else f" +- {100 * r.test_error_std:.2f}"
        lines.append(f"{r.algorithm:<24} {v:>18} {r.n:>5} {100 * r.test_error_mean:>8.2f}{sd:<8} "
                     f"{100 * r.val_error_mean:>13.2f}")
    return "\n".join(lines)


def plot_sensitivity(results_dir: str, study_id: str | None = None, out: str | None = None) -> list[str]:
    """Draw the study as ``out``.png and ``out``.pdf (default: results_dir/figures/sensitivity-<id>)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = study_row(results_dir, study_id)
    table = sensitivity_table(results_dir, study["study_id"])
    if table.empty:
        raise PlotError(f"study {study['study_id']} has no finished runs to plot")
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for (algo, v2), grp in table.groupby(["algorithm", table["value2"].fillna(float("nan"))], dropna=False, sort=True):
        grp = grp.sort_values("value")
        label = f"{algo} ({grp['param'].iloc[0]})"
        if grp["param2"].iloc[0] is not None:
            label += f", {grp['param2'].iloc[0]}={grp['value2'].iloc[0]:g}"
        ax.errorbar(grp["value"], 100 * grp["test_error_mean"], yerr=100 * grp["test_error_std"].fillna(0.0),
                    marker="o", capsize=3, label=label)
    values = table["value"]
    if values.min() > 0 and values.max() / values.min() >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(" / ".join(dict.fromkeys(table["param"])))
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{study['dataset']}, {study['n_labels']} labels, {study['steps']} steps, "
                 f"{study['seeds']} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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
