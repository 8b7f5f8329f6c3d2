"""Library versions and hardware recorded with every run."""
from __future__ import annotations

import os
import platform
import socket

import numpy as np
import torch


def environment_columns(device: torch.device, workers: int) -> dict:
    """Library versions and hardware recorded with every run."""
    import ray  # versions only; the engine does not need Ray to run

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return {
        "python_version": platform.python_version(), "torch_version": torch.__version__,
        "ray_version": ray.__version__, "numpy_version": np.__version__,
        "hostname": socket.gethostname(), "device": gpu or f"cpu ({platform.processor() or platform.machine()})",
        "cpu_count": os.cpu_count() or 1, "workers": workers,
    }
