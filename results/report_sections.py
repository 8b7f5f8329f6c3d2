"""The report's sections, each a list of :mod:`results.report_doc` blocks built from tables."""
from __future__ import annotations

import math

import pandas as pd

from .compare import REFERENCE, cost_table, duplicates, usable
from .report_doc import Bullets, Heading, Para, Table
from .summary import delta_cell, last_k_median


def mean_std(values: pd.Series) -> str:
    v = values.astype(float).dropna()
    if v.empty:
        return "-"
    return f"{100 * v.mean():.2f} ± {100 * v.std(ddof=1):.2f}" if len(v) > 1 else f"{100 * v.mean():.2f}"


HOW_TO_READ = [
    "Errors are percentages of misclassified examples; each run's number is the median of its EMA model's last 20 "
    "evaluations (test) or of the same evaluations on the validation split (val).",
    "A **setting** fixes everything a fair comparison needs equal: dataset, labels, network, budget in steps, batch "
    "sizes, optimizer and learning rate, validation protocol and suite. Methods are compared only within a setting.",
    "**Paired comparisons** take, for every seed, the method's error minus its reference's on the same labeled split, "
    "validation split and training seed. Δ < 0 means the method has the lower error. The 95% intervals are a paired "
    "t interval and a bootstrap percentile interval of the mean Δ (exact over all resamples for up to 6 seeds).",
    "**Verdict**: `better` or `worse` only when both intervals exclude 0 on the same side; otherwise `no evidence "
    "either way` (a finding, not a failure). With 3 seeds only large, consistent differences can be resolved.",
    "**Equal time**: each pair is also compared at the shorter of its two training times, each run read from its own "
    "evaluation curve (the error it would have reported had it stopped then); training time counts training steps "
    "only, evaluations excluded. Runs share a machine with other runs, so times are noisy.",
]


def overview(runs: pd.DataFrame, loaded_problems: list[str], results_dir: str) -> list:
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    blocks = [Heading(1, "Overview"),
              Para(f"Results directory `{results_dir}`: {len(runs)} runs ({counts.get('ok', 0)} ok, "
                   f"{counts.get('failed', 0)} failed, {counts.get('diverged', 0)} diverged) in "
                   f"{runs['setting'].nunique() if len(runs) else 0} settings.")]
    if loaded_problems:
        blocks += [Para(f"{len(loaded_problems)} file(s) could not be used and are left out:"),
                   Bullets(loaded_problems)]
    blocks += [Heading(2, "How to read this report"), Bullets(HOW_TO_READ)]
    return blocks


def settings_section(runs: pd.DataFrame) -> list:
    rows = []
    for setting, g in runs.groupby("setting", sort=True):
        r = g.iloc[0]
        nval = g["n_val"].dropna().astype(int).unique() if "n_val" in g else []
        rows.append([setting, str(r["suite"]), f"{r['dataset']}", str(r["n_labels"]), str(r["network"]), str(r["steps"]),
                     f"{r['batch_labeled']}+{r['batch_unlabeled']}", f"{r['optimizer']} {r['lr']}",
                     f"{r['val_protocol']}" + (f" ({'/'.join(map(str, nval))})" if len(nval) else ""),
                     str(g["seed"].nunique()), str(g["algorithm"].nunique())])
    blocks = [Heading(1, "Settings"),
              Table(["setting", "suite", "dataset", "labels", "network", "steps", "batch (labeled+unlabeled)",
                     "optimizer, lr", "validation (examples)", "seeds", "methods"], rows, "lllrlrllrrr")]
    notes = []
    if "protocol_notes" in runs:
        for note, g in runs.groupby(runs["protocol_notes"].fillna(""), sort=True):
            if note:
                notes.append(f"{note} — {len(g)} run(s): " + ", ".join(sorted(g["setting"].unique())))
    blocks += [Heading(2, "Protocol deviations recorded with the runs"),
               Bullets(notes) if notes else Para("None recorded.")]
    if "preset" in runs and runs["preset"].fillna("").astype(str).str.len().gt(0).any():
        presets = runs.groupby(runs["preset"].fillna(""))["algorithm"].unique()
        blocks.append(Bullets([f"preset `{p}`: " + ", ".join(sorted(a)) for p, a in presets.items() if p]))
    return blocks


def missing_section(runs: pd.DataFrame) -> list:
    items = []
    for setting, g in runs.groupby("setting", sort=True):
        seeds = set(zip(g["seed"], g["split_seed"]))
        for algo, a in g.groupby("algorithm", sort=True):
            lacking = sorted(s for s, _ in seeds - set(zip(a["seed"], a["split_seed"])))
            if lacking:
                items.append(f"{setting}: {algo} has no run for seed(s) {', '.join(map(str, lacking))}")
            for r in a[a["status"] != "ok"].itertuples(index=False):
                msg = str(getattr(r, "error_message", "") or "")
                items.append(f"{setting}: {algo} seed {r.seed} {r.status}" + (f": {msg[:200]}" if msg else ""))
    algos_by_suite = runs.groupby(["suite", "dataset"])["algorithm"].unique()
    for setting, g in runs.groupby("setting", sort=True):
        expected = set(algos_by_suite.loc[(g["suite"].iloc[0], g["dataset"].iloc[0])])
        absent = sorted(expected - set(g["algorithm"]))
        if absent:
            items.append(f"{setting}: not run here (run in another setting of this suite): {', '.join(absent)}")
    dup = duplicates(runs)
    if len(dup):
        items.append(f"{len(dup)} ok run(s) repeat an (algorithm, seed) of their setting with other hyperparameters "
                     "or an earlier finish: only the latest finished of each counts")
    return [Heading(1, "What is missing"), Bullets(items) if items else Para("Nothing: every method of every setting "
                                                                                "has an ok run for every seed.")]


def train_errors(runs: pd.DataFrame, evals: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Per run id: median of the EMA model's last 20 errors on the labeled training set."""
    out = {}
    for rid in runs["run_id"]:
        e = evals.get(rid)
        if e is None:
            continue
        t = e[(e["split"] == "train") & (e["model"] == "ema")].sort_values("step")
        if len(t):
            out[rid] = last_k_median(t["error"].astype(float).tolist())
    return out


def results_section(runs: pd.DataFrame, evals: dict[str, pd.DataFrame]) -> list:
    blocks = [Heading(1, "Results per setting"),
              Para("Mean ± std (ddof 1) over the ok runs, errors in %. `train` is the EMA model's error on the "
                   "labeled training set (paper 003 Fig. 1's training curves; `-` for runs recorded before it was "
                   "evaluated).")]
    u = usable(runs)
    tr = train_errors(u, evals)
    for setting, g in u.groupby("setting", sort=True):
        allg = runs[runs["setting"] == setting]
        rows = []
        for algo, a in g.groupby("algorithm", sort=True):
            bad = allg[(allg["algorithm"] == algo) & (allg["status"] != "ok")]
            rows.append([algo, f"{len(a)}" + (f" (+{len(bad)} not ok)" if len(bad) else ""), mean_std(a["test_error"]),
                         mean_std(a["val_error"]), mean_std(a["run_id"].map(tr)),
                         f"{a['steps_per_s'].astype(float).mean():.1f}"])
        blocks += [Heading(2, setting), Table(["method", "n", "test %", "val %", "train %", "steps/s"], rows, "lrrrrr")]
    return blocks


def _comparison_rows(c: pd.DataFrame, detail: bool) -> list[list[str]]:
    rows = []
    for r in c.itertuples(index=False):
        row = [r.method, r.reference, str(r.n), delta_cell(r.mean, r.t_low, r.t_high)]
        if detail:
            boot = "-" if math.isnan(r.boot_low) else f"[{100 * r.boot_low:+.2f}, {100 * r.boot_high:+.2f}]" + \
                ("" if r.boot_exact else " MC")
            row += [boot, f"{r.n_improved}/{r.n}"]
        row += [r.verdict, r.missing or ""]
        rows.append(row)
    return rows


def comparisons_section(test: pd.DataFrame, val: pd.DataFrame) -> list:
    blocks = [Heading(1, "Paired comparisons"),
              Para("Δ = method − reference, per seed pair, in percentage points (pp); mean [95% paired t]; "
                   "bootstrap: 95% percentile interval (MC: Monte-Carlo resamples, else exact); improved: seeds where "
                   "the method's error is lower. Validation errors are compared too: they are what a user could "
                   "select on.")]
    for setting in sorted(test["setting"].unique()):
        blocks.append(Heading(2, setting))
        for kind in ("rule vs base", "vs supervised"):
            t = test[(test["setting"] == setting) & (test["kind"] == kind)]
            if t.empty:
                continue
            v = val[(val["setting"] == setting) & (val["kind"] == kind)]
            blocks.append(Table(["method", "reference", "pairs", "Δ test pp [95% t]", "bootstrap 95%", "improved",
                                 "verdict", "missing"], _comparison_rows(t, True), "llrrrrll",
                                caption=f"**{kind}**, test error"))
            blocks.append(Table(["method", "reference", "pairs", "Δ val pp [95% t]", "verdict", "missing"],
                                _comparison_rows(v, False), "llrrll", caption=f"**{kind}**, validation error"))
    if test.empty:
        blocks.append(Para("No setting holds both a method and its reference (a base for a composition, or "
                           f"`{REFERENCE}`)."))
    return blocks


def cost_section(runs: pd.DataFrame, steps_cmp: pd.DataFrame, time_cmp: pd.DataFrame, figures: dict[str, list]) -> list:
    blocks = [Heading(1, "Cost"),
              Para("Training seconds count training steps only. Cost ratio: mean over seed pairs of the method's "
                   "training time over its reference's (same steps, so also the ratio of seconds per step; "
                   "min–max in brackets). Equal steps: the paired Δ of the final errors. Equal time: the paired Δ "
                   "with both runs read at the shorter of their two training times (t, mean over pairs).")]
    cost = cost_table(runs)
    for setting in sorted(runs["setting"].unique()):
        blocks.append(Heading(2, setting))
        rows = []
        for r in cost[cost["setting"] == setting].itertuples(index=False):
            s = steps_cmp[(steps_cmp["setting"] == setting) & (steps_cmp["method"] == r.algorithm)
                          & (steps_cmp["reference"] == r.reference)]
            t = time_cmp[(time_cmp["setting"] == setting) & (time_cmp["method"] == r.algorithm)
                         & (time_cmp["reference"] == r.reference)]
            ratio = "-" if math.isnan(r.cost_ratio) else f"{r.cost_ratio:.2f} ({r.cost_ratio_min:.2f}–{r.cost_ratio_max:.2f})"
            srow = s.iloc[0] if len(s) else None
            trow = t.iloc[0] if len(t) else None
            rows.append([r.algorithm, r.reference or "-", str(r.steps), f"{r.steps_per_s:.1f}", f"{r.train_s:.1f}", ratio,
                         delta_cell(srow["mean"], srow["t_low"], srow["t_high"]) if srow is not None else "-",
                         delta_cell(trow["mean"], trow["t_low"], trow["t_high"]) if trow is not None else "-",
                         f"{trow['t_mean']:.1f}" if trow is not None and not math.isnan(trow["t_mean"]) else "-",
                         trow["verdict"] if trow is not None else "-"])
        blocks.append(Table(["method", "reference", "steps", "steps/s", "train s", "cost ratio",
                             "Δ test pp, equal steps", "Δ test pp, equal time", "t (s)", "verdict, equal time"],
                            rows, "llrrrrrrrl"))
        blocks += figures.get(setting, [])
    return blocks


__all__ = ["comparisons_section", "cost_section", "missing_section", "overview", "results_section",
           "settings_section"]
