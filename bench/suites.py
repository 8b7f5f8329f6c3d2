"""Named suites: which datasets, label counts, algorithms, seeds and budgets a command runs.

A :class:`Recipe` is the training setup for one dataset (network, batches, optimiser, budget,
per-algorithm hyperparameters); a :class:`Suite` picks recipes and seeds. Every deviation
from the papers' protocols is written into ``protocol_notes`` and lands with each result.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from algorithms import ConfigError, get_algorithm, list_algorithms, list_compositions, list_rules

from .config import OptimConfig, RunConfig
from .protocols import PROTOCOLS, Protocol, protocol_listing, protocols_of  # noqa: F401  (the paper tables, re-exported)


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
    #: per-algorithm values: key = algorithm, base (applies to its compositions too), "+RULE"
    #: (every composition with that rule) or "BASE+RULE"
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol_notes: str = ""
    n_test: int | None = None  # None: the whole test set; else a fixed class-balanced subset (CPU budgets)
    #: the reported error is the median of the last ``eval_last_k`` EMA evaluations (RunConfig.eval_last_k);
    #: dense evaluation puts that many in the last half of the run
    eval_last_k: int = 20
    #: the network in channels-last memory format (RunConfig.channels_last; a CPU speed-up for TCDCN)
    channels_last: bool = False
    #: examples per evaluation forward (RunConfig.eval_batch)
    eval_batch: int = 1024


@dataclass(frozen=True)
class Suite:
    """Recipes, algorithms and seeds. Every run of a recipe, base or BASE+RULE, gets the same
    budget, network, optimizer and batches: a comparison within a suite is fair by construction."""

    name: str
    description: str
    recipes: tuple[Recipe, ...]
    seeds: int
    algorithms: tuple[str, ...] | None = None  # None: every registered algorithm
    #: BASE+RULE runs added when no --algorithms is given, at the same budget as their bases
    compositions: tuple[str, ...] = ()
    #: bases that carry every registered meta rule (each rule that accepts the base), added to ``compositions``
    rules_on: tuple[str, ...] = ()
    #: dataset -> seeds, where it differs from ``seeds`` (cheap settings get more)
    seeds_for: dict[str, int] = field(default_factory=dict)
    #: at least 20 evaluations in the last half of every run (False: the recipe's spacing, for tests)
    dense_evals: bool = True

    def all_compositions(self) -> list[str]:
        """``compositions``, then every registered rule on each base of ``rules_on``."""
        registered = set(list_compositions())
        extra = [f"{b}+{r}" for b in self.rules_on for r in list_rules() if f"{b}+{r}" in registered]
        return list(self.compositions) + [c for c in extra if c not in self.compositions]


def dense_eval_every(steps: int, eval_every: int, last_k: int = 20) -> int:
    """``eval_every`` shrunk so that at least ``last_k`` evaluations fall in the last half of
    ``steps`` (every step for runs shorter than 2 x last_k): the reported median of the last
    ``last_k`` evaluations is then over the end of training, not the whole trajectory."""
    return max(1, min(eval_every, steps // (2 * last_k)))


# Recipe values, each chosen on validation error (docs/recipes.md has what was tried and measured):
# the toy needs small MixUp alphas, faster teachers, VAT eps 0.2; L2I a virtual step of 10 x lr with its own Adam.
_L2I_TOY = {"l2i_inner_lr_scale": 10.0, "l2i_meta_optimizer": "separate"}
# meta_grad without cross-domain MixUp ("meta only", 003 Table 4): with it every setting collapsed at these budgets.
_META_GRAD_SMALL = {"use_mixup": False}
_TOY_HP = {"pseudo_label": {"threshold": 0.0}, "mean_teacher": {"ema_decay": 0.95}, "meta_semi": {"ema_decay": 0.95},
           "mixmatch": {"lambda_u": 1.0, "alpha": 0.1}, "ict": {"ema_decay": 0.95, "lambda_u": 0.3, "alpha": 0.2},
           "vat": {"eps": 0.2}, "+l2i_o": _L2I_TOY, "+l2i_l": _L2I_TOY, "+meta_grad": _META_GRAD_SMALL}
# 150 steps: fast teachers, and milder MixUp (alpha 1 needs ~600 steps to pay off on digits).
_SMOKE_HP = {"mean_teacher": {"ema_decay": 0.9}, "meta_semi": {"ema_decay": 0.9}, "supervised_mixup": {"alpha": 0.2},
             "mixmatch": {"lambda_u": 10.0, "alpha": 0.1}}
# digits: MixMatch lambda_u 10 (75 collapses 1k-step runs); L2I inner scales 3 (O) and 10 (L) (docs/recipes.md).
_SMALL_HP = {"mean_teacher": {"ema_decay": 0.99}, "meta_semi": {"ema_decay": 0.99}, "mixmatch": {"lambda_u": 10.0},
             "+l2i_o": {"l2i_inner_lr_scale": 3.0}, "+l2i_l": {"l2i_inner_lr_scale": 10.0}, "+meta_grad": _META_GRAD_SMALL}

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

# Landmark regression: 001 Table 1's AFLW protocol (Sec. 5.2 Experiment 1: TCDCN, SGD lr 0.03, momentum 0.9,
# weight decay 5e-4, 22,500 steps, lr x0.1 at 15,000; App. A.1: lambda ramped linearly to 3 over 9,000 steps;
# batch 128 + 128 as the official code), and its CPU-scale version on synthetic_landmarks (docs/recipes.md).
_AFLW_OPT = OptimConfig(name="sgd", lr=0.03, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="step",
                        milestones=(15000,))
_LANDMARK_HP = {"pseudo_label": {"lambda_u": 3.0, "threshold": 0.0, "rampup": "linear", "rampup_fraction": 0.4},
                "mean_teacher": {"lambda_u": 3.0, "rampup": "linear", "rampup_fraction": 0.4, "ema_decay": 0.999},
                "+l2i_o": {"l2i_inner_lr_scale": 10.0, "meta_method": "approx"}, "+l2i_l": {"l2i_inner_lr_scale": 1.0}}
AFLW = Recipe("aflw", "tcdcn", (91, 182, 455), 22500, 250, 128, 128, _AFLW_OPT, 0.999, _LANDMARK_HP,
              "001 Table 1 AFLW protocol (TCDCN, SGD 0.03 x0.1 at 15k of 22.5k steps, batch 128+128); validation as "
              "scarce as the labels unless --val-protocol paper")
# Its budget is set by cost (docs/budgets.md): on one CPU thread evaluation, not training, dominated a run (an
# evaluation of the 3,000 test images costs about 70 Pseudo-Label steps), hence a fixed 500-image test subset,
# 10 evaluations in the last half (the median of the last 10 is reported, not of 20), chunks of 128 and channels-last
# memory (each twice as fast for TCDCN on one thread); 500 steps, since every semi-supervised method still improves
# at step 500. The learning rate follows the batch (linear scaling): at AFLW's 0.03 with batch 32 the L2I rules
# diverged within 60 steps and Pseudo-Label ended worse than supervised (docs/recipes.md).
SYNTHETIC_LANDMARKS = Recipe(
    "synthetic_landmarks", "tcdcn", (100, 500), 500, 100, 32, 32,
    dataclasses.replace(_AFLW_OPT, lr=0.03 * 32 / 128, milestones=(333,)), 0.99, _LANDMARK_HP,
    "CPU-scale AFLW protocol on the offline landmark set: TCDCN, SGD 0.0075 (AFLW's 0.03 at batch 128 scaled "
    "linearly to batch 32) x0.1 at 2/3 of 500 steps, batch 32+32; test error on a fixed 500 of the 3,000 test "
    "images, the median of the last 10 evaluations (every 25 steps); channels-last network",
    n_test=500, eval_last_k=10, channels_last=True, eval_batch=128)

RECIPES: dict[str, Recipe] = {r.dataset: r for r in (TWO_CIRCLES, DIGITS, FASHION, CIFAR10, CIFAR100, SVHN, STL10,
                                                     SYNTHETIC_LANDMARKS, AFLW)}




_QUICK_DIGITS = dataclasses.replace(
    DIGITS, steps=300, batch_labeled=16, batch_unlabeled=48,
    protocol_notes=DIGITS.protocol_notes.replace("1k steps", "300 steps with batches 16+48 (quick budget)"))
# Budgets planned from per-step and per-evaluation costs (docs/budgets.md): the standard suite's digits at the
# quick suite's budget, Fashion-MNIST on cnn_tiny with a fixed 500-image test subset (an evaluation of the whole
# 10,000-image test set costs more than the run's training).
_STANDARD_DIGITS = dataclasses.replace(_QUICK_DIGITS, labels=(50, 100), protocol_notes=DIGITS.protocol_notes.replace(
    "1k steps", "300 steps with batches 16+48 (standard budget)"))
_STANDARD_FASHION = dataclasses.replace(
    FASHION, network="cnn_tiny", labels=(100, 250), steps=200, batch_labeled=16, batch_unlabeled=48, n_test=500,
    protocol_notes="offline 28x28 set; cnn_tiny (cnn_small at width 8), 200 steps with batches 16+48 (standard "
                   "budget); test error on a fixed class-balanced 500 of the 10,000 test images")

# The standard suite's landmark part: 1% labels only (a second label count would add half an hour).
_STANDARD_LANDMARKS = dataclasses.replace(SYNTHETIC_LANDMARKS, labels=(100,))

SUITES: dict[str, Suite] = {
    "smoke": Suite("smoke", "seconds: two_circles and digits, tiny budgets, 1 seed, 2-3 evaluations a run (for tests)",
                   (dataclasses.replace(TWO_CIRCLES, steps=100, eval_every=50),
                    dataclasses.replace(DIGITS, steps=150, eval_every=50, batch_labeled=16, batch_unlabeled=48,
                                        ema_decay=0.9, hparams=_SMOKE_HP)), seeds=1, dense_evals=False),
    "quick": Suite("quick", "the default: offline data, every algorithm and every meta rule on Pseudo-Label at the "
                            "same budget; two_circles 400 steps x 10 seeds, digits 300 steps x 3 seeds; under 10 "
                            "minutes on 2 CPU cores",
                   (TWO_CIRCLES, _QUICK_DIGITS), seeds=3, seeds_for={"two_circles": 10},
                   rules_on=("pseudo_label",)),
    "standard": Suite("standard", "about 80 minutes on 2 CPU cores: digits (50, 100 labels; 300 steps) and "
                                  "Fashion-MNIST (100, 250 labels; cnn_tiny, 200 steps, 500 test images), every algorithm "
                                  "and every meta rule on Pseudo-Label and on Mean Teacher, 3 seeds; synthetic_landmarks "
                                  "(100 labels; TCDCN, 500 steps) with the regression-capable ones",
                      (_STANDARD_DIGITS, _STANDARD_FASHION, _STANDARD_LANDMARKS), seeds=3,
                      rules_on=("pseudo_label", "mean_teacher")),
    "toy": Suite("toy", "paper 000 Fig. 1: two circles, 50 labels, SL / PL / PL+L2I (model output) / PL+L2I "
                        "(learnable labels), 3 seeds", (TWO_CIRCLES,), seeds=3,
                 algorithms=("supervised", "pseudo_label"), compositions=("pseudo_label+l2i_o", "pseudo_label+l2i_l")),
    "full": Suite("full", "the papers' tables on CIFAR-10/100, SVHN, STL-10 (needs the data and GPUs): protocols "
                          + ", ".join(PROTOCOLS) + ", each run with its table's network, budget and presets "
                          "(bench.run --list: who is in which; --dry-run: the runs and their cost)",
                  (CIFAR10, CIFAR100, SVHN, STL10), seeds=5,
                  compositions=tuple(sorted({m for p in PROTOCOLS.values() for m in p.methods if "+" in m}))),
}


def _for_task(algos: list[str], dataset: str) -> list[str]:
    """The suite's algorithms that can run on ``dataset``'s task (an explicit --algorithms is not filtered:
    the planner refuses a mismatch in one line)."""
    import datasets

    task = datasets.get_info(dataset).task
    return [a for a in algos if get_algorithm(a).refuse_task(task) is None]


def expand(suite: Suite, *, algorithms: list[str] | None = None, datasets: list[str] | None = None,
           labels: list[int] | None = None, seeds: int | None = None, split_seed: int | None = None,
           steps: int | None = None, workers: int = 1, val_protocol: str = "scarce",
           network: str | None = None) -> list[RunConfig]:
    """The run configs of ``suite`` with command-line overrides applied.

    ``datasets`` may name datasets outside the suite: their recipe from :data:`RECIPES` is
    used. The suite's algorithms (no ``algorithms`` given) are those that can learn each
    dataset's task (a landmark set gets the regression-capable ones). The split seed follows
    the training seed unless ``split_seed`` fixes it. Every algorithm of a recipe runs at the
    same budget (the recipe's, or ``steps``), evaluated densely enough for the last-20 median
    (:func:`dense_eval_every`) unless the suite opts out.
    """
    recipes = list(suite.recipes)
    if datasets:
        by_name = {**RECIPES, **{r.dataset: r for r in recipes}}
        missing = [d for d in datasets if d not in by_name]
        if missing:
            raise ConfigError(f"no recipe for dataset(s) {', '.join(missing)} (recipes: {', '.join(sorted(by_name))})")
        recipes = [by_name[d] for d in datasets]
    algos = list(algorithms) if algorithms else list(suite.algorithms or list_algorithms()) + suite.all_compositions()
    configs = []
    for r in recipes:
        n_seeds = seeds if seeds is not None else suite.seeds_for.get(r.dataset, suite.seeds)
        run_steps = steps if steps is not None else r.steps
        notes = r.protocol_notes
        if steps is not None and steps != r.steps:
            notes += f"; budget overridden to {steps} steps"
        if network is not None and network != r.network:
            notes += f"; network overridden to {network}"
        every = (dense_eval_every(run_steps, r.eval_every, r.eval_last_k) if suite.dense_evals
                 else min(r.eval_every, run_steps))
        for n_labels in (labels or r.labels):
            for algo in algos if algorithms else _for_task(algos, r.dataset):
                # a composition inherits its base's recipe hyperparameters (e.g. the toy threshold), then
                # its rule's (key "+RULE"), then its own (key "BASE+RULE")
                base, _, rule = algo.partition("+")
                hp = {**r.hparams.get(base, {}), **(r.hparams.get("+" + rule, {}) if rule else {}),
                      **r.hparams.get(algo, {})}
                for seed in range(n_seeds):
                    configs.append(RunConfig.from_dict(dict(
                        dataset=r.dataset, algorithm=algo, network=network or r.network, n_labels=n_labels,
                        steps=run_steps, seed=seed, split_seed=seed if split_seed is None else split_seed,
                        eval_every=every, eval_last_k=r.eval_last_k, n_test=r.n_test, channels_last=r.channels_last,
                        eval_batch=r.eval_batch,
                        batch_labeled=r.batch_labeled, batch_unlabeled=r.batch_unlabeled, val_protocol=val_protocol,
                        ema_decay=r.ema_decay, optim=r.optim, hparams=hp, workers=workers,
                        suite=suite.name, protocol_notes=notes)))
    return configs
