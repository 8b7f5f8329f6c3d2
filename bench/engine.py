"""The run function: one training run from a typed config, with or without Ray.

Flow: data + split -> task (classification or regression, :mod:`bench.run_task`) -> model +
algorithm -> step loop (the algorithm owns its update) -> evaluation of the EMA and raw weights
on validation, test and the labeled training set by the dataset's metric every ``eval_every``
steps -> rows written atomically to the results store by rank 0. Every attempt resumes from the
run's checkpoint in the store and checkpoints every few minutes of training (``bench.resume``).
Ray enters only through the ``reporter`` (metrics) and the communicator
(``algorithms.parallel``). Only validation metrics are reported to the reporter: Ray Tune
never sees the test set.
"""
from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

import datasets
from algorithms import Algorithm, Batch, Comm, HoldoutSpec, Stepper, TrainContext, get_algorithm, make_comm
from algorithms.ema import WeightEMA
from algorithms.hparams import from_dict
from algorithms.networks import build_network, set_memory_format
from datasets.augment import strong_augment_for, weak_augment_for
from results import ResultsDirError, ResultStore, last_k_median
from results.artifacts import write_artifacts

from .config import ConfigError, RunConfig, RunEnv
from .environment import environment_columns
from .evaluate import evaluate
from .optim import make_optimizer
from .resume import Resume
from .run_options import compile_network, set_precision
from .run_row import base_row
from .run_task import task_for
from .sampling import EpochSampler, balanced_subset
from .step_stats import StepStats


class Reporter(Protocol):
    """Where progress goes: Ray Tune / Ray Train, or nowhere (plain calls and tests)."""

    def report(self, metrics: dict) -> None: ...


class NullReporter:
    def report(self, metrics: dict) -> None:
        del metrics


@dataclass
class RunOutcome:
    run_row: dict
    eval_rows: list[dict] = field(default_factory=list)
    model_state: dict | None = None  # this worker's final weights (tests compare workers with them)
    write_error: str = ""  # one line (path and cause) when the run's rows or checkpoint could not be written
    note: str = ""  # how the attempt started: resumed from a checkpoint, rows rewritten from the final one

    @property
    def status(self) -> str:
        return self.run_row["status"]


class Diverged(RuntimeError):
    """The loss or an evaluation became NaN or infinite."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:500]




class Run:
    """State of one run in progress (kept together so checkpoints can save and restore it).

    Built by :func:`build_run`; ``bench.perf`` measures steps of a Run built the same way.
    """

    def __init__(self, cfg: RunConfig, env: RunEnv, comm: Comm, device: torch.device,
                 algorithm: type[Algorithm] | None = None) -> None:
        self.cfg, self.env, self.comm, self.device = cfg, env, comm, device
        data = datasets.load(cfg.dataset, env.data_root, env.download)
        info = data.info
        self.info = info
        algo_cls = algorithm or get_algorithm(cfg.algorithm)
        refused = algo_cls.refuse_task(info.task)
        if refused:
            raise ConfigError(refused)
        n_val = datasets.resolve_n_val(info, cfg.n_labels, cfg.val_protocol, cfg.n_val)
        self.split = datasets.split_for(info, data.y_train, cfg.n_labels, n_val, cfg.split_seed)
        lab = torch.from_numpy(self.split.labeled.copy())
        self.x_l, self.y_l = data.x_train[lab].to(device), data.y_train[lab].to(device)
        val = torch.from_numpy(self.split.val.copy())
        self.x_val, self.y_val = data.x_train[val].to(device), data.y_train[val].to(device)
        self.x_test, self.y_test = data.x_test.to(device), data.y_test.to(device)
        self.task = task_for(info, self.y_l)
        hp = from_dict(algo_cls.Hparams, cfg.hparams, f"{cfg.algorithm} hyperparameter") if algorithm else cfg.typed_hparams()
        if algo_cls.uses_unlabeled:
            x_u = data.x_train[torch.from_numpy(self.split.unlabeled.copy())]
            if data.x_extra_unlabeled is not None:
                x_u = torch.cat([x_u, data.x_extra_unlabeled])
            self.x_u = x_u.to(device)
        else:
            self.x_u = self.x_l[:0]

        torch.manual_seed(cfg.seed)  # same initial weights on every worker
        self.model = set_precision(set_memory_format(build_network(cfg.network, info.input_shape, info.num_outputs)
                                                     .to(device), cfg.channels_last), cfg.precision)
        # One generator for batches, augmentation and MixUp, seeded alike on every worker.
        self.generator = torch.Generator().manual_seed(cfg.seed * 7919 + 1)
        ctx = TrainContext(info.num_outputs, cfg.steps, comm, weak_augment_for(cfg.dataset), self.generator,
                           num_unlabeled=self.x_u.shape[0], strong_augment=strong_augment_for(cfg.dataset),
                           task=self.task)
        self.algo = algo_cls(self.model, hp, ctx)
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg)
        self.stepper = Stepper(self.model, self.optimizer, self.scheduler, comm)
        self.eval_ema = WeightEMA(self.model, cfg.ema_decay)
        compile_network(self.model, cfg.compile)  # after every copy of it (teachers, EMA) was taken
        self.sample_l = EpochSampler(self.x_l.shape[0], cfg.batch_labeled, self.generator)
        self.sample_u = EpochSampler(max(1, self.x_u.shape[0]), cfg.batch_unlabeled, self.generator) if algo_cls.uses_unlabeled else None
        self.sample_h = self._holdout_sampler(algo_cls.holdout_spec(hp))
        self.step = 0
        self.eval_rows: list[dict] = []
        self.train_seconds = 0.0
        # Diagnostics summed since the last evaluation, on the device (checkpointed: a resume
        # between evaluations is exact).
        self.stats = StepStats()

    def _holdout_sampler(self, spec: HoldoutSpec) -> EpochSampler | None:
        """A sampler of labeled hold-out batches for meta rules that ask for them.

        ``joint``: hold-out batches come from the labeled training set itself (L2I's default,
        no extra labels). ``separate``: a class-balanced (regression: uniform) part of the labeled set (a function of
        the split seed) becomes the hold-out set and leaves C_T's labeled set (001 Table 6).
        """
        self.holdout = spec
        size = spec.size
        if size <= 0:
            self.x_h = self.y_h = None
            return None
        if spec.mode == "separate":
            train, hold = datasets.holdout_split(self.y_l.cpu().numpy(), spec.fraction, self.cfg.split_seed)
            train_t, hold_t = torch.from_numpy(train).to(self.x_l.device), torch.from_numpy(hold).to(self.x_l.device)
            self.x_h, self.y_h = self.x_l[hold_t], self.y_l[hold_t]
            self.x_l, self.y_l = self.x_l[train_t], self.y_l[train_t]
            self.sample_l = EpochSampler(self.x_l.shape[0], self.cfg.batch_labeled, self.generator)
        else:
            self.x_h, self.y_h = self.x_l, self.y_l
        return EpochSampler(self.x_h.shape[0], size, self.generator)

    def state_dict(self) -> dict:
        return {
            "step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "eval_ema": self.eval_ema.state_dict(),
            "algo": self.algo.state_dict(), "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(), "sample_l": self.sample_l.state_dict(),
            "sample_u": self.sample_u.state_dict() if self.sample_u else None,
            "sample_h": self.sample_h.state_dict() if self.sample_h else None,
            "eval_rows": self.eval_rows, "train_seconds": self.train_seconds, "step_stats": self.stats.state_dict(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def load_state_dict(self, s: dict) -> None:
        self.step = int(s["step"])
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.eval_ema.load_state_dict(s["eval_ema"])
        self.algo.load_state_dict(s["algo"])
        self.generator.set_state(s["generator"])
        torch.set_rng_state(s["torch_rng"])
        self.sample_l.load_state_dict(s["sample_l"])
        if self.sample_u is not None and s["sample_u"] is not None:
            self.sample_u.load_state_dict(s["sample_u"])
        if self.sample_h is not None and s.get("sample_h") is not None:
            self.sample_h.load_state_dict(s["sample_h"])
        self.eval_rows = list(s["eval_rows"])
        self.train_seconds = float(s["train_seconds"])
        self.stats.load_state_dict(s["step_stats"], self.device)
        if s.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(s["cuda_rng"], self.device)

    def next_batch(self) -> Batch:
        i = self.sample_l.next()
        if self.sample_u is None:
            return Batch(self.x_l[i], self.y_l[i], self.x_u)
        j = self.sample_u.next()
        if self.sample_h is None:
            return Batch(self.x_l[i], self.y_l[i], self.x_u[j], j)
        h = self.sample_h.next()
        return Batch(self.x_l[i], self.y_l[i], self.x_u[j], j, self.x_h[h], self.y_h[h])

    def evaluate_all(self, diagnostics: dict[str, float]) -> dict:
        """Evaluate EMA and raw weights, and the algorithm's extra models (``eval_models``, e.g.
        "swa"), on val, test and train by the dataset's metric (``error`` holds it, ``metric`` names
        it); append rows; return Tune-safe metrics (``val_error_<model>``).

        ``train`` is the labeled training set the supervised loss sees (n_labels examples, fewer
        when a rule holds some out as a separate hold-out set), evaluated without augmentation:
        the training-error curves of paper 003 Fig. 1. Each row carries ``elapsed_s``, the
        training seconds so far (step time only, evaluations excluded; kept across resumes).
        """
        metrics = {}
        models = [("ema", self.eval_ema.model), ("raw", self.model), *self.algo.eval_models().items()]
        splits = (("val", self.x_val, self.y_val), ("test", *self.test_set()), ("train", self.x_l, self.y_l))
        for model_name, model in models:
            for split, x, y in splits:
                err, loss = evaluate(model, x, y, self.comm, self.task, self.cfg.eval_batch)
                if not (math.isfinite(loss) and math.isfinite(err)):
                    raise Diverged(f"{model_name} {split} loss is not finite at step {self.step}")
                row = {"run_id": "", "step": self.step, "split": split, "model": model_name, "error": err, "loss": loss,
                       "elapsed_s": self.train_seconds, "metric": self.info.metric}
                row.update({f"diag_{k}": float(v) for k, v in diagnostics.items()})
                self.eval_rows.append(row)
                if split == "val":
                    metrics[f"val_error_{model_name}"] = err
                    metrics[f"val_loss_{model_name}"] = loss
        return metrics


    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test examples evaluated: all, or the config's fixed ``n_test`` subset."""
        if self.cfg.n_test is None or self.cfg.n_test >= self.y_test.shape[0]:
            return self.x_test, self.y_test
        if getattr(self, "_test_index", None) is None:
            self._test_index = torch.from_numpy(balanced_subset(self.y_test.cpu().numpy(), self.cfg.n_test)).to(
                self.x_test.device)
        return self.x_test[self._test_index], self.y_test[self._test_index]

    def train(self, reporter: Reporter, resume: Resume | None = None) -> None:
        """Steps from ``self.step`` to the budget, evaluating every ``eval_every`` steps. The steps
        never read a device value: diagnostics and the finiteness of the loss are read once per
        evaluation (:mod:`bench.step_stats`), so a divergence is raised up to ``eval_every`` steps
        late, naming the step where it happened. With ``resume``, a checkpoint is saved about every
        ``checkpoint_every_min`` minutes of training, at a step fixed in advance at the start and at
        each evaluation from the measured speed (so workers agree without a collective in the step
        loop), and at the last step."""
        cfg = self.cfg
        stats = self.stats
        next_ckpt = resume.next_checkpoint_step(self.step, self.train_seconds) if resume is not None else None
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            try:
                self.model.train()
                stats.add(self.algo.train_step(self.next_batch(), self.step, self.stepper), self.step + 1)
                self.eval_ema.update(self.model)
            except Exception as e:  # non-finite weights can make a later step raise: that run diverged
                bad = stats.local_first_bad_step()
                if bad is not None:
                    raise Diverged(f"training loss is not finite at step {bad}") from e
                raise
            self.step += 1
            due = self.step % cfg.eval_every == 0 or self.step == cfg.steps
            reading = stats.read(self.comm) if due else None  # waits for the device: counted as training time
            self.train_seconds += time.perf_counter() - t0
            if reading is None:
                if self.step == next_ckpt:
                    resume.save(self)
                    next_ckpt = resume.next_checkpoint_step(self.step, self.train_seconds)
                continue
            if reading.first_bad_step is not None:
                self.step = reading.first_bad_step
                raise Diverged(f"training loss is not finite at step {self.step} (found at the evaluation after it)")
            metrics = self.evaluate_all(reading.means)
            metrics.update(steps_done=self.step, steps_per_s=self.step / max(1e-9, self.train_seconds),
                           loss=reading.means.get("loss", float("nan")))
            reporter.report(metrics)
            if resume is not None:
                if self.step == next_ckpt or self.step == cfg.steps:
                    resume.save(self)
                next_ckpt = resume.next_checkpoint_step(self.step, self.train_seconds, next_ckpt)

    def worker_divergence(self) -> float:
        """Largest difference between workers' parameter fingerprints (0.0 when in sync).

        Fingerprint: sum, sum of squares and a fixed random projection of all weights, in
        float64; identical weights give identical fingerprints on every worker.
        """
        if self.comm.world_size == 1:
            return 0.0
        flat = torch.cat([p.detach().double().flatten() for p in self.model.parameters()])
        proj = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(flat.device)
        fp = torch.stack([flat.sum(), (flat * flat).sum(), (flat * proj).sum()])[None]
        everyone = self.comm.all_gather(fp)
        return float((everyone - everyone[0]).abs().max())

    def summary_row(self, status: str, error_message: str, wall: float) -> dict:
        """The run's row. ``test_error``/``val_error`` (median of the last ``eval_last_k`` EMA
        evaluations) exist only for an ok run: a failed or diverged run's partial errors stay
        in its eval rows and never reach the headline columns (NaN here, null in Parquet)."""
        cfg = self.cfg
        ema_test = [r["error"] for r in self.eval_rows if r["model"] == "ema" and r["split"] == "test"]
        ema_val = [r["error"] for r in self.eval_rows if r["model"] == "ema" and r["split"] == "val"]
        ok = status == "ok"
        return {
            "split_hash": self.split.split_hash, "steps_done": self.step, "status": status,
            "error_message": error_message,
            "test_error": last_k_median(ema_test, cfg.eval_last_k) if ok else float("nan"),
            "val_error": last_k_median(ema_val, cfg.eval_last_k) if ok else float("nan"),
            "wall_time_s": wall, "steps_per_s": self.step / max(1e-9, self.train_seconds),
            "n_val": int(self.split.val.shape[0]), "n_unlabeled": int(self.x_u.shape[0]), "metric": self.info.metric,
            "worker_param_divergence": self.worker_divergence() if status == "ok" else float("nan"),
        }


def build_run(cfg: RunConfig, env: RunEnv, comm: Comm | None = None, device: torch.device | str = "cpu",
              algorithm: type[Algorithm] | None = None) -> Run:
    """A run ready for its first step: data and split on ``device``, model, algorithm (the
    registered ``cfg.algorithm``, or ``algorithm`` for a class the registry does not know),
    optimizer and schedule, stepper, evaluation EMA and batch samplers."""
    return Run(cfg, env, comm or make_comm(), torch.device(device), algorithm)


def train_run(cfg: RunConfig, env: RunEnv, reporter: Reporter | None = None, comm: Comm | None = None,
              device: torch.device | str | None = None, write: bool = True,
              lost_peer: Callable[[BaseException], bool] | None = None) -> RunOutcome:
    """Train one run to its budget and (on rank 0) write its rows to ``env.results_dir``.

    The attempt starts from the run's checkpoint in the store, if it has a usable one, and
    checkpoints as it goes (``bench.resume``; not with ``write=False``). Never raises for a
    failing run: exceptions become ``status="failed"`` with a one-line message, NaN losses
    ``status="diverged"``; both are recorded so a suite goes on. The exception: an error for
    which ``lost_peer`` is true (a worker of the group died) is raised, so that Ray restarts
    the worker group from the checkpoint. Returns the run row and the eval rows (one per
    step x split x model).
    """
    cfg = cfg.resolved()
    run_id = cfg.run_id
    reporter = reporter or NullReporter()
    comm = comm or make_comm()
    device = torch.device(device) if device is not None else torch.device("cpu")
    torch.set_flush_denormal(True)  # finite-difference meta passes hit denormals: 10x slower without this
    row = base_row(cfg, run_id)
    row.update(environment_columns(device, cfg.workers))
    run = None
    write_error = ""
    artifacts = None  # the figures' outputs of the final model (RunConfig.artifacts; rank 0)
    resume = Resume(cfg, env, comm) if write else None
    try:
        run = build_run(cfg, env, comm, device)
        state = resume.start() if resume is not None else None
        if state is not None:
            run.load_state_dict(state)
        run.train(reporter, resume)
        if cfg.artifacts and comm.rank == 0:
            from .figure_artifacts import compute_artifacts

            artifacts = compute_artifacts(run, cfg.artifacts)
        status, message = "ok", ""
    except Diverged as e:
        status, message = "diverged", _one_line(e)
    except ResultsDirError as e:  # a checkpoint could not be saved: the storage failed, not the method
        status, message, write_error = "failed", _one_line(e), str(e)
    except Exception as e:  # a failed run is a result too: record it and let the suite go on
        if lost_peer is not None and lost_peer(e):
            raise
        status, message = "failed", _one_line(e)
    wall = resume.wall() if resume is not None else 0.0
    eval_rows: list[dict] = []
    model_state = None
    if run is not None:
        model_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
        row.update(run.summary_row(status, message, wall))
        eval_rows = [dict(r, run_id=run_id) for r in run.eval_rows]
    else:
        row.update(status=status, error_message=message, wall_time_s=wall)
    if resume is not None:
        row.update(resume.columns())
    row["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if write and comm.rank == 0:
        try:
            store = ResultStore(env.results_dir)
            if artifacts is not None:  # before the runs file, which vouches for a finished run
                write_artifacts(store, run_id, artifacts)
            store.write_run(row, eval_rows)
        except ResultsDirError as e:  # nothing recorded: the driver is told, a re-run redoes the run
            write_error = str(e)
    if resume is not None:
        resume.finish(status, recorded=not write_error)
    return RunOutcome(row, eval_rows, model_state, write_error, resume.note if resume is not None else "")
