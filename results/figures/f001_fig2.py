"""001 Fig. 2 (landmarks): the hold-out loss before and after the label update, and the test
loss, over training (Mean Teacher vs Mean Teacher + L2I)."""
from __future__ import annotations

from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .series import band, eval_curve
from .style import COLUMN_IN, label, paper_style

BASE, METHOD = "mean_teacher", "mean_teacher+l2i_o"
BEFORE, AFTER = "diag_holdout_loss_before", "diag_holdout_loss_after"
#: the paper's colours: orange before the update (and Mean Teacher), cyan after it (and L2I)
ORANGE, CYAN = "#E69F00", "#00A6D6"
#: 1% of the training images, the label fraction of 001 Fig. 3 (Fig. 2 states none)
CPU_LABELS, AFLW_LABELS = 100, 91
_HOW = ("top: the squared error on the hold-out batch (standardised landmark units) before the L2I meta step and "
        "after its second update (the rule's diagnostics holdout_loss_before / holdout_loss_after, measured every "
        "diag_every = 50 steps, hence the steps in the curves: each point is the mean over the steps since the "
        "previous evaluation of the last measured values); bottom: the EMA model's test loss (the same squared "
        "error) of Mean Teacher and of MT + L2I, the paper's 'test loss for the same models' read as the model "
        "trained without and with the label update (a run does not evaluate its test loss before and after each "
        "update); x is training steps; L2I is the model-output variant with the approximate update (001 Table 1's "
        "MT-L2I row)")


def cpu_part() -> StudyPart:
    """The runs of 001 Fig. 2 and 3 at cpu scale (one set: Fig. 3's artifact is asked here too, so
    that drawing either figure first never makes the other re-run them)."""
    return StudyPart(dict(suite="quick", datasets=("synthetic_landmarks",), seeds=3, algorithms=(BASE, METHOD),
                          labels=(CPU_LABELS,)), artifacts=("landmarks",))


def paper_part() -> StudyPart:
    """The runs of 001 Fig. 2 and 3 at paper scale: 001 Table 1's MT and MT-L2I cells at 1%."""
    return StudyPart(dict(protocols=("l2i_table1",), datasets=("aflw",), algorithms=(BASE, METHOD),
                          labels=(AFLW_LABELS,), seeds=3), artifacts=("landmarks",))


def cpu() -> Study:
    return Study((cpu_part(),),
                 f"synthetic_landmarks with {CPU_LABELS} labels (1% of 10,000; TCDCN, 500 steps at batches 32+32, "
                 "SGD 0.0075 x0.1 at step 333: the AFLW protocol at CPU scale, docs/recipes.md) instead of AFLW; " + _HOW)


def paper() -> Study:
    return Study((paper_part(),),
                 f"AFLW with {AFLW_LABELS} labels (1%), 001 Table 1's protocol (l2i_aflw presets); 3 seeds, bands "
                 "± std; " + _HOW)


def plot(data: FigureData) -> Drawing:
    ok = data.ok()
    if not len(ok) or BEFORE not in data.evals.columns:
        raise NothingToDraw(f"no finished run of 001-fig2 recorded {BEFORE}")
    l2i = ok[ok["algorithm"] == METHOD]["run_id"]
    before = eval_curve(data.evals, l2i, BEFORE, split="val")
    after = eval_curve(data.evals, l2i, AFTER, split="val")
    if not len(before):
        raise NothingToDraw(f"no finished {METHOD} run of 001-fig2 recorded {BEFORE}")
    with paper_style() as plt:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(COLUMN_IN, 3.6), sharex=True)
        band(top, before, METHOD, 1.0, label_text="before the update", colour=ORANGE)
        band(top, after, METHOD, 1.0, label_text="after the update", colour=CYAN)
        top.set_ylabel("hold-out loss")
        top.set_title(f"{label(METHOD)}: hold-out batch")
        top.legend(loc="upper right")
        for algo, colour in ((BASE, ORANGE), (METHOD, CYAN)):
            band(bottom, eval_curve(data.evals, ok[ok["algorithm"] == algo]["run_id"], "loss", split="test"), algo,
                 1.0, colour=colour)
        bottom.set_ylabel("test loss")
        bottom.set_xlabel("training step")
        bottom.legend(loc="upper right")
        fig.tight_layout()
    n = int(before["n"].max())
    return Drawing(fig, [f"Lines: mean over the seeds ({n} L2I runs recorded the hold-out losses); bands: ± std. "
                         "Losses: mean squared error in standardised output units (the training loss)."])


FIGURE = Figure(
    name="001-fig2", paper="001 (Learning to Impute, journal)", number="Fig. 2",
    title="landmarks: effect of the label update",
    shows="Hold-out loss before and after the meta update of the imputed labels, and the test loss, over training "
          "on facial landmarks (MT vs MT + L2I)",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
