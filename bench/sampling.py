"""Index streams for labeled and unlabeled batches: reshuffled every pass, one shared generator."""
from __future__ import annotations

import torch


class EpochSampler:
    """Draws batches of ``batch`` indices from range(n) without replacement within a pass.

    Uses the caller's generator so every worker draws the same global batch; a pass that
    runs out is topped up from the next permutation (so a batch may hold an index twice when
    n < batch, as with tiny labeled sets).
    """

    def __init__(self, n: int, batch: int, generator: torch.Generator) -> None:
        if n <= 0:
            raise ValueError("cannot sample from an empty set")
        self.n, self.batch, self.generator = n, batch, generator
        self._perm = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next(self) -> torch.Tensor:
        """Indices int64 [batch]."""
        parts, need = [], self.batch
        while need > 0:
            if self._pos >= self._perm.numel():
                self._perm = torch.randperm(self.n, generator=self.generator)
                self._pos = 0
            take = self._perm[self._pos:self._pos + need]
            self._pos += take.numel()
            need -= take.numel()
            parts.append(take)
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {"perm": self._perm.clone(), "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self._perm, self._pos = state["perm"].clone(), int(state["pos"])
