"""Per-step diagnostics and the divergence flag, kept on the device between evaluations.

A training step must not wait for the device (see :mod:`algorithms.host`), so the engine does
not read a step's losses when the step ends. :class:`StepStats` adds each diagnostic to a
float64 sum on the device (Python floats, e.g. lambda(t), to a Python sum) and keeps the index
of the first step whose loss was not finite as a device tensor; :meth:`StepStats.read` turns
both into Python values once per evaluation, in one transfer. The sums are the same IEEE
double additions, in the same order, as summing ``float(value)`` step by step, so the means
are bit-identical to reading every step. A divergence is found at the next evaluation, up to
``eval_every`` steps after it happened; the run is then recorded as diverged at the step it
happened.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from algorithms import Comm

_NO_STEP = math.inf  # "no non-finite loss yet" in the first-bad-step slot


@dataclass
class StatsReading:
    """What one read returns: mean of each diagnostic over the steps that reported it and over
    workers (sorted by name), and the first step (1-based, as ``steps_done``) whose training
    loss was not finite on any worker, or None."""

    means: dict[str, float]
    first_bad_step: int | None


class StepStats:
    """Sums of per-step diagnostics since the last read, on the device where they were computed."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, float | torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._first_bad: torch.Tensor | None = None  # 0-dim float64 on the device: 1-based step or inf
        self._first_bad_host = _NO_STEP

    def add(self, diagnostics: dict[str, float | torch.Tensor], steps_done: int) -> None:
        """Add one step's diagnostics (0-dim tensors or Python numbers); ``steps_done`` counts this
        step (1-based). ``diagnostics["loss"]`` is the loss the finiteness check watches."""
        for k, v in diagnostics.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().reshape(()).to(torch.float64)
                old = self._sums.get(k)
                self._sums[k] = v if old is None else old + v  # Python float + tensor: the same double addition
            else:
                self._sums[k] = self._sums.get(k, 0.0) + float(v)
            self._counts[k] = self._counts.get(k, 0) + 1
        loss = diagnostics.get("loss")
        if isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss.detach().reshape(()))
            # Python scalars, not host tensors: nothing is copied to the device (exact in float32 below 2**24 steps)
            here = torch.where(bad, float(steps_done), _NO_STEP).to(torch.float64)
            self._first_bad = here if self._first_bad is None else torch.minimum(self._first_bad, here)
        elif loss is not None and not math.isfinite(float(loss)) and self._first_bad_host == _NO_STEP:
            self._first_bad_host = float(steps_done)

    def read(self, comm: Comm) -> StatsReading:
        """Means and the first bad step, reduced over workers (a collective: every worker calls it
        at the same step), in one device-to-host transfer; then start afresh."""
        names = sorted(self._sums)
        device = next((v.device for v in self._sums.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
        parts = [(v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=torch.float64, device=device))
                 / self._counts[k] for k, v in ((k, self._sums[k]) for k in names)]
        means = torch.stack(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)
        first_bad = torch.tensor(self._first_bad_host, dtype=torch.float64, device=device)
        if self._first_bad is not None:
            first_bad = torch.minimum(first_bad, self._first_bad.to(device))
        if comm.world_size > 1:
            if names:
                means = comm.all_reduce_mean(means)
            first_bad = comm.all_gather(first_bad.reshape(1)).amin()
        values = torch.cat([means, first_bad.reshape(1)]).tolist()
        self.reset()
        bad = values[-1]
        return StatsReading(dict(zip(names, values[:-1])), None if bad == _NO_STEP else int(bad))

    def state_dict(self) -> dict:
        """The sums since the last read, for a checkpoint between evaluations (reads the device:
        called only when a checkpoint is written). Tensors go to the CPU as float64."""
        return {"sums": {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else float(v)) for k, v in self._sums.items()},
                "counts": dict(self._counts),
                "first_bad": None if self._first_bad is None else self._first_bad.detach().cpu(),
                "first_bad_host": float(self._first_bad_host)}

    def load_state_dict(self, s: dict, device: torch.device) -> None:
        """Continue the sums of :meth:`state_dict` (on ``device``): the same additions as without
        the checkpoint, so a resumed run's means are bit-identical."""
        self._sums = {k: (v.to(device) if isinstance(v, torch.Tensor) else float(v)) for k, v in s["sums"].items()}
        self._counts = {k: int(v) for k, v in s["counts"].items()}
        self._first_bad = None if s["first_bad"] is None else s["first_bad"].to(device)
        self._first_bad_host = float(s["first_bad_host"])

    def local_first_bad_step(self) -> int | None:
        """This worker's divergence flag alone, no collective (for a step that raised on this
        worker only: was the loss already not finite, i.e. a divergence rather than a failure?)."""
        bad = self._first_bad_host
        if self._first_bad is not None:
            bad = min(bad, self._first_bad.item())
        return None if bad == _NO_STEP else int(bad)
