"""002 Fig. 2: the empirical check of Assumption 1, ||grad L_meta||^2 / ||grad G||^2 over training."""
from __future__ import annotations

from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .series import band, eval_curve
from .style import COLUMN_IN, FULL_IN, paper_style

METHOD = "pseudo_label+meta_semi"
RATIO = "diag_assumption1_ratio"
_WHY = ("the ratio is recorded by the Meta-Semi sign rule, here on Pseudo-Label (pseudo_label+meta_semi), not by the "
        "standalone meta_semi algorithm (EMA soft pseudo-labels + MixUp) that the paper measures; each point is a "
        "single-batch estimate ||grad L_meta||^2 / ||grad G||^2 averaged over the steps since the previous evaluation "
        "(the paper averages 500 Monte-Carlo samples per epoch); x is training steps, not epochs")


def cpu() -> Study:
    return Study((StudyPart(dict(suite="quick", datasets=("digits",), seeds=3, algorithms=(METHOD,)),
                            n_labels=(50, 100), hp={"diag_every": 5}),),
                 "digits with 50 and 100 labels (cnn_small, 300 steps) instead of CIFAR-10 / CIFAR-100; " + _WHY +
                 "; measured every 5 steps (diag_every 5; the rule's default is 50)")


def paper() -> Study:
    # 002 Table 1 has no Pseudo-Label row to borrow a CNN-13 setting from: 000 Table 1's is used
    return Study((StudyPart(dict(protocols=("l2i_conf_table1",), algorithms=("pseudo_label",), datasets=("cifar10",),
                                 labels=(1000, 4000), seeds=3), algorithm=METHOD),),
                 "CIFAR-10 with 1,000 / 4,000 labels in the CNN-13 setting of Pseudo-Label of 000 Table 1 "
                 "(l2i_conf_cnn13 presets; 002 Table 1 has no Pseudo-Label row); " + _WHY + "; measured every 50 steps")


def plot(data: FigureData) -> Drawing:
    ok = data.ok()
    if not len(ok) or RATIO not in data.evals.columns:
        raise NothingToDraw(f"no finished run of 002-fig2 recorded {RATIO}")
    panels = sorted({(r.dataset, int(r.n_labels)) for r in ok.itertuples()})
    with paper_style() as plt:
        width = COLUMN_IN if len(panels) == 1 else min(FULL_IN, 1.9 * len(panels))
        fig, axes = plt.subplots(1, len(panels), figsize=(width, 2.3), squeeze=False, sharey=True)
        for ax, (dataset, n) in zip(axes[0], panels):
            ids = ok[(ok["dataset"] == dataset) & (ok["n_labels"] == n)]["run_id"]
            curve = eval_curve(data.evals, ids, RATIO, split="val")
            band(ax, curve, METHOD, scale=1.0, label_text=f"mean ± std, {int(curve['n'].max()) if len(curve) else 0} seeds")
            ax.set_title(f"{dataset}, {n} labels")
            ax.set_xlabel("training step")
            ax.set_ylim(bottom=0)
        axes[0][0].set_ylabel("||∇L_meta||² / ||∇G||²")
        axes[0][0].legend(loc="best")
        fig.tight_layout()
    return Drawing(fig, ["Band: ± std over the seeds at each evaluation. The ratio is dimensionless."])


FIGURE = Figure(
    name="002-fig2", paper="002 (Meta-Semi)", number="Fig. 2", title="empirical check of Assumption 1",
    shows="The ratio of the squared norm of the meta loss's gradient to that of the labeled loss's gradient over "
          "training (Assumption 1 asks it to stay bounded)",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
