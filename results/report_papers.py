"""Our numbers beside the papers': which paper rows we ran, with what deviations, and which not.

A paper row is *run* when some setting of ours has ok runs on its dataset and label count of
the algorithm :data:`~results.papers.PAPER_METHODS` maps its method to, with hyperparameters
meeting the mapping's conditions. Our network, budget and validation protocol need not be the
paper's: where they differ the row says so (a smoke run on a small CNN still lines up with the
paper's WRN row, and reads as the deviation it is).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from .compare import usable
from .papers import COMPARABLE_METRICS, PAPER_NETWORKS, conditions_for, meets, methods_for, our_network

#: datasets of this benchmark the papers never used: no paper number exists for them
OFFLINE_DATASETS = {"two_circles": "000 Fig. 1 shows the two-circles toy only as a figure, without a number",
                    "digits": "an offline 8x8 stand-in for CIFAR", "fashion_mnist": "an offline 28x28 set",
                    "synthetic_landmarks": "generated face drawings, an offline stand-in for AFLW"}
_BUDGET = re.compile(r"budget overridden to [^;]*")
MATCH_COLUMNS = ["paper", "table", "dataset", "n_labels", "paper_method", "algorithm", "paper_network", "paper_value",
                 "paper_std", "paper_notes", "setting", "network", "steps", "val_protocol", "n", "mean", "std",
                 "diff", "deviations", "note"]


def _deviations(runs: pd.DataFrame, paper_network: str) -> str:
    r = runs.iloc[0]
    out = []
    mine = str(r["network"])
    wanted = our_network(paper_network)
    if not paper_network:
        out.append(f"network {mine} (the paper's table does not name one)")
    elif mine != wanted:
        out.append(f"network {mine} instead of {wanted or paper_network}"
                   + ("" if paper_network in PAPER_NETWORKS else " (not implemented here)"))
    vp = r.get("val_protocol", "?")
    if vp != "paper":
        nval = r.get("n_val")
        out.append(f"validation {vp}" + (f" ({int(nval)} examples)" if nval == nval and nval is not None else "")
                   + " instead of the papers' larger split")
    notes = sorted({str(n) for n in runs.get("protocol_notes", pd.Series(dtype=str)).dropna() if str(n)})
    budget = sorted({m.group(0) for n in notes for m in [_BUDGET.search(n)] if m})
    out = budget + out + notes  # the budget first: it is the deviation that moves a number most
    return "; ".join(out)


def against_papers(runs: pd.DataFrame, papers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched, not_run): one matched row per (paper row, our setting); the paper rows we did
    not run, each with the reason. Errors in percent (as the papers print them); a paper's metric is compared
    only with runs of the same metric (:data:`~results.papers.COMPARABLE_METRICS`)."""
    ok = usable(runs) if len(runs) else runs
    ours = set(zip(ok["dataset"], ok["n_labels"].astype(float))) if len(ok) else set()
    datasets_here = set(ok["dataset"]) if len(ok) else set()
    # runs written before the metric column were all classification runs
    metric = ok["metric"].fillna("error") if "metric" in ok else pd.Series("error", index=ok.index)
    matched, not_run = [], []
    for _, p in papers.iterrows():
        reason = None
        maps = methods_for(p)
        if p["metric"] not in COMPARABLE_METRICS:
            reason = f"metric {p['metric']} (not an error we record)"
        elif not p["dataset"] or p["label_unit"] != "count" or math.isnan(p["n_labels"]):
            reason = "no label count (fully supervised or a percentage)" if p["dataset"] else "no dataset"
        elif not maps:
            reason = "no equivalent method here"
        elif p["dataset"] not in datasets_here:
            reason = "dataset not run"
        elif (p["dataset"], float(p["n_labels"])) not in ours:
            reason = "label count not run"
        if reason is None:
            hits = 0
            for m in maps:
                cond = conditions_for(m, p)
                sub = ok[(ok["dataset"] == p["dataset"]) & (ok["n_labels"].astype(float) == float(p["n_labels"]))
                         & (ok["algorithm"] == m.algorithm) & (metric == COMPARABLE_METRICS[p["metric"]])]
                sub = sub[[meets(r, cond) for _, r in sub.iterrows()]] if len(sub) else sub
                for setting, g in sub.groupby("setting", sort=True):
                    te = 100 * g["test_error"].astype(float)
                    hits += 1
                    matched.append({
                        "paper": p["paper"], "table": p["table"], "dataset": p["dataset"], "n_labels": int(p["n_labels"]),
                        "paper_method": p["method"], "algorithm": m.algorithm, "paper_network": p["network"],
                        "paper_value": p["value"], "paper_std": p["std"], "paper_notes": p["notes"], "setting": setting,
                        "network": g["network"].iloc[0], "steps": g["steps"].iloc[0],
                        "val_protocol": g.get("val_protocol", pd.Series(["?"])).iloc[0], "n": len(g),
                        "mean": float(te.mean()), "std": float(te.std(ddof=1)) if len(g) > 1 else math.nan,
                        "diff": float(te.mean()) - float(p["value"]), "deviations": _deviations(g, p["network"]),
                        "note": m.note})
            if not hits:
                reason = "method not run" + (" with the hyperparameters this row implies" if any(
                    conditions_for(m, p) for m in maps) else "") + f" ({', '.join(sorted({m.algorithm for m in maps}))})"
        if reason is not None:
            not_run.append({**{k: p[k] for k in ("paper", "table", "dataset", "network", "method", "n_labels")},
                            "reason": reason})
    return pd.DataFrame(matched, columns=MATCH_COLUMNS), pd.DataFrame(
        not_run, columns=["paper", "table", "dataset", "network", "method", "n_labels", "reason"])


def offline_notes(runs: pd.DataFrame) -> list[str]:
    """One sentence per offline dataset we ran: the papers report nothing there."""
    present = sorted(set(runs["dataset"])) if len(runs) else []
    return [f"**{d}**: the papers report no numbers on this dataset ({OFFLINE_DATASETS[d]})."
            for d in present if d in OFFLINE_DATASETS]
