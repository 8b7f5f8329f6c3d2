"""000 Fig. 1: the two-circles toy, decision boundaries of SL, PL and the two L2I variants."""
from __future__ import annotations

import numpy as np

from ..artifacts import stack
from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .style import CLASS_COLORS, FULL_IN, LABELED_COLORS, label, paper_style, pm

METHODS = ("supervised", "pseudo_label", "pseudo_label+l2i_o", "pseudo_label+l2i_l")
SEEDS = 10
_COMMON = ("the paper shows one run per method without an error; here {seeds} seeds give each panel's test error "
           "(mean ± std) and seed 0 its predictions; softmax over two logits instead of the paper's sigmoid output; "
           "400 Adam steps at lr 0.03 as the paper's Appendix A.1 (20 x 20 steps), at batches 32+128 (the paper states "
           "none); Pseudo-Label's confidence threshold 0 and L2I's "
           "virtual step 10 x lr with its own Adam, the recipe values chosen on validation (docs/recipes.md); "
           "the boundary is the EMA model's (decay 0.95)")


def cpu() -> Study:
    return Study((StudyPart(dict(suite="quick", datasets=("two_circles",), algorithms=METHODS, seeds=SEEDS),
                            artifacts=("decision_grid",)),),
                 _COMMON.format(seeds=SEEDS) + "; validation as scarce as the labels (50 points, the paper holds out "
                 "1,000); the runs are the quick suite's")


def paper() -> Study:
    return Study((StudyPart(dict(suite="toy", algorithms=METHODS, seeds=SEEDS, val_protocol="paper"),
                            artifacts=("decision_grid",)),),
                 _COMMON.format(seeds=SEEDS) + "; the paper's 1,000 validation points")


def _scatter(ax, rows, classes, palette, size: float = 3, marker: str = "o") -> None:
    """Points of ``rows`` (their ``x``) coloured by ``classes`` (0/1) in ``palette``."""
    if len(rows):
        xy = stack(rows, "x")
        ax.scatter(xy[:, 0], xy[:, 1], c=[palette[int(c)] for c in classes], s=size, marker=marker,
                   linewidths=0, rasterized=True)


def plot(data: FigureData) -> Drawing:
    arts = data.artifacts("decision_grid")
    shown = data.lowest_seed_runs(arts)
    if not shown:
        raise NothingToDraw("no run of 000-fig1 has its decision_grid artifact")
    ok = data.ok()
    any_rows = arts[next(iter(shown.values()))]
    with paper_style() as plt:
        fig, axes = plt.subplots(2, 1 + len(METHODS), figsize=(FULL_IN, 3.1), sharex=True, sharey=True)
        for col, algo in enumerate((None,) + METHODS):
            rows = any_rows if algo is None else arts.get(shown.get(algo, ""))
            for r, subset in enumerate(("test", "unlabeled")):
                ax = axes[r, col]
                ax.set_aspect("equal")
                ax.tick_params(labelsize=6)
                if rows is None:
                    ax.set_title(f"{label(algo)}\n(no run)", fontsize=7)
                    continue
                pts = rows[rows["subset"] == subset]
                _scatter(ax, pts, pts["label"] if algo is None else pts["pred"], CLASS_COLORS)
                if algo is not None:
                    grid = rows[rows["subset"] == "grid"]
                    xy, p1 = stack(grid, "x"), stack(grid, "probs")[:, 1]
                    side = int(round(np.sqrt(len(grid))))
                    gx, gy = xy[:, 0].reshape(side, side), xy[:, 1].reshape(side, side)
                    ax.contourf(gx, gy, p1.reshape(side, side), levels=[0, 0.5, 1], colors=CLASS_COLORS, alpha=0.12)
                    ax.contour(gx, gy, p1.reshape(side, side), levels=[0.5], colors="k", linewidths=0.8)
                lab = rows[rows["subset"] == "labeled"]
                _scatter(ax, lab, lab["label"], LABELED_COLORS, size=14, marker="^")
                if r == 0:
                    if algo is None:
                        ax.set_title("ground truth", fontsize=7)
                    else:
                        errs = ok[ok["algorithm"] == algo]["test_error"] if len(ok) else []
                        ax.set_title(f"{label(algo)}\n{pm(errs)}% (n={len(errs)})", fontsize=6.5)
            axes[0, 0].set_ylabel("test points\nx2")
            axes[1, 0].set_ylabel("unlabeled points\nx2")
        for ax in axes[1]:
            ax.set_xlabel("x1")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", ls="", color=CLASS_COLORS[0], label="class 0 (outer circle)"),
                   Line2D([], [], marker="o", ls="", color=CLASS_COLORS[1], label="class 1 (inner circle)"),
                   Line2D([], [], marker="^", ls="", color=LABELED_COLORS[0], label="labeled, class 0"),
                   Line2D([], [], marker="^", ls="", color=LABELED_COLORS[1], label="labeled, class 1"),
                   Line2D([], [], color="k", lw=0.8, label="decision boundary (p = 0.5)")]
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        fig.legend(handles=handles, loc="lower center", ncol=5, bbox_to_anchor=(0.5, 0.0), fontsize=6.5)
    notes = ["Panel titles: test error over all 2,500 test points, mean ± std over the seeds (n). Points are a fixed "
             "500 of the test and of the unlabeled points, coloured by the model's predicted class (ground truth: by "
             "the true class); triangles are the 50 labeled points; coordinates are unitless."]
    return Drawing(fig, notes)


FIGURE = Figure(
    name="000-fig1", paper="000 (Learning to Impute, ICLR 2020 submission)", number="Fig. 1",
    title="two circles: decision boundaries of SL, PL and L2I",
    shows="Decision boundaries and predictions of SL, PL, PL + L2I (model output, option 2) and PL + L2I "
          "(learnable labels, option 1) on test (top) and unlabeled points (bottom), 50 labeled points",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
