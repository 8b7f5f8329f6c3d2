"""Named suites: which datasets, label counts, algorithms, seeds and budgets a command runs.

A :class:`Recipe` is the training setup for one dataset (network, batches, optimiser, budget,
per-algorithm hyperparameters); a :class:`Suite` picks recipes and seeds. Every deviation
from the papers' protocols is written into ``protocol_notes`` and lands with each result.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from algorithms import list_algorithms

from .config import OptimConfig, RunConfig


@dataclass(frozen=True)
class Recipe:
    """How one dataset is trained in a suite (batch sizes are global)."""

    dataset: str
    network: str
    labels: tuple[int, ...]
    steps: int
    eval_every: int
    batch_labeled: int = 32
    batch_unlabeled: int = 96
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.999
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol_notes: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    recipes: tuple[Recipe, ...]
    seeds: int
    algorithms: tuple[str, ...] | None = None  # None: every registered algorithm


_TOY_HP = {"pseudo_label": {"threshold": 0.0}, "mean_teacher": {"ema_decay": 0.95}, "meta_semi": {"ema_decay": 0.95}}
# 150 steps: fast teachers, and milder MixUp (alpha 1 needs ~600 steps to pay off on digits).
_SMOKE_HP = {"mean_teacher": {"ema_decay": 0.9}, "meta_semi": {"ema_decay": 0.9}, "supervised_mixup": {"alpha": 0.2},
             "mixmatch": {"lambda_u": 10.0, "alpha": 0.1}}
# MixMatch's lambda_u 75 (CIFAR-10) drives 1k-step digits runs into one-class guesses; 10 measured 7% error.
_SMALL_HP = {"mean_teacher": {"ema_decay": 0.99}, "meta_semi": {"ema_decay": 0.99}, "mixmatch": {"lambda_u": 10.0}}

TWO_CIRCLES = Recipe(
    dataset="two_circles", network="mlp_2_4_2", labels=(50,), steps=400, eval_every=40,
    batch_labeled=32, batch_unlabeled=128,
    optim=OptimConfig(name="adam", lr=0.03, weight_decay=0.0, schedule="constant"), ema_decay=0.95,
    hparams=_TOY_HP,
    protocol_notes="paper 000 toy: 2-4-2 net, Adam 0.03, 400 steps; softmax CE instead of a sigmoid output; "
                   "validation as scarce as the labels unless --val-protocol paper",
)
DIGITS = Recipe(
    dataset="digits", network="cnn_small", labels=(50,), steps=1000, eval_every=100,
    optim=OptimConfig(name="sgd", lr=0.05, weight_decay=5e-4), ema_decay=0.99, hparams=_SMALL_HP,
    protocol_notes="offline stand-in for CIFAR: 8x8 digits, small CNN, 1k steps",
)
FASHION = Recipe(
    dataset="fashion_mnist", network="cnn_small", labels=(100,), steps=5000, eval_every=250,
    optim=OptimConfig(name="sgd", lr=0.05, weight_decay=5e-4), ema_decay=0.99, hparams=_SMALL_HP,
    protocol_notes="offline 28x28 set, small CNN, 5k steps",
)

_PAPER_STEPS = 2 ** 20  # MixMatch / L2I WRN budget (1024 epochs x 1024 steps)
_PAPER_OPT = OptimConfig(name="sgd", lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")
_PAPER_NOTE = ("WRN-28 protocol of MixMatch/Meta-Semi (2^20 steps, batch 64+448 replaced by 32+96 as Meta-Semi App. D), "
               "SGD Nesterov cosine as FixMatch; validation as scarce as the labels unless --val-protocol paper")
CIFAR10 = Recipe("cifar10", "wrn28_2", (250, 1000, 4000), _PAPER_STEPS, 4096, 32, 96, _PAPER_OPT, 0.999, {},
                 _PAPER_NOTE)
CIFAR100 = Recipe("cifar100", "wrn28_8", (10000,), _PAPER_STEPS, 4096, 32, 96,
                  dataclasses.replace(_PAPER_OPT, weight_decay=1e-3), 0.999, {}, _PAPER_NOTE + "; WRN-28-8 for 100 classes")
SVHN = Recipe("svhn", "wrn28_2", (250, 1000), _PAPER_STEPS, 4096, 32, 96, _PAPER_OPT, 0.999, {},
              _PAPER_NOTE + "; core training set only (no extra split)")
STL10 = Recipe("stl10", "wrn28_2", (1000,), _PAPER_STEPS, 4096, 32, 96, _PAPER_OPT, 0.999, {},
               _PAPER_NOTE + "; class-balanced labels from the 5k train images instead of the predefined folds")

RECIPES: dict[str, Recipe] = {r.dataset: r for r in (TWO_CIRCLES, DIGITS, FASHION, CIFAR10, CIFAR100, SVHN, STL10)}

SUITES: dict[str, Suite] = {
    "smoke": Suite("smoke", "seconds: two_circles and digits, tiny budgets, 1 seed (for tests)",
                   (dataclasses.replace(TWO_CIRCLES, steps=100, eval_every=50),
                    dataclasses.replace(DIGITS, steps=150, eval_every=50, batch_labeled=16, batch_unlabeled=48,
                                        ema_decay=0.9, hparams=_SMOKE_HP)), seeds=1),
    "quick": Suite("quick", "offline data (two_circles, digits), every algorithm, 2 seeds; under 10 minutes on 2 CPU cores",
                   (TWO_CIRCLES, DIGITS), seeds=2),
    "full": Suite("full", "the papers' protocols on CIFAR-10/100, SVHN, STL-10 (needs the data and GPUs)",
                  (CIFAR10, CIFAR100, SVHN, STL10), seeds=5),
}


def expand(suite: Suite, *, algorithms: list[str] | None = None, datasets: list[str] | None = None,
           labels: list[int] | None = None, seeds: int | None = None, split_seed: int | None = None,
           steps: int | None = None, workers: int = 1, val_protocol: str = "scarce",
           network: str | None = None) -> list[RunConfig]:
    """The run configs of ``suite`` with command-line overrides applied.

    ``datasets`` may name datasets outside the suite: their recipe from :data:`RECIPES` is
    used. The split seed follows the training seed unless ``split_seed`` fixes it.
    """
    recipes = list(suite.recipes)
    if datasets:
        by_name = {r.dataset: r for r in recipes}
        recipes = [by_name.get(d) or RECIPES[d] for d in datasets]
    algos = algorithms or list(suite.algorithms or list_algorithms())
    n_seeds = seeds if seeds is not None else suite.seeds
    configs = []
    for r in recipes:
        for n_labels in (labels or r.labels):
            for algo in algos:
                for seed in range(n_seeds):
                    notes = r.protocol_notes
                    if steps is not None and steps != r.steps:
                        notes += f"; budget overridden to {steps} steps"
                    if network is not None and network != r.network:
                        notes += f"; network overridden to {network}"
                    configs.append(RunConfig.from_dict(dict(
                        dataset=r.dataset, algorithm=algo, network=network or r.network, n_labels=n_labels,
                        steps=steps if steps is not None else r.steps, seed=seed,
                        split_seed=seed if split_seed is None else split_seed,
                        eval_every=min(r.eval_every, steps) if steps is not None else r.eval_every,
                        batch_labeled=r.batch_labeled, batch_unlabeled=r.batch_unlabeled, val_protocol=val_protocol,
                        ema_decay=r.ema_decay, optim=r.optim, hparams=dict(r.hparams.get(algo, {})), workers=workers,
                        suite=suite.name, protocol_notes=notes)))
    return configs
