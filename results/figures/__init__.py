"""The papers' figures, one module per figure (``python -m bench.figure --list``).

Each module defines ``FIGURE`` (:class:`~results.figures.base.Figure`): its study at the
``cpu`` and ``paper`` scales and a plot that reads only the results directory. Adding a figure
is a new module here and one line in :data:`FIGURES`.
"""
from __future__ import annotations

from . import f000_fig1, f000_fig5, f001_fig2, f001_fig3, f002_fig2, f002_fig3, f002_table5, f003_fig1, f003_fig2, f003_fig3
from .base import SCALES, Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart

FIGURES: dict[str, Figure] = {m.FIGURE.name: m.FIGURE for m in (
    f000_fig1, f000_fig5, f001_fig2, f001_fig3, f002_fig2, f002_fig3, f002_table5, f003_fig1, f003_fig2, f003_fig3)}


def get_figure(name: str) -> Figure:
    """The registered figure ``name``; KeyError naming the valid ones."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r} (valid: {', '.join(FIGURES)}, all)")
    return FIGURES[name]


__all__ = ["FIGURES", "SCALES", "Drawing", "Figure", "FigureData", "NothingToDraw", "Study", "StudyPart", "get_figure"]
