"""Do labels matter on a landmark set? Supervised training on a fraction of the labels vs all of them.

``python -m datasets.landmark_difficulty`` trains a small CNN (plain torch, outside the benchmark's engine)
on n labeled images of ``synthetic_landmarks`` for each n given, and prints the test error in % of the
inter-ocular distance (datasets.landmarks), next to the error of always predicting the labeled set's mean
landmarks. A landmark set is useful for semi-supervised learning when 1% of the labels is clearly worse
than all of them. The test set only reports here: nothing is selected on it.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from .landmark_augment import landmark_max_shift, random_shift
from .landmarks import nme
from .protocol import make_regression_split
from .registry import get_info, load


class LandmarkCNN(nn.Module):
    """conv3x3 w - pool - conv3x3 2w - pool - conv3x3 4w - pool - Linear 64 - Linear K, ReLU between.
    Input [B, C, H, W] (H, W divisible by 8), output [B, K]."""

    def __init__(self, in_shape: tuple[int, int, int], k: int, width: int = 8) -> None:
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for cin, cout in ((c, width), (width, 2 * width), (2 * width, 4 * width)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * width * (h // 8) * (w // 8), 64), nn.ReLU(),
                                  nn.Linear(64, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def supervised_error(dataset: str, n_labels: int, steps: int, seed: int = 0, batch: int = 32, lr: float = 2e-3,
                     augment: bool = True) -> dict[str, float]:
    """Train :class:`LandmarkCNN` with MSE on standardised targets of the first ``n_labels`` images of the
    protocol's split (split seed = ``seed``), Adam ``lr``, ``steps`` batches of ``batch`` drawn with replacement,
    the dataset's random shift if ``augment``. Returns test_nme and mean_nme (predicting the labeled mean), in %."""
    data = load(dataset)
    info = get_info(dataset)
    if n_labels >= info.n_train:  # every label: the whole pool (the protocol's split would leave no unlabeled data)
        x, y = data.x_train, data.y_train
    else:
        idx = torch.from_numpy(make_regression_split(dataset, info.n_train, n_labels, 0, seed).labeled.copy())
        x, y = data.x_train[idx], data.y_train[idx]
    mean, std = y.mean(0), y.std(0, unbiased=False).clamp_min(1e-3)
    torch.manual_seed(seed)
    model = LandmarkCNN(info.input_shape, info.target_dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    shift = landmark_max_shift(dataset) if augment else 0
    for _ in range(steps):
        pick = torch.randint(0, len(x), (batch,), generator=gen)
        xb, yb = x[pick], y[pick]
        if shift:
            xb, yb, _ = random_shift(xb, shift, gen, yb)
        loss = ((model(xb) - (yb - mean) / std) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xt) for xt in data.x_test.split(500)]) * std + mean
    return {"test_nme": nme(pred, data.y_test), "mean_nme": nme(mean.expand_as(data.y_test), data.y_test)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datasets.landmark_difficulty", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic_landmarks")
    p.add_argument("--labels", default="100,10000", help="comma-separated numbers of labeled images")
    p.add_argument("--steps", type=int, default=3000, help="training steps per run")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (split and training)")
    args = p.parse_args(argv)
    print(f"{args.dataset}: supervised LandmarkCNN, {args.steps} steps, test NME in % of the inter-ocular distance")
    for n in (int(v) for v in args.labels.split(",")):
        runs = []
        for seed in range(args.seeds):
            t = time.perf_counter()
            runs.append(supervised_error(args.dataset, n, args.steps, seed))
            print(f"  n={n:6d} seed={seed}: test {runs[-1]['test_nme']:6.2f}  mean-landmark baseline "
                  f"{runs[-1]['mean_nme']:6.2f}  ({time.perf_counter() - t:.0f} s)", flush=True)
        errs = torch.tensor([r["test_nme"] for r in runs])
        print(f"n={n:6d}: test NME {errs.mean():.2f} +- {errs.std() if len(errs) > 1 else 0.0:.2f} over {len(runs)} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
