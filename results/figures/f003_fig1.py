"""003 Fig. 1: training and test accuracy over training of the labeled-only baseline and the
Meta-Gradient method."""
from __future__ import annotations

from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .series import band, eval_curve
from .style import FULL_IN, paper_style

BASELINE, METHOD = "supervised", "pseudo_label+meta_grad"
_TRAIN = ("training accuracy is the EMA model's on the labeled training set, evaluated without augmentation at "
          "every evaluation (the paper does not say how its training accuracy is measured)")


def cpu() -> Study:
    return Study((StudyPart(dict(suite="quick", datasets=("digits",), seeds=3, algorithms=(BASELINE, METHOD))),),
                 "digits with 50 labels (cnn_small, 300 steps at batches 16+48) instead of ImageNet with 10% labels on "
                 "ResNet-18; Meta-Gradient without its cross-domain MixUp (the suite's recipe: with it every small "
                 "setting collapsed, docs/recipes.md); 3 seeds, bands ± std; " + _TRAIN + "; the runs are the quick "
                 "suite's")


def paper() -> Study:
    plan = dict(protocols=("meta_grad_table1",), datasets=("cifar10",), seeds=3)
    return Study((StudyPart(dict(plan, algorithms=(METHOD,))),
                  StudyPart(dict(plan, algorithms=("pseudo_label",)), algorithm=BASELINE)),
                 "CIFAR-10 with 4,000 labels on the 13-layer CNN (003 Table 1's protocol, meta_grad_cnn13 presets) "
                 "instead of ImageNet with 10% labels on ResNet-18 (ImageNet is not one of this suite's datasets); the "
                 "labeled-only baseline trains with the method's network, optimizer and budget; 3 seeds; " + _TRAIN)


def plot(data: FigureData) -> Drawing:
    ok = data.ok()
    if not len(ok):
        raise NothingToDraw("no finished run of 003-fig1")
    with paper_style() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(FULL_IN * 0.75, 2.4), sharex=True, sharey=True)
        for ax, split, title in ((axes[0], "train", "training accuracy (labeled set)"), (axes[1], "test", "test accuracy")):
            for algo in (BASELINE, METHOD):
                ids = ok[ok["algorithm"] == algo]["run_id"]
                band(ax, eval_curve(data.evals, ids, split=split), algo, transform=lambda e: 1.0 - e)
            ax.set_title(title)
            ax.set_xlabel("training step")
        axes[0].set_ylabel("accuracy (%, EMA model)")
        axes[1].legend(loc="lower right")
        fig.tight_layout()
    return Drawing(fig, ["Lines: mean accuracy over the seeds at each evaluation; bands: ± std."])


FIGURE = Figure(
    name="003-fig1", paper="003 (SSL with Meta-Gradient)", number="Fig. 1",
    title="training and test accuracy curves",
    shows="Training-set and test accuracy over training of the labeled-only baseline and PL + Meta-Gradient",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
