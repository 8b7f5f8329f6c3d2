"""One preset entry, and the unit conversions the preset tables share.

An entry is keyed by (family, algorithm key, dataset). The algorithm key is one of

- a method (``"mean_teacher"``): network, optimiser and schedule, batch sizes, budget, EMA
  (``run``) and the method's hyperparameters (``hparams``);
- a rule (``"+l2i_o"``): the rule's hyperparameters for every composition ``BASE+l2i_o``;
- a composition (``"mean_teacher+l2i_o"``): hyperparameters for that pair only.

Rule and composition entries carry no ``run`` fields: a composition always trains with its
base's network, optimiser, batches and budget, so the base-vs-rule comparison stays fair.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEPS_2_20 = 2 ** 20
#: training images left after the papers' validation hold-out (5,000 for CIFAR, 1,000 for SVHN)
N_TRAIN = {"cifar10": 45000, "cifar100": 45000, "svhn": 72257}
CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "stl10": 10}
#: Meta-Semi's update as its algorithm box (its CNN-13 and WRN families)
MS_ALG1_HP = {"meta_objective": "mixed", "labeled_weight": 0.0, "weight_rule": "sign"}
MS_ALG1_NOTE = ("the meta-objective G on the mixed labeled batch X_tilde and the update on L_meta alone (002 Alg. 1 lines "
                "9-13; App. B: the weights of Eq. 38 are set by grad G(X_tilde, theta_t), and Eq. 52 'Delta theta = "
                "theta_t+1 - theta_t = -alpha_t grad F(X_tilde, U_tilde, theta_t)' with F = L_meta, Eq. 29)")
EPOCH_NOTE = "an epoch = (training images after the val hold-out) / (labeled + unlabeled batch) steps (our reading)"


def epochs(n: int, dataset: str, per_step: int = 100) -> int:
    """Steps of ``n`` epochs over the dataset's training images at ``per_step`` images per step."""
    return n * round(N_TRAIN[dataset] / per_step)


@dataclass(frozen=True)
class Preset:
    """Overrides of a run config: ``run`` holds RunConfig fields (``optim`` as a dict),
    ``hparams`` the algorithm's (or the rule's) own. ``source`` names paper, section and
    table; ``notes`` state every ambiguous, adapted or unverified choice."""

    name: str
    algorithm: str
    dataset: str
    source: str
    run: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind != "method" and self.run:
            raise ValueError(f"preset {self.name}/{self.algorithm}/{self.dataset}: a rule or composition entry sets no "
                             f"run fields (they come from its base), got {sorted(self.run)}")

    @property
    def kind(self) -> str:
        """``method``, ``rule`` (key ``+RULE``) or ``composition`` (key ``BASE+RULE``)."""
        if self.algorithm.startswith("+"):
            return "rule"
        return "composition" if "+" in self.algorithm else "method"
