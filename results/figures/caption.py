"""A figure's caption from its planned runs and its rows: setting, seeds, budget, deviations."""
from __future__ import annotations

import math

from .base import Figure, FigureData, Study
from .style import label


def _distinct(planned: list[dict], key) -> str:
    """The distinct values of ``key(p)`` over the planned runs, in order, joined by '/'."""
    return "/".join(dict.fromkeys(str(key(p)) for p in planned))


def setting_text(planned: list[dict]) -> str:
    """One sentence: datasets and label counts, networks, budgets, batches, optimizer, validation."""
    if not planned:
        return "no runs planned."
    data: dict[str, set] = {}
    for p in planned:
        data.setdefault(p["dataset"], set()).add(p["n_labels"])
    where = "; ".join(f"{d} ({'/'.join(str(n) for n in sorted(ns))} labels)" for d, ns in data.items())
    batches = _distinct(planned, lambda p: f"{p['batch_labeled']}+{p['batch_unlabeled']}")
    optim = _distinct(planned, lambda p: f"{p['optim']['name']} lr {p['optim']['lr']:g} {p['optim']['schedule']}")
    text = (f"{where}; network {_distinct(planned, lambda p: p['network'])}; "
            f"{_distinct(planned, lambda p: p['steps'])} steps per run, batches {batches} (labeled+unlabeled); "
            f"{optim}; evaluation EMA {_distinct(planned, lambda p: p['ema_decay'])}; validation "
            f"{_distinct(planned, lambda p: p['val_protocol'])}")
    if any(p.get("n_test") is not None for p in planned):
        text += f"; test subset {_distinct(planned, lambda p: p.get('n_test') or 'all')}"
    return text + "."


def seeds_text(data: FigureData) -> str:
    """Seeds planned per point, runs ok of planned, and which seeds wrote artifacts."""
    seeds = sorted({p["seed"] for p in data.planned})
    ok = data.ok()
    n_ok = len(set(ok["run_id"])) if len(ok) else 0
    span = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0]) if seeds else "none"
    text = f"Seeds {span} ({len(seeds)} per point; split seed = training seed); {n_ok} of {len(data.planned)} runs ok"
    bad = data.runs[data.runs["status"] != "ok"] if len(data.runs) else data.runs
    if len(bad):
        text += " (" + ", ".join(f"{label(r.algorithm)} seed {r.seed}: {r.status}" for r in bad.itertuples()) + ")"
    with_art = sorted({p["seed"] for p in data.planned if p.get("artifacts")})
    if with_art:
        text += f"; artifacts from seed(s) {', '.join(map(str, with_art))}"
    return text + "."


def budget_text(data: FigureData) -> str:
    """Steps per run and the training time the ok runs took (step time only)."""
    ok = data.ok()
    if not len(ok):
        return "No finished runs."
    sps = ok["steps_per_s"].astype(float)
    secs = (ok["steps_done"].astype(float) / sps.where(sps > 0)).sum()
    device = ", ".join(sorted({str(d).split(" (")[0] for d in ok.get("device", [])})) or "?"
    total = f"{secs / 3600:.1f} h" if secs >= 3600 else f"{secs:.0f} s"
    return f"Training time of the ok runs together: {total} ({device}; step time only, evaluations excluded)." \
        if math.isfinite(secs) else "Training time not recorded."


def caption(figure: Figure, study: Study, data: FigureData, notes: list[str]) -> str:
    """The full caption: what, setting, seeds, budget, deviations from the paper, notes."""
    methods = ", ".join(f"{label(a)} ({a})" for a in dict.fromkeys(p["algorithm"] for p in data.planned))
    parts = [f"Paper {figure.paper}, {figure.number}: {figure.title} ({data.scale} scale).", figure.shows + ".",
             f"Methods: {methods}.", f"Setting: {setting_text(data.planned)}", seeds_text(data), budget_text(data),
             f"Deviations from the paper: {study.deviations}", *notes]
    return " ".join(_sentence(p) for p in parts if p.strip())


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
