"""000 Fig. 5: test error of the two L2I variants on Pseudo-Label against the hold-out
(meta-validation) batch size, Pseudo-Label beside them."""
from __future__ import annotations

import re

from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .series import error_bars, per_value
from .style import COLUMN_IN, color, label, paper_style

RULES = ("pseudo_label+l2i_l", "pseudo_label+l2i_o")
CPU_BATCHES = (8, 16, 32)  # 0.5x, 1x, 2x the labeled batch (16), as the paper's 25 / 50 / 100 of its 50
PAPER_BATCHES = (25, 50, 100)


def _study(plan: dict, batches: tuple[int, ...], deviations: str) -> Study:
    parts = [StudyPart(dict(plan, algorithms=("pseudo_label",)))]
    parts += [StudyPart(dict(plan, algorithms=RULES), hp={"holdout_batch": b}) for b in batches]
    return Study(tuple(parts), deviations)


def cpu() -> Study:
    return _study(dict(suite="quick", datasets=("digits",), seeds=3), CPU_BATCHES,
                  "digits (8x8 images, 50 labels, cnn_small, 300 steps at batches 16+48) instead of CIFAR-10 with 250 "
                  "labels and the 13-layer CNN; hold-out batches 8 / 16 / 32 = 0.5 / 1 / 2 x the labeled batch, as the "
                  "paper's 25 / 50 / 100 are of its 50; 3 seeds per point (the paper plots one number per batch); the "
                  "hold-out batches come from the labeled set (joint, as the paper); the 32 runs are the quick suite's")


def paper() -> Study:
    return _study(dict(protocols=("l2i_conf_table1",), datasets=("cifar10",), labels=(250,), seeds=3), PAPER_BATCHES,
                  "the 000 Table 1 protocol (l2i_conf_cnn13 presets); 3 seeds per point (the paper plots one number "
                  "per batch); the paper's numbers are drawn as open markers")


def _paper_points() -> dict[str, list[tuple[int, float]]]:
    """The numbers 000 states for its Fig. 5: {our algorithm: [(batch, error %)]}."""
    from ..papers import load_paper_numbers

    df = load_paper_numbers()
    df = df[(df["paper"] == "000") & (df["table"] == "Figure 5")]
    ours = {"PL+option1": "pseudo_label+l2i_l", "PL+option2": "pseudo_label+l2i_o"}
    out: dict[str, list[tuple[int, float]]] = {}
    for r in df.itertuples():
        m = re.search(r"batch (\d+)", str(r.notes))
        if m and r.method in ours:
            out.setdefault(ours[r.method], []).append((int(m.group(1)), float(r.value)))
    return out


def plot(data: FigureData) -> Drawing:
    ok = data.ok()
    if not len(ok):
        raise NothingToDraw("no finished run of 000-fig5")
    notes = []
    with paper_style() as plt:
        fig, ax = plt.subplots(figsize=(COLUMN_IN, 2.5))
        base = ok[ok["algorithm"] == "pseudo_label"]["test_error"].astype(float)
        batches = sorted({int(b) for b in ok.get("hp_holdout_batch", []) if b == b})
        if len(base) and batches:
            m, s = 100 * base.mean(), 100 * (base.std(ddof=1) if len(base) > 1 else 0.0)
            ax.axhline(m, color=color("pseudo_label"), label=f"{label('pseudo_label')} (no hold-out batch)")
            ax.axhspan(m - s, m + s, color=color("pseudo_label"), alpha=0.12, linewidth=0)
        for algo in RULES:
            error_bars(ax, per_value(ok[ok["algorithm"] == algo], "hp_holdout_batch"), algo)
        if data.scale == "paper":
            for algo, pts in _paper_points().items():
                pts = sorted(pts)
                ax.plot([b for b, _ in pts], [v for _, v in pts], ls="--", marker="o", mfc="none", color=color(algo),
                        label=f"{label(algo)}, paper")
            notes.append("Open markers, dashed: the errors 000 states for its Fig. 5 (Appendix A.2).")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches or [1])
        ax.set_xticklabels([str(b) for b in batches] or ["-"])
        ax.minorticks_off()
        ax.set_xlabel("hold-out (meta-validation) batch size (examples)")
        ax.set_ylabel("test error (%)")
        ax.legend(loc="best")
        fig.tight_layout()
    notes.insert(0, "Points: mean ± std of the test error over the seeds; the band is Pseudo-Label's ± std.")
    return Drawing(fig, notes)


FIGURE = Figure(
    name="000-fig5", paper="000 (Learning to Impute, ICLR 2020 submission)", number="Fig. 5",
    title="test error vs hold-out batch size",
    shows="Test error of PL + L2I (learnable labels, option 1) and PL + L2I (model output, option 2) against the "
          "meta-validation (hold-out) batch size, with Pseudo-Label as the reference",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
