"""Typed run configuration. A run's identity (``run_id``) is a hash of its full config.

Paths and resources (data root, results directory, GPUs) are not part of the identity:
they do not change what a run computes. Workers are: the global batch is fixed, but
BatchNorm statistics are per worker, so results can differ with the worker count.
A renamed hyperparameter (its class's ``renamed`` map) is hashed under its first name, so
renaming an option never changes a run id (:func:`identity_hparams`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from algorithms import get_algorithm, parse_hparams
from algorithms.hparams import ConfigError, from_dict, optional_in_identity, renamed_keys, require


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule. ``schedule`` (after ``warmup_steps`` of linear
    warm-up): ``cosine`` annealing to 0 over the run, ``constant``, or ``step``: the lr is
    multiplied by ``gamma`` at each of ``milestones`` (absolute step numbers, e.g. 300000,
    350000 for x0.1 twice as Meta-Gradient SSL's code). ``adamw`` decays weights by
    ``w <- w - lr * weight_decay * w`` besides Adam, as MixMatch's code does."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        # JSON and dict configs give lists; the config stays hashable and compares equal either way.
        if not isinstance(self.milestones, tuple):
            object.__setattr__(self, "milestones", tuple(self.milestones))

    def validate(self) -> None:
        require(self.lr > 0, "optimizer lr must be > 0")
        require(self.weight_decay >= 0, "optimizer weight_decay must be >= 0")
        require(self.warmup_steps >= 0, "optimizer warmup_steps must be >= 0")
        require(all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in self.milestones),
                f"optimizer milestones must be positive step numbers, got {list(self.milestones)}")
        require(list(self.milestones) == sorted(set(self.milestones)),
                f"optimizer milestones must be increasing, got {list(self.milestones)}")
        require(0 < self.gamma <= 1, f"optimizer gamma must be in (0, 1], got {self.gamma}")
        require(self.schedule == "step" or not self.milestones,
                f"optimizer milestones need schedule 'step', not {self.schedule!r}")
        require(self.schedule != "step" or bool(self.milestones), "optimizer schedule 'step' needs milestones")


#: OptimConfig fields added after run ids were first published: left out of the identity while
#: at these defaults, so every config that existed before them keeps its run id.
_IDENTITY_OPTIONAL = {"milestones": (), "gamma": 0.1}
#: the same for RunConfig's own later fields
_RUN_IDENTITY_OPTIONAL = {"n_test": None, "precision": "fp32", "compile": False, "channels_last": False,
                          "eval_batch": 1024}
#: RunConfig fields that never enter the identity: what a run writes beside its rows, not what it computes
_NOT_IDENTITY = ("artifacts",)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run.

    Batch sizes are *global* (the protocol's); with W workers each computes on 1/W of them.
    ``n_val`` None means: resolved from ``val_protocol`` ("scarce": as many as the labels).
    ``n_test`` None means the whole test set; a number evaluates a fixed class-balanced subset
    of that size (the same for every run, :func:`bench.sampling.balanced_subset`), a budget
    deviation that suites record in ``protocol_notes``.
    ``ema_decay`` is the evaluation EMA of the weights (all methods are evaluated on it and
    on the raw weights). ``hparams`` are the algorithm's own (see ``algorithms``).
    ``precision`` (``fp32`` / ``bf16`` autocast of the network's forward) and ``compile``
    (``torch.compile`` of the network) change how the network computes (``bench.run_options``);
    part of the identity when set, left out of it at their defaults.
    ``channels_last``: the network's 4-d weights (hence its activations) in channels-last
    memory format (NHWC), a speed option for convolutional networks (oneDNN on CPU, tensor
    cores on GPUs; ``docs/performance.md``): the same network and arithmetic up to float
    rounding (another summation order in the convolutions), so it is part of the identity when set (left out of it when off).
    ``eval_batch``: examples per forward when evaluating (a speed option: TCDCN on one CPU thread
    evaluates twice as fast in chunks of 128 as of 1,024; per-example outputs equal up to float
    rounding); part of the identity when it differs from 1,024.
    ``artifacts``: what the final EMA model writes to ``artifacts/<run_id>.parquet`` besides
    the rows (``results.artifacts.ARTIFACT_KINDS``: decision-grid predictions, penultimate
    features, landmark predictions); an output, so never part of the run id.
    """

    dataset: str
    algorithm: str
    network: str
    n_labels: int
    steps: int
    seed: int = 0
    split_seed: int = 0
    eval_every: int = 100
    eval_last_k: int = 20
    batch_labeled: int = 32
    batch_unlabeled: int = 96
    val_protocol: Literal["scarce", "paper"] = "scarce"
    n_val: int | None = None
    n_test: int | None = None
    ema_decay: float = 0.999
    optim: OptimConfig = field(default_factory=OptimConfig)
    hparams: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    channels_last: bool = False
    eval_batch: int = 1024
    suite: str = "custom"
    preset: str = ""
    protocol_notes: str = ""
    artifacts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # JSON and Tune configs give lists; the config stays hashable and compares equal either way.
        if not isinstance(self.artifacts, tuple):
            object.__setattr__(self, "artifacts", tuple(self.artifacts))

    def validate(self) -> None:
        from results.artifacts import ARTIFACT_KINDS

        require(all(a in ARTIFACT_KINDS for a in self.artifacts),
                f"unknown artifacts {[a for a in self.artifacts if a not in ARTIFACT_KINDS]} "
                f"(valid: {', '.join(ARTIFACT_KINDS)})")
        require(self.steps > 0, f"steps must be positive, got {self.steps}")
        require(self.eval_every > 0, f"eval_every must be positive, got {self.eval_every}")
        require(self.eval_last_k > 0, "eval_last_k must be positive")
        require(self.n_test is None or self.n_test > 0, f"n_test must be positive, got {self.n_test}")
        require(self.eval_batch > 0, f"eval_batch must be positive, got {self.eval_batch}")
        require(self.seed >= 0 and self.split_seed >= 0, "seeds must be non-negative")
        require(self.workers >= 1, f"workers must be at least 1, got {self.workers}")
        require(self.batch_labeled > 0 and self.batch_unlabeled > 0, "batch sizes must be positive")
        for what, b in (("batch_labeled", self.batch_labeled), ("batch_unlabeled", self.batch_unlabeled)):
            require(b % self.workers == 0, f"{what}={b} is not divisible by {self.workers} workers (batches are global)")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        holdout = get_algorithm(self.algorithm).holdout_spec(self.typed_hparams()).size
        require(holdout % self.workers == 0,
                f"hold-out batch {holdout} is not divisible by {self.workers} workers (batches are global)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build and validate from a plain dict (unknown keys rejected, hparams typed)."""
        data = dict(data)
        optim = data.pop("optim", None)
        cfg = from_dict(cls, data, "run config key")
        optim_cfg = optim if isinstance(optim, OptimConfig) else from_dict(OptimConfig, optim, "optimizer key")
        return dataclasses.replace(cfg, optim=optim_cfg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def typed_hparams(self):
        """The algorithm's hyperparameter dataclass (defaults filled in)."""
        return parse_hparams(self.algorithm, self.hparams)

    def resolved(self) -> "RunConfig":
        """The same config with hyperparameters completed by their defaults, so that an
        explicit default and an omitted key give the same identity."""
        full = dataclasses.asdict(self.typed_hparams())
        return dataclasses.replace(self, hparams=full)

    @property
    def run_id(self) -> str:
        """16 hex chars of sha256 over the resolved config (sorted JSON)."""
        data = self.resolved().to_dict()
        data["hparams"] = identity_hparams(self.algorithm, data["hparams"])
        for key, default in _IDENTITY_OPTIONAL.items():
            if data["optim"][key] == default:
                del data["optim"][key]
        for key, default in _RUN_IDENTITY_OPTIONAL.items():
            if data[key] == default:
                del data[key]
        for key in _NOT_IDENTITY:
            del data[key]
        blob = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def identity_hparams(algorithm: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` spelled as identities hash them: each renamed option under its old name, and the
    options the algorithm lists in ``optional_in_identity`` left out at their defaults."""
    cls = get_algorithm(algorithm).Hparams
    first_name = {new: old for old, new in renamed_keys(cls).items()}
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    skip = {k for k in optional_in_identity(cls) if k in hparams and k in defaults and hparams[k] == defaults[k]}
    return {first_name.get(k, k): v for k, v in hparams.items() if k not in skip}


@dataclass(frozen=True)
class RunEnv:
    """Where a run reads and writes, and on what; not part of its identity."""

    results_dir: str
    data_root: str | None = None
    download: bool = False
    gpus_per_worker: float = 0.0
    #: a checkpoint after this many minutes of training (and at the last step); 0: after every step
    checkpoint_every_min: float = 10.0
    #: keep a finished run's checkpoint (by default it is deleted once the run's rows are written)
    keep_checkpoints: bool = False
    #: restarts of a trial or a Ray Train worker group after a lost worker or node (bench.ray_launch)
    max_failures: int = 3


__all__ = ["ConfigError", "OptimConfig", "RunConfig", "RunEnv", "identity_hparams"]
