"""Draw one registered figure from a results directory: load its runs, plot, caption, write."""
from __future__ import annotations

import os

import pandas as pd

from ..store import ResultStore
from .base import Figure, FigureData, Study, write_drawing
from .caption import caption


def load_data(results_dir: str, scale: str, planned: list[dict]) -> FigureData:
    """The rows of the planned runs under ``results_dir`` (runs of every status, evals of the ok ones)."""
    ids = [p["run_id"] for p in planned]
    store = ResultStore(results_dir)
    runs = store.load_runs(ids) if os.path.isdir(results_dir) else pd.DataFrame()
    if len(runs):
        runs = runs[runs["run_id"].isin(ids)].reset_index(drop=True)
    ok = list(runs[runs["status"] == "ok"]["run_id"]) if len(runs) else []
    evals = store.load_evals(ok) if ok else pd.DataFrame(columns=["run_id", "step", "split", "model", "error", "loss"])
    if not len(runs):
        runs = pd.DataFrame(columns=["run_id", "algorithm", "seed", "status", "test_error", "steps_done", "steps_per_s"])
    return FigureData(results_dir, scale, planned, runs, evals)


def draw(figure: Figure, study: Study, data: FigureData, out_dir: str) -> list[str]:
    """Plot ``figure`` from ``data`` into ``out_dir/<name>.{png,pdf,md}``; NothingToDraw if no run
    it needs has finished. Returns the written paths."""
    drawing = figure.plot(data)
    text = caption(figure, study, data, drawing.notes)
    title = f"{figure.paper.split(' ')[0]} {figure.number}: {figure.title}"
    return write_drawing(drawing, os.path.join(out_dir, figure.name), title, text)
