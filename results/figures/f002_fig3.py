"""002 Fig. 3: Meta-Semi's sensitivity to its one hyperparameter beta, beside ICT's to its two
(MixUp's Beta parameter and the consistency weight w)."""
from __future__ import annotations

from ..plots import draw_sweep, sweep_table
from .base import Drawing, Figure, FigureData, NothingToDraw, Study, StudyPart
from .style import FULL_IN, paper_style

BETAS = (0.1, 0.2, 0.5, 1.0)
#: ICT's MixUp alpha (its paper's candidates) and w = lambda_u in this suite's convention (squared error summed
#: over classes): 1 and 10 are ICT's 10 and 100 on the class-averaged error with 10 classes
ICT_ALPHAS = (0.1, 0.2, 0.5, 1.0)
ICT_WEIGHTS = (1.0, 10.0)
PARAMS = {"meta_semi": ["beta"], "ict": ["alpha", "lambda_u"]}
NAMES = {"beta": "β (MixUp Beta(β, β))", "alpha": "β (ICT's MixUp Beta(β, β))", "lambda_u": "w"}


def _study(plan: dict, deviations: str) -> Study:
    parts = [StudyPart(dict(plan, algorithms=("meta_semi",)), hp={"beta": b}) for b in BETAS]
    parts += [StudyPart(dict(plan, algorithms=("ict",)), hp={"alpha": a, "lambda_u": w})
              for a in ICT_ALPHAS for w in ICT_WEIGHTS]
    return Study(tuple(parts), deviations)


_GRID = (f"Meta-Semi at beta {', '.join(map(str, BETAS))}; ICT at beta {', '.join(map(str, ICT_ALPHAS))} x w "
         f"{', '.join(f'{w:g}' for w in ICT_WEIGHTS)} (ICT's candidates; the paper's exact grid is in its figure, not in "
         "the text); 3 seeds per point; everything else at the setting's values")


def cpu() -> Study:
    return _study(dict(suite="quick", datasets=("digits",), seeds=3),
                  "digits (50 labels, cnn_small, 300 steps at batches 16+48) instead of the paper's CIFAR setting; "
                  + _GRID + "; the default-valued runs (beta 0.5; ICT beta 1, w 10) are the quick suite's")


def paper() -> Study:
    return _study(dict(protocols=("meta_semi_table1",), datasets=("cifar10",), labels=(4000,), seeds=3),
                  "CIFAR-10 with 4,000 labels in the 002 Table 1 CNN-13 setting (paper_cnn13 presets; the text does "
                  "not name the figure's setting); " + _GRID)


def plot(data: FigureData) -> Drawing:
    table = sweep_table(data.ok(), PARAMS)
    if table.empty:
        raise NothingToDraw("no finished run of 002-fig3")
    with paper_style() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(FULL_IN * 0.75, 2.5), sharey=True)
        draw_sweep(dict(zip(PARAMS, axes)), table, NAMES)
        axes[0].set_ylabel("test error (%)")
        fig.tight_layout()
    shown = table.assign(test_error_pct=(100 * table["test_error_mean"]).round(2),
                         std_pct=(100 * table["test_error_std"]).round(2))
    return Drawing(fig, ["Points: mean ± std of the test error over the seeds. w is the consistency weight on the "
                         "squared error summed over classes (10 classes: ICT's w on its class-averaged error is 10x)."],
                   {"sweep": shown[["algorithm", "param", "value", "param2", "value2", "n", "test_error_pct", "std_pct"]]})


FIGURE = Figure(
    name="002-fig3", paper="002 (Meta-Semi)", number="Fig. 3", title="sensitivity to beta, and ICT's to beta and w",
    shows="Test error of Meta-Semi against its one hyperparameter beta, and of ICT against its MixUp beta for two "
          "consistency weights w, on a shared error axis",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
