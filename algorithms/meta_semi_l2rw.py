"""Learning to Reweight as paper 002 ran it: Ren et al.'s weights in Meta-Semi's pipeline.

002 App. D adapts Learning to Reweight (Ren, Zeng, Yang & Urtasun, ICML 2018) to SSL: "we
retain our approach of generating pseudo-labeled samples, but use their reweighting
strategy". So 002 Table 1's "Learning to Reweight" row is :mod:`algorithms.meta_semi` (EMA
soft pseudo-labels, MixUp of X and of Concat(X, U), the meta-objective on X_tilde, the update
on the weighted loss alone) with Ren et al.'s weights max(<grad G, grad L_j>, 0), normalised
to sum 1 (their Eq. 3-4 at eps = 0; the step size cancels), instead of Eq. 9's 0/1 signs.

This is ``meta_semi`` with ``weight_rule = l2rw``; it has a name of its own so that the row is
a row of its own in every results table (tables group runs by algorithm). The ``l2rw`` meta
rule (``BASE+l2rw``, :mod:`algorithms.rules.l2rw`) is another method: Ren et al.'s weights on a
base method's own pseudo-labels and losses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .meta_semi import MetaSemi, MetaSemiHparams
from .registry import register


@dataclass
class MetaSemiL2RWHparams(MetaSemiHparams):
    """Meta-Semi's (see MetaSemiHparams) with the weight rule fixed to Learning to Reweight's."""

    weight_rule: Literal["l2rw"] = "l2rw"


@register
class MetaSemiL2RW(MetaSemi):
    """Meta-Semi's pipeline with Learning to Reweight's weights (002 App. D, Table 1)."""

    Hparams = MetaSemiL2RWHparams
    name = "meta_semi_l2rw"
    paper_hps = 1  # MixUp's beta, as Meta-Semi (the weights add none: the step size cancels)
    description = "Learning to Reweight in Meta-Semi's pipeline (002's baseline): weights max(<grad G, grad L_j>, 0)"
    not_composable_because = "it is already a meta method; compose a base with the l2rw rule instead (e.g. pseudo_label+l2rw)"
