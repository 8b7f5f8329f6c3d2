"""Fair comparisons from the runs and evals tables: settings, pairs over seeds, equal time.

A **setting** is everything a fair comparison holds fixed (:data:`SETTING_KEYS`: suite,
dataset, labels, network, budget in steps, batch sizes, optimizer, learning rate, validation
protocol, evaluation EMA). Two methods are compared only within one setting, seed by seed:
a pair is the two runs with the same training seed and split seed (and, where recorded, the
same split hash). Pairs are

* ``rule vs base``: every composition ``BASE+RULE`` against ``BASE``;
* ``vs supervised``: every other method against ``supervised``.

Errors are the runs' final numbers (median of the EMA model's last evaluations). **Equal
time** reads each run's own evaluation curve at ``T = min(T_a, T_b)``, the shorter of the two
runs' training times: the slower method at the time the faster one finished, the faster one
at its end (its final number). This is paper 002 Table 5's fixed-time comparison for every
pair; "the base at its composition's time" is the case of a composition faster than its base.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from .stats import paired_summary

SETTING_KEYS = ["suite", "dataset", "n_labels", "network", "steps", "batch_labeled", "batch_unlabeled",
                "optimizer", "lr", "val_protocol", "ema_decay"]
RULE_VS_BASE, VS_SUPERVISED = "rule vs base", "vs supervised"
REFERENCE = "supervised"
DEFAULT_LAST_K = 20
_UNKNOWN = "?"


def with_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``setting`` column: a readable label, unique per :data:`SETTING_KEYS`.

    Columns a results file lacks (older or partial rows) count as the value "?".
    """
    runs = runs.copy()
    for k in SETTING_KEYS:
        if k not in runs.columns:
            runs[k] = _UNKNOWN
        runs[k] = runs[k].astype(object).where(runs[k].notna(), _UNKNOWN)
    keys = runs[SETTING_KEYS].astype(str).agg("\x1f".join, axis=1)
    labels: dict[str, str] = {}
    for key in sorted(set(keys)):
        v = dict(zip(SETTING_KEYS, key.split("\x1f")))
        labels[key] = f"{v['dataset']}, {v['n_labels']} labels, {v['network']}, {v['steps']} steps ({v['suite']})"
    clashes = pd.Series(labels).duplicated(keep=False)
    for key in clashes[clashes].index:  # same headline: name what else differs
        v = dict(zip(SETTING_KEYS, key.split("\x1f")))
        labels[key] += (f" [batch {v['batch_labeled']}+{v['batch_unlabeled']}, {v['optimizer']} lr {v['lr']}, "
                        f"val {v['val_protocol']}, EMA {v['ema_decay']}]")
    runs["setting"] = keys.map(labels)
    return runs


def pair_list(algorithms: set[str] | list[str]) -> list[tuple[str, str, str]]:
    """(kind, method, reference) for every comparison the algorithms present allow."""
    algos = set(algorithms)
    out = [(RULE_VS_BASE, a, a.partition("+")[0]) for a in sorted(algos) if "+" in a and a.partition("+")[0] in algos]
    if REFERENCE in algos:
        out += [(VS_SUPERVISED, a, REFERENCE) for a in sorted(algos - {REFERENCE})]
    return out


def usable(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with status ok, one per (setting, algorithm, seed, split seed): the latest finished."""
    ok = runs[runs["status"] == "ok"]
    if "finished_at" in ok.columns:
        ok = ok.sort_values("finished_at", kind="stable")
    return ok.drop_duplicates(["setting", "algorithm", "seed", "split_seed"], keep="last")


def duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """ok runs that :func:`usable` drops (same setting, algorithm and seeds as a later run)."""
    ok = runs[runs["status"] == "ok"]
    return ok[~ok.index.isin(usable(runs).index)]


def paired_values(runs: pd.DataFrame, setting: str, method: str, reference: str, column: str) -> pd.DataFrame:
    """One row per seed pair: seed, split_seed, run ids, ``a`` (method), ``b`` (reference), ``diff`` = a - b.

    ``runs`` must come from :func:`with_settings`; only :func:`usable` runs pair, and pairs
    whose split hashes differ (both recorded) are dropped.
    """
    u = usable(runs[runs["setting"] == setting])
    cols = ["seed", "split_seed", "run_id", column] + (["split_hash"] if "split_hash" in u.columns else [])
    a = u[u["algorithm"] == method][cols]
    b = u[u["algorithm"] == reference][cols]
    m = a.merge(b, on=["seed", "split_seed"], suffixes=("_a", "_b"))
    if "split_hash" in u.columns:
        ha, hb = m["split_hash_a"].fillna(""), m["split_hash_b"].fillna("")
        m = m[(ha == hb) | (ha == "") | (hb == "")]
    out = pd.DataFrame({"seed": m["seed"], "split_seed": m["split_seed"], "run_a": m["run_id_a"],
                        "run_b": m["run_id_b"], "a": m[f"{column}_a"].astype(float), "b": m[f"{column}_b"].astype(float)})
    out["diff"] = out["a"] - out["b"]
    return out.sort_values(["seed", "split_seed"]).reset_index(drop=True)


def _seeds(runs: pd.DataFrame, setting: str, algo: str) -> set:
    g = runs[(runs["setting"] == setting) & (runs["algorithm"] == algo)]
    return set(zip(g["seed"], g["split_seed"]))


def comparisons(runs: pd.DataFrame, column: str = "test_error", *, evals: pd.DataFrame | None = None,
                n_boot: int = 10_000) -> pd.DataFrame:
    """Paired statistics of ``column`` for every pair of :func:`pair_list` in every setting.

    With ``evals`` and ``column`` of the form ``equal_time:<split>``, each pair's values are
    the errors at equal training time (:func:`equal_time_pairs`) instead. Columns: setting,
    dataset, n_labels, network, steps, kind, method, reference, the fields of
    :class:`~results.stats.PairedSummary`, and ``missing`` (a one-line account of seeds one side
    lacks or whose runs failed or diverged); for equal time also ``t_mean`` (mean of the pairs'
    times) and ``estimated`` (some elapsed times derived from steps/s).
    """
    rows = []
    grouped = by_run(evals) if column.startswith("equal_time:") else {}
    for setting in sorted(runs["setting"].unique()):
        mine = runs[runs["setting"] == setting]
        key = {k: mine[k].iloc[0] for k in ("dataset", "n_labels", "network", "steps")}
        for kind, method, ref in pair_list(set(mine["algorithm"])):
            if column.startswith("equal_time:"):
                pv = equal_time_pairs(runs, grouped, setting, method, ref, split=column.split(":", 1)[1])
            else:
                pv = paired_values(runs, setting, method, ref, column)
            s = paired_summary(pv["diff"], n_boot=n_boot)
            timed = "t" in pv.columns and len(pv)
            note = missing_note(runs, setting, method, ref, pv)
            if timed and pv["diff"].isna().any():
                note = "; ".join(filter(None, [note, f"{int(pv['diff'].isna().sum())} pair(s) without an evaluation "
                                                     "by the shorter run's end"]))
            rows.append({"setting": setting, **key, "kind": kind, "method": method, "reference": ref, **s.as_dict(),
                         "missing": note,
                         "t_mean": float(pv["t"].mean()) if timed else math.nan,
                         "estimated": bool(pv["estimated"].any()) if timed else False})
    cols = ["setting", "dataset", "n_labels", "network", "steps", "kind", "method", "reference", "n", "mean", "std", "t_low", "t_high", "boot_low", "boot_high",
            "boot_exact", "n_improved", "n_worse", "n_tied", "sign", "verdict", "missing", "t_mean", "estimated"]
    return pd.DataFrame(rows, columns=cols)


def missing_note(runs: pd.DataFrame, setting: str, method: str, ref: str, pv: pd.DataFrame) -> str:
    """Why some seeds are not in a pair's statistics ("" when every seed pairs)."""
    paired = set(zip(pv["seed"], pv["split_seed"]))
    parts = []
    for algo in (method, ref):
        g = runs[(runs["setting"] == setting) & (runs["algorithm"] == algo)]
        bad = g[g["status"] != "ok"]
        if len(bad):
            parts.append(f"{algo}: " + ", ".join(f"seed {s} {st}" for s, st in zip(bad["seed"], bad["status"])))
    lone = (_seeds(runs, setting, method) ^ _seeds(runs, setting, ref)) - paired
    if lone:
        parts.append("no run on the other side for seed(s) " + ", ".join(str(s) for s, _ in sorted(lone)))
    return "; ".join(parts)


# ------------------------------------------------------------------ time


def train_seconds(runs: pd.DataFrame) -> pd.Series:
    """Training seconds of each run (steps_done / steps_per_s, the engine's step-time clock)."""
    sps = runs["steps_per_s"].astype(float)
    return (runs["steps_done"].astype(float) / sps).where(sps > 0)


def last_k_of(config_json: str | None) -> int:
    """``eval_last_k`` of a run's config JSON, else :data:`DEFAULT_LAST_K`."""
    try:
        return int(json.loads(config_json or "{}").get("eval_last_k", DEFAULT_LAST_K))
    except (TypeError, ValueError, AttributeError):
        return DEFAULT_LAST_K


def by_run(evals: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """Eval rows grouped by run id (look-ups in the loops below stay cheap)."""
    if evals is None or evals.empty:
        return {}
    return {rid: g for rid, g in evals.groupby("run_id", sort=False)}


def curve(run_evals: pd.DataFrame | None, steps_per_s: float, split: str = "test", model: str = "ema") -> pd.DataFrame:
    """Evaluation curve of one run from its eval rows: step, elapsed_s, error, estimated (by step).

    ``elapsed_s`` is the recorded training time; rows written before it was recorded get
    ``step / steps_per_s`` (``estimated`` True), which assumes a constant speed.
    """
    cols = ["step", "elapsed_s", "error", "estimated"]
    if run_evals is None or run_evals.empty:
        return pd.DataFrame(columns=cols)
    e = run_evals[(run_evals["split"] == split) & (run_evals["model"] == model)].sort_values("step")
    elapsed = e["elapsed_s"].astype(float) if "elapsed_s" in e.columns else pd.Series(np.nan, index=e.index)
    estimated = elapsed.isna()
    sps = float(steps_per_s) if steps_per_s and steps_per_s > 0 else math.nan
    elapsed = elapsed.where(~estimated, e["step"].astype(float) / sps)
    return pd.DataFrame({"step": e["step"].to_numpy(), "elapsed_s": elapsed.to_numpy(),
                         "error": e["error"].astype(float).to_numpy(), "estimated": estimated.to_numpy()}, columns=cols)


def error_at_time(c: pd.DataFrame, t: float, k: int = DEFAULT_LAST_K) -> float:
    """Median of the last ``k`` errors of curve ``c`` evaluated by training time ``t``: the final
    number the run would have reported had it stopped at ``t``; NaN if it had not evaluated yet."""
    if math.isnan(t):
        return math.nan
    before = c[c["elapsed_s"].astype(float) <= t * (1 + 1e-9)]
    return float(np.median(before["error"].to_numpy(dtype=float)[-k:])) if len(before) else math.nan


def equal_time_pairs(runs: pd.DataFrame, evals: dict[str, pd.DataFrame] | pd.DataFrame | None, setting: str,
                     method: str, ref: str, split: str = "test") -> pd.DataFrame:
    """Per seed pair: the two runs' training times t_a, t_b, ``t`` = the shorter, and each run's
    error at ``t`` (``a``, ``b``, ``diff`` = a - b, as :func:`paired_values`); ``estimated``:
    some elapsed times were derived from steps/s."""
    grouped = evals if isinstance(evals, dict) else by_run(evals)
    pv = paired_values(runs, setting, method, ref, "steps_per_s")
    info = runs.drop_duplicates("run_id").set_index("run_id")
    rows = []
    for r in pv.itertuples(index=False):
        ca = curve(grouped.get(r.run_a), r.a, split)
        cb = curve(grouped.get(r.run_b), r.b, split)
        ta = float(ca["elapsed_s"].max()) if len(ca) else math.nan
        tb = float(cb["elapsed_s"].max()) if len(cb) else math.nan
        t = min(ta, tb) if not (math.isnan(ta) or math.isnan(tb)) else math.nan
        rows.append({"seed": r.seed, "split_seed": r.split_seed, "run_a": r.run_a, "run_b": r.run_b,
                     "t_a": ta, "t_b": tb, "t": t,
                     "a": error_at_time(ca, t, last_k_of(info.at[r.run_a, "config_json"] if "config_json" in info else None)),
                     "b": error_at_time(cb, t, last_k_of(info.at[r.run_b, "config_json"] if "config_json" in info else None)),
                     "estimated": bool(ca["estimated"].any() or cb["estimated"].any())})
    out = pd.DataFrame(rows, columns=["seed", "split_seed", "run_a", "run_b", "t_a", "t_b", "t", "a", "b", "estimated"])
    out["diff"] = out["a"].astype(float) - out["b"].astype(float)
    return out


def cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting and algorithm: ok runs, steps, steps/s and training seconds (means), and the
    cost ratio to its reference (the base for BASE+RULE, else supervised): mean over seed pairs
    of training-time ratios, NaN where there is no pair."""
    u = usable(runs).copy()
    u["train_s"] = train_seconds(u)
    rows = []
    for (setting, algo), g in u.groupby(["setting", "algorithm"], sort=True):
        ref = algo.partition("+")[0] if "+" in algo else (REFERENCE if algo != REFERENCE else None)
        ratio, ratio_lo, ratio_hi = math.nan, math.nan, math.nan
        if ref is not None:
            r = u[(u["setting"] == setting) & (u["algorithm"] == ref)][["seed", "split_seed", "train_s"]]
            m = g[["seed", "split_seed", "train_s"]].merge(r, on=["seed", "split_seed"], suffixes=("", "_ref"))
            q = (m["train_s"] / m["train_s_ref"]).dropna()
            if len(q):
                ratio, ratio_lo, ratio_hi = float(q.mean()), float(q.min()), float(q.max())
        rows.append({"setting": setting, "algorithm": algo, "reference": ref or "", "n": len(g),
                     "steps": g["steps"].iloc[0], "steps_per_s": float(g["steps_per_s"].astype(float).mean()),
                     "train_s": float(g["train_s"].mean()), "cost_ratio": ratio, "cost_ratio_min": ratio_lo,
                     "cost_ratio_max": ratio_hi})
    return pd.DataFrame(rows, columns=["setting", "algorithm", "reference", "n", "steps", "steps_per_s", "train_s",
                                       "cost_ratio", "cost_ratio_min", "cost_ratio_max"])
