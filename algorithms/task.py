"""What a run learns: classification or regression, and the task-dependent pieces the algorithm contract uses.

An algorithm never asks which task it runs; it calls these (through ``TrainContext.task``):

* ``losses(out, y)``: the per-sample supervised loss against ground truth (C_T, and L2I's hold-out C_H);
* ``output_targets(out)``: the model's output read as a target z (softmax for classes; the regressed
  values themselves for regression): L2I's z(theta), Mean Teacher's teacher targets;
* ``consistency(out, z, class_distance)``: the distance d of a base (the base's own for classes, the
  squared error for regression);
* ``project(z, fallback)``: corrected labels back onto valid targets (the simplex; nothing for regression);
* ``augment_labeled`` / ``augment_unlabeled``: the weak augmentation, and for regression the displacement
  of the targets it causes (a shifted face has shifted landmarks), so that ``view_offset`` can carry a
  target imputed on one view over to another (001 App. A.1: "subtract the number of moving pixels");
* ``eval_sums(out, y)``: the evaluation metric and loss summed over a chunk.

Regression targets y are float [N, K] in their own units (landmark pixels). The network regresses them
standardised, ``out = (y - mean) / std`` with the labeled set's per-coordinate mean and std (the official
L2I code's ``(targets - mean) / std``): losses, distances, imputed targets z and their meta-gradients all
live in these output units; ``decode`` maps outputs back to target units for the metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

from . import losses
from .meta.weights import clip_to_simplex

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
#: (x [B, ...], generator) -> (augmented x, displacement [B, K] of the targets in target units: y' = y + delta)
EquivariantAugment = Callable[[torch.Tensor, torch.Generator], "tuple[torch.Tensor, torch.Tensor]"]
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ClassificationTask:
    """Integer class targets [N]; outputs are logits [N, C]; targets do not move with the augmentation."""

    name: ClassVar[str] = CLASSIFICATION
    moves_targets: ClassVar[bool] = False

    def losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per sample: logits [b, C], labels int64 [b] -> [b]."""
        return losses.hard_cross_entropy(out, y)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (the hold-out loss C_H of the L2I rules)."""
        return F.cross_entropy(out, y)

    def output_targets(self, out: torch.Tensor) -> torch.Tensor:
        """softmax(logits) [b, C]."""
        return torch.softmax(out, dim=1)

    def consistency(self, out: torch.Tensor, z: torch.Tensor, class_distance: Distance) -> torch.Tensor:
        return class_distance(out, z)

    def project(self, z: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        """Rows back onto the simplex (negatives clamped, renormalised; an empty row keeps ``fallback``'s)."""
        return clip_to_simplex(z, fallback=fallback)

    def augment_labeled(self, augment: Augment, x: torch.Tensor, y: torch.Tensor,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(x, generator), y

    def augment_unlabeled(self, augment: Augment, x: torch.Tensor,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        return augment(x, generator), None

    def view_offset(self, from_view: torch.Tensor | None, to_view: torch.Tensor | None) -> None:
        """Class targets are invariant to the augmentation: nothing to add."""
        return None

    def eval_sums(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(number of misclassified samples, summed cross-entropy), float64."""
        return (out.argmax(1) != y).sum().double(), F.cross_entropy(out.float(), y, reduction="sum").double()


@dataclass
class RegressionTask:
    """Float targets [N, K] regressed standardised (see the module docstring).

    mean, std [K]: the standardisation (the labeled set's statistics); ``augment``: the weak augmentation
    with the displacement of the targets it causes (:data:`EquivariantAugment`); ``error``: the per-sample
    metric on decoded predictions, (pred [b, K], y [b, K]) -> [b] (landmarks: NME over the inter-ocular
    distance, as a fraction).
    """

    mean: torch.Tensor
    std: torch.Tensor
    augment: EquivariantAugment
    error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    name: ClassVar[str] = REGRESSION
    moves_targets: ClassVar[bool] = True

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Targets [b, K] in their units -> output units."""
        return (y - self.mean) / self.std

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs [b, K] -> targets in their units."""
        return out * self.std + self.mean

    def losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared error per sample, averaged over the K coordinates in output units (the official L2I code's
        ``nn.MSELoss`` on standardised targets): out [b, K], y [b, K] in target units -> [b]."""
        return (out - self.encode(y)).pow(2).mean(dim=1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.losses(out, y).mean()

    def output_targets(self, out: torch.Tensor) -> torch.Tensor:
        """The regressed values themselves (output units)."""
        return out

    def consistency(self, out: torch.Tensor, z: torch.Tensor, class_distance: Distance) -> torch.Tensor:
        """Mean squared error over the K coordinates, out and z in output units -> [b] (every base: the L2I
        code's ``((logits_u - targets_u) ** 2).mean()``, per sample)."""
        del class_distance
        return (out - z).pow(2).mean(dim=1)

    def project(self, z: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        """Any real vector is a valid target."""
        del fallback
        return z

    def augment_labeled(self, augment: Augment, x: torch.Tensor, y: torch.Tensor,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivariant augmentation, with the targets moved alike (``augment``, the classification
        augmentation, is not used)."""
        del augment
        x_aug, delta = self.augment(x, generator)
        return x_aug, y + delta.to(y.dtype)

    def augment_unlabeled(self, augment: Augment, x: torch.Tensor,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        del augment
        return self.augment(x, generator)

    def no_displacement(self, x: torch.Tensor) -> torch.Tensor:
        """The displacement of an un-augmented view: zeros [b, K]."""
        return torch.zeros(x.shape[0], self.mean.shape[0], dtype=self.mean.dtype, device=x.device)

    def view_offset(self, from_view: torch.Tensor | None, to_view: torch.Tensor | None) -> torch.Tensor | None:
        """What to add to an output on a view displaced by ``from_view`` [b, K] to get the target of the view
        displaced by ``to_view`` [b, K], in output units: (to - from) / std. None if either view is missing."""
        if from_view is None or to_view is None:
            return None
        return (to_view - from_view).to(self.std.dtype) / self.std

    def eval_sums(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed per-sample metric of the decoded predictions, summed squared error in output units), float64."""
        out = out.float()
        return self.error(self.decode(out), y).double().sum(), self.losses(out, y).double().sum()


Task = ClassificationTask | RegressionTask


def task_refusal(what: str, tasks: tuple[str, ...], note: str, task: str) -> str | None:
    """Why ``what`` (an algorithm or rule, by name) cannot run on a ``task`` dataset, in one line, or None
    if ``task`` is among its ``tasks``; ``note`` is the reason it gives (a default one if empty)."""
    if task in tasks:
        return None
    return f"{what} cannot run on a {task} dataset: {note or 'it is defined for ' + ' and '.join(tasks) + ' only'}"


def standardisation(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate mean and sample std (ddof 1, as ``torch.std``) of targets y [N, K] -> ([K], [K]).

    A coordinate whose std is not finite or not positive (fewer than two samples, or all equal) gets
    std 1, so that encoding stays defined."""
    y = y.double()
    mean = y.mean(dim=0)
    std = y.std(dim=0) if y.shape[0] > 1 else torch.ones_like(mean)
    std = torch.where(torch.isfinite(std) & (std > 0), std, torch.ones_like(std))
    return mean.float(), std.float()
