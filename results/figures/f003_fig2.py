"""003 Fig. 2: error against the number of labeled examples, labeled-only baseline vs Meta-Gradient."""
from __future__ import annotations

from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .series import error_bars, per_value
from .style import COLUMN_IN, FULL_IN, paper_style

BASELINE, METHOD = "supervised", "pseudo_label+meta_grad"
CPU_LABELS = (20, 50, 100, 200)
PAPER_LABELS = {"svhn": (250, 500, 1000), "cifar10": (1000, 2000, 4000)}


def cpu() -> Study:
    quick = dict(suite="quick", datasets=("digits",), seeds=3, algorithms=(BASELINE, METHOD))
    return Study((StudyPart(quick),  # 50 labels: the quick suite's runs
                  StudyPart(dict(quick, suite="standard", labels=(100,))),  # 100: the standard suite's
                  StudyPart(quick, n_labels=tuple(n for n in CPU_LABELS if n not in (50, 100)))),
                 f"digits with {' / '.join(map(str, CPU_LABELS))} labels (cnn_small, 300 steps at batches 16+48) "
                 "instead of SVHN and CIFAR-10 on the 13-layer CNN; Meta-Gradient without its cross-domain MixUp (the "
                 "suite's recipe); validation as scarce as the labels; 3 seeds; the 50- and 100-label runs are the "
                 "quick and standard suites'")


def paper() -> Study:
    parts = []
    for dataset, counts in PAPER_LABELS.items():
        plan = dict(protocols=("meta_grad_table1",), datasets=(dataset,), seeds=3)
        parts += [StudyPart(dict(plan, algorithms=(METHOD,)), n_labels=counts),
                  StudyPart(dict(plan, algorithms=("pseudo_label",)), algorithm=BASELINE, n_labels=counts)]
    return Study(tuple(parts),
                 "003 Table 1's protocol (meta_grad_cnn13 presets) at SVHN 250 / 500 / 1,000 and CIFAR-10 1,000 / "
                 "2,000 / 4,000 labels (the counts as we read the figure; the text names none); the labeled-only "
                 "baseline trains with the method's network, optimizer and budget; 3 seeds")


def plot(data: FigureData) -> Drawing:
    ok = data.ok()
    if not len(ok):
        raise NothingToDraw("no finished run of 003-fig2")
    sets = list(dict.fromkeys(ok["dataset"]))
    with paper_style() as plt:
        fig, axes = plt.subplots(1, len(sets), figsize=(COLUMN_IN if len(sets) == 1 else FULL_IN * 0.75, 2.5),
                                 squeeze=False)
        for ax, dataset in zip(axes[0], sets):
            sub = ok[ok["dataset"] == dataset]
            for algo in (BASELINE, METHOD):
                error_bars(ax, per_value(sub[sub["algorithm"] == algo], "n_labels"), algo)
            counts = sorted(sub["n_labels"].unique())
            ax.set_xscale("log")
            ax.set_xticks(counts)
            ax.set_xticklabels([str(n) for n in counts])
            ax.minorticks_off()
            ax.set_title(dataset)
            ax.set_xlabel("labeled examples")
            ax.legend(loc="upper right")
        axes[0][0].set_ylabel("test error (%)")
        fig.tight_layout()
    return Drawing(fig, ["Points: mean ± std of the test error over the seeds."])


FIGURE = Figure(
    name="003-fig2", paper="003 (SSL with Meta-Gradient)", number="Fig. 2", title="error vs number of labels",
    shows="Test error of the labeled-only baseline and PL + Meta-Gradient against the number of labeled examples",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
