"""003 Fig. 3: t-SNE of the penultimate features of labeled, unlabeled and test examples, for
the labeled-only baseline and the Meta-Gradient method."""
from __future__ import annotations

import numpy as np

from ..artifacts import stack
from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .style import FULL_IN, label, paper_style, pm

BASELINE, METHOD = "supervised", "pseudo_label+meta_grad"
SUBSETS = ("labeled", "unlabeled", "test")
DOMAIN_COLORS = {"labeled": "#D62728", "unlabeled": "#1F77B4", "test": "#7F7F7F"}  # as the paper: red, blue, gray
_HOW = ("one joint t-SNE per method (scikit-learn, perplexity 30, PCA initialisation, random_state 0) of the EMA "
        "model's penultimate features of the whole labeled set, a fixed 500 of the unlabeled and a fixed "
        "class-balanced 500 of the test examples (the same examples for both methods) of seed 0; t-SNE axes have "
        "no units")


def cpu() -> Study:
    return Study((StudyPart(dict(suite="quick", datasets=("digits",), seeds=3, algorithms=(BASELINE, METHOD)),
                            artifacts=("features",)),),
                 "digits with 50 labels (cnn_small, 64 features; all 360 test images) instead of SVHN with 1,000 "
                 "labels on the 13-layer CNN (128 features); Meta-Gradient without its cross-domain MixUp; " + _HOW +
                 "; the runs are the quick suite's")


def paper() -> Study:
    plan = dict(protocols=("meta_grad_table1",), datasets=("svhn",), seeds=3)
    return Study((StudyPart(dict(plan, algorithms=(METHOD,)), artifacts=("features",)),
                  StudyPart(dict(plan, algorithms=("pseudo_label",)), algorithm=BASELINE, artifacts=("features",))),
                 "SVHN with 1,000 labels, 003 Table 1's protocol; the labeled-only baseline trains with the method's "
                 "network, optimizer and budget; " + _HOW)


def embed(features: np.ndarray) -> np.ndarray:
    """2-D t-SNE of ``features`` [N, F] (deterministic)."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(features) - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(features)


def plot(data: FigureData) -> Drawing:
    arts = data.artifacts("features")
    shown = data.lowest_seed_runs(arts)
    if not shown:
        raise NothingToDraw("no run of 003-fig3 has its features artifact")
    ok = data.ok()
    methods = [a for a in (BASELINE, METHOD) if a in shown]
    with paper_style() as plt:
        import matplotlib

        classes = matplotlib.colormaps["tab10"]
        fig, axes = plt.subplots(len(methods), 4, figsize=(FULL_IN, 1.8 * len(methods) + 0.2), squeeze=False)
        for row, algo in zip(axes, methods):
            rows = arts[shown[algo]]
            rows = rows[rows["subset"].isin(SUBSETS)]
            xy = embed(stack(rows, "features"))
            for ax, subset in zip(row, SUBSETS + ("all",)):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if subset == "all":
                    for s in SUBSETS:
                        m = (rows["subset"] == s).to_numpy()
                        ax.scatter(xy[m, 0], xy[m, 1], s=2, c=DOMAIN_COLORS[s], label=s, linewidths=0, rasterized=True)
                    ax.set_title("all subsets\nlabeled red, unlabeled blue, test gray", fontsize=6.5)
                    continue
                m = (rows["subset"] == subset).to_numpy()
                ax.scatter(xy[m, 0], xy[m, 1], s=2 if subset != "labeled" else 8, c=[classes(int(k) % 10) for k in rows["label"][m]],
                           linewidths=0, rasterized=True)
                ax.set_title(f"{subset} (n={int(m.sum())})", fontsize=7)
            errs = ok[ok["algorithm"] == algo]["test_error"]
            row[0].set_ylabel(f"{label(algo)}\ntest error {pm(errs)}%", fontsize=7)
        fig.tight_layout()
    return Drawing(fig, ["Columns 1-3: points coloured by their true class (10 classes); column 4: by subset. Row "
                         "labels: test error, mean ± std over the seeds."])


FIGURE = Figure(
    name="003-fig3", paper="003 (SSL with Meta-Gradient)", number="Fig. 3", title="t-SNE of the learned features",
    shows="t-SNE of the penultimate features of labeled, unlabeled and test examples for the labeled-only baseline "
          "and PL + Meta-Gradient, by class and all together",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
