"""Index streams for labeled and unlabeled batches (reshuffled every pass, one shared
generator), and the fixed class-balanced test subset of budget-limited suites."""
from __future__ import annotations

import numpy as np
import torch


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` examples of ``labels`` [N], as equal per class as the counts allow
    (regression targets [N, K] have no classes: ``n`` drawn uniformly).

    A function of (labels, n, seed) only: every run and seed of a suite evaluates the same
    examples, so paired differences are not diluted by different subsets. Classes take equal
    shares in class order; what a small class cannot give goes to the others.
    """
    labels = np.asarray(labels)
    if n >= labels.shape[0]:
        return np.arange(labels.shape[0])
    rng = np.random.default_rng(seed)
    if labels.ndim > 1:
        return np.sort(rng.permutation(labels.shape[0])[:n])
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take = np.zeros(len(classes), dtype=int)
    left = n
    while left > 0:
        room = [i for i, p in enumerate(pools) if take[i] < p.shape[0]]
        share = max(1, left // len(room))
        for i in room:
            add = min(share, pools[i].shape[0] - take[i], left)
            take[i] += add
            left -= add
    return np.sort(np.concatenate([p[:k] for p, k in zip(pools, take)]))


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
