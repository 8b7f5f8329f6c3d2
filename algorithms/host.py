"""Reading host tensors inside the training step, and only those.

The training step must not wait for the accelerator: no ``.item()``, ``float()``, ``.tolist()``
or ``.cpu()`` of a tensor computed on the device (each one blocks the host until the device
catches up). Random draws of the shared CPU generator (augmentation parameters, MixUp's Beta
seed) and the samplers' indices are host tensors: reading them costs no synchronisation, and
every such read in the step path goes through :func:`host_values`, which refuses device
tensors. ``tests/test_no_sync.py`` counts every other conversion during training steps.
"""
from __future__ import annotations

import torch


def host_values(t: torch.Tensor):
    """``t.tolist()`` of a CPU tensor (a Python scalar for a 0-dim one); ValueError for a device
    tensor, whose read would stall the step until the device is done."""
    if t.device.type != "cpu":
        raise ValueError(f"host_values reads host tensors only, got one on {t.device} (reading it would synchronise)")
    return t.tolist()
