"""Run options that change how a network computes, not what it is: ``precision`` (bf16
autocast) and ``compile`` (``torch.compile``). Both are fields of :class:`~bench.config.RunConfig`,
part of a run's identity when set and left out of it at their defaults (fp32, no compile), so
every earlier run keeps its id; both are recorded in the runs table (``precision``, ``compile``).

``bf16``: the network's forward runs under ``torch.autocast`` to bfloat16 (matrix products and
convolutions in bf16, reductions, softmax and BatchNorm statistics in float32 as autocast
chooses) and returns float32 logits; parameters, gradients, optimizer state, losses, the meta
rules' virtual steps and their gradients stay float32. Evaluation uses the same forward.
Numbers differ from fp32 by bf16 rounding (8 bits of mantissa): ``tests/test_run_options.py``
bounds the difference on a short run.

``compile``: ``nn.Module.compile()`` of the student network in place (its parameter names and
state dict unchanged), after the evaluation EMA and the algorithm's teachers were copied from
it: those copies run eagerly (they step rarely relative to their cost, and a deep copy of a
compiled module would call the original's compiled code). Meta rules call the network through
``torch.func`` (``functional_call``, ``jvp``, double backward); TorchDynamo traces most of it
and falls back to eager where it cannot, so the option is correct everywhere and fastest for
the bases.
"""
from __future__ import annotations

import torch
from torch import nn

from algorithms.networks.base import FeatureClassifier

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def set_precision(model: nn.Module, precision: str) -> nn.Module:
    """Make ``model`` (a :class:`FeatureClassifier`) compute its forward in ``precision``
    (``fp32`` or ``bf16``); ValueError for another name or a network of another kind."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (valid: {', '.join(PRECISIONS)})")
    if PRECISIONS[precision] is None:
        return model
    if not isinstance(model, FeatureClassifier):
        raise ValueError(f"precision {precision} needs a network of algorithms.networks, got {type(model).__name__}")
    model.autocast_dtype = PRECISIONS[precision]
    return model


def compile_network(model: nn.Module, enabled: bool) -> nn.Module:
    """``model.compile()`` in place when ``enabled`` (see the module docstring)."""
    if enabled:
        model.compile()
    return model
