"""001 Fig. 3 (landmarks): test images with their ground-truth, Mean Teacher and MT + L2I
landmarks, success and failure cases."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..artifacts import LANDMARK_IMAGES, stack
from .base import Drawing, Figure, FigureData, NothingToDraw, Study
from .f001_fig2 import AFLW_LABELS, BASE, CPU_LABELS, CYAN, METHOD, ORANGE, cpu_part, paper_part
from .style import FULL_IN, label, paper_style

#: images per row (success, failure)
CASES = 4
GREEN = "#2CA02C"  # the paper's ground truth: green points with circles
_HOW = (f"the images are the first {LANDMARK_IMAGES} of the test set (fixed before any run, the same for both "
        "methods), the predictions those of each method's seed-0 final EMA model in pixels; success cases: the "
        f"{CASES} images where L2I's normalised error is lowest relative to Mean Teacher's (largest NME_MT - "
        f"NME_L2I); failure cases: the {CASES} others where L2I's own error is highest (the paper's bottom row, "
        "where both methods fail); the paper picks its examples by eye from the whole test set and does not say "
        "how")


def cpu() -> Study:
    return Study((cpu_part(),), f"synthetic_landmarks with {CPU_LABELS} labels (1%, the paper's setting; TCDCN, "
                                "500 steps: the AFLW protocol at CPU scale) instead of AFLW; " + _HOW)


def paper() -> Study:
    return Study((paper_part(),), f"AFLW with {AFLW_LABELS} labels (1%), 001 Table 1's protocol (l2i_aflw presets); "
                                  + _HOW)


def per_image_nme(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Normalised mean error of each image in % (``datasets.landmarks``): [N, 2L], [N, 2L] -> [N]."""
    import torch

    from datasets.landmarks import nme_per_sample

    return nme_per_sample(torch.from_numpy(pred), torch.from_numpy(target)).numpy()


def pick_cases(nme_base: np.ndarray, nme_method: np.ndarray, k: int = CASES) -> tuple[np.ndarray, np.ndarray]:
    """(success, failure) positions: the ``k`` largest nme_base - nme_method, then of the rest the
    ``k`` largest nme_method (ties broken by position, so the choice is deterministic)."""
    gain = nme_base - nme_method
    success = np.lexsort((np.arange(len(gain)), -gain))[:k]
    rest = np.setdiff1d(np.arange(len(gain)), success)
    failure = rest[np.lexsort((rest, -nme_method[rest]))][:k]
    return success, failure


def _images(dataset: str, rows: pd.DataFrame) -> np.ndarray:
    """The artifact's inputs as grey images [N, H, W] (the first channel)."""
    from datasets import get_info

    shape = tuple(get_info(dataset).input_shape)
    return stack(rows, "x").reshape((len(rows),) + shape)[:, 0]


def plot(data: FigureData) -> Drawing:
    arts = data.artifacts("landmarks")
    shown = data.lowest_seed_runs(arts)
    missing = [a for a in (BASE, METHOD) if a not in shown]
    if missing:
        raise NothingToDraw(f"no run of {', '.join(missing)} in 001-fig3 has its landmarks artifact")
    base, method = (arts[shown[a]].sort_values("index").reset_index(drop=True) for a in (BASE, METHOD))
    target = stack(base, "target")
    if not np.array_equal(base["index"], method["index"]) or not np.allclose(target, stack(method, "target")):
        raise NothingToDraw("the two methods' landmarks artifacts hold different test images")
    pred = {BASE: stack(base, "prediction"), METHOD: stack(method, "prediction")}
    nme = {a: per_image_nme(p, target) for a, p in pred.items()}
    success, failure = pick_cases(nme[BASE], nme[METHOD])
    dataset = next(p["dataset"] for p in data.planned if p["run_id"] == shown[METHOD])
    images = _images(dataset, base)
    with paper_style() as plt:
        fig, axes = plt.subplots(2, CASES, figsize=(FULL_IN * 0.8, 3.7), squeeze=False)
        for row, (picked, title) in enumerate(((success, "(a) success"), (failure, "(b) failure"))):
            for col, ax in enumerate(axes[row]):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if col >= len(picked):
                    ax.axis("off")
                    continue
                i = int(picked[col])
                ax.imshow(images[i], cmap="gray", interpolation="nearest")
                gt = target[i].reshape(-1, 2)
                ax.scatter(gt[:, 0], gt[:, 1], s=28, facecolors="none", edgecolors=GREEN, linewidths=0.9)
                ax.scatter(gt[:, 0], gt[:, 1], s=4, c=GREEN, linewidths=0)
                for algo, colour in ((BASE, ORANGE), (METHOD, CYAN)):
                    p = pred[algo][i].reshape(-1, 2)
                    ax.scatter(p[:, 0], p[:, 1], s=8, c=colour, linewidths=0)
                ax.set_title(f"#{int(base['index'][i])}: MT {nme[BASE][i]:.1f}%, L2I {nme[METHOD][i]:.1f}%", fontsize=6.5)
            axes[row][0].set_ylabel(title)
        fig.tight_layout()
    both = np.concatenate([success, failure])
    cases = pd.DataFrame({"case": ["success"] * len(success) + ["failure"] * len(failure),
                          "test_image": base["index"].to_numpy()[both].astype(int),
                          "nme_mt_pct": np.round(nme[BASE][both], 2), "nme_l2i_pct": np.round(nme[METHOD][both], 2)})
    return Drawing(fig, [f"Green circles: ground truth; orange: {label(BASE)}; cyan: {label(METHOD)} (the paper's "
                         f"colours). Titles: the test image and each method's normalised mean error over the "
                         f"inter-ocular distance. Over the {len(target)} images: {label(BASE)} "
                         f"{nme[BASE].mean():.2f}%, {label(METHOD)} {nme[METHOD].mean():.2f}% (seed 0)."],
                   tables={"cases": cases})


FIGURE = Figure(
    name="001-fig3", paper="001 (Learning to Impute, journal)", number="Fig. 3",
    title="landmarks: success and failure cases",
    shows="Test images with the ground-truth, Mean Teacher and MT + L2I landmarks (best and worst cases)",
    studies={"cpu": cpu, "paper": paper}, plot=plot)
