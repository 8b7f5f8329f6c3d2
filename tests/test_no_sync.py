"""The training step never waits for the device (issue 14 point 4).

Every Python conversion of a tensor (``.item()``, ``float()``, ``int()``, ``bool()``,
``.tolist()``, ``.cpu()``, ``.numpy()``) is counted while the engine trains, except inside the
places allowed to read: :func:`algorithms.host.host_values` (host tensors: generator draws,
sampler indices), the once-per-evaluation :meth:`bench.step_stats.StepStats.read`, and the
evaluation itself. On a GPU each counted call would be a host-device synchronisation.
Runs on every base and on one composition per rule, on an image dataset (weak and strong
augmentation) and a vector one.
"""
from __future__ import annotations

import math
import sys

import pytest
import torch

from algorithms import list_algorithms, list_rules
from algorithms.host import host_values
from bench.config import RunConfig, RunEnv
from bench.engine import NullReporter, Run, build_run, train_run
from bench.step_stats import StepStats

CONVERSIONS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
ALLOWED = {host_values.__code__, StepStats.read.__code__, Run.evaluate_all.__code__}

# one composition per rule, on the base its paper uses where it has one
RULE_BASES = {"meta_semi": "fixmatch", "l2rw": "pseudo_label", "meta_grad": "pseudo_label", "l2i_l": "mean_teacher",
              "l2i_o": "pseudo_label"}


class Counter:
    """Counts conversions outside ALLOWED frames, with the first few call sites."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.active = False

    def wrap(self, name: str):
        original = getattr(torch.Tensor, name)
        counter = self

        def counted(t, *args, **kwargs):
            if counter.active and not counter.allowed():
                f = sys._getframe(1)
                counter.calls.append(f"{name} at {f.f_code.co_filename}:{f.f_lineno} ({f.f_code.co_name})")
            return original(t, *args, **kwargs)

        return counted

    @staticmethod
    def allowed() -> bool:
        f = sys._getframe(2)
        while f is not None:
            if f.f_code in ALLOWED:
                return True
            f = f.f_back
        return False


@pytest.fixture
def counter(monkeypatch):
    c = Counter()
    for name in CONVERSIONS:
        monkeypatch.setattr(torch.Tensor, name, c.wrap(name))
    return c


def _cfg(algorithm: str, dataset: str) -> RunConfig:
    network = "mlp" if dataset == "two_circles" else "cnn_small"
    return RunConfig.from_dict(dict(dataset=dataset, algorithm=algorithm, network=network, n_labels=50, steps=6,
                                    eval_every=3, batch_labeled=8, batch_unlabeled=16,
                                    optim={"name": "sgd", "lr": 0.03, "momentum": 0.9}))


METHODS = [a for a in list_algorithms()] + [f"{RULE_BASES[r]}+{r}" for r in list_rules()]


@pytest.mark.parametrize("dataset", ["digits", "two_circles"])
@pytest.mark.parametrize("algorithm", METHODS)
def test_training_steps_read_nothing_from_the_device(algorithm, dataset, counter, tmp_path):
    run = build_run(_cfg(algorithm, dataset).resolved(), RunEnv(str(tmp_path)))
    reads = []
    original_read = StepStats.read

    def read(self, comm):
        reads.append(run.step)
        return original_read(self, comm)

    StepStats.read = read
    try:
        counter.active = True
        run.train(NullReporter())
    finally:
        counter.active = False
        StepStats.read = original_read
    assert run.step == 6 and reads == [3, 6]  # the only reads: one per evaluation
    assert counter.calls == [], "\n".join(counter.calls[:10])


def test_the_counter_sees_a_read_in_the_step(counter, tmp_path, monkeypatch):
    """The check itself: a step that reads its loss is caught."""
    run = build_run(_cfg("supervised", "two_circles").resolved(), RunEnv(str(tmp_path)))
    step = type(run.algo).train_step

    def reading_step(self, batch, i, stepper):
        out = step(self, batch, i, stepper)
        float(out["loss"])
        return out

    monkeypatch.setattr(type(run.algo), "train_step", reading_step)
    counter.active = True
    run.train(NullReporter())
    counter.active = False
    assert len(counter.calls) == 6 and all("__float__" in c and "reading_step" in c for c in counter.calls)


def _reading_every_step(cfg: RunConfig, root: str) -> tuple[list[dict], int | None]:
    """The engine's loop as it was before the device-side statistics: every step's diagnostics
    read with ``float`` and summed in Python, the loss checked at once. Returns the eval rows and
    the first step with a non-finite loss (None if none)."""
    run = build_run(cfg, RunEnv(root))
    sums, counts = {}, {}
    while run.step < cfg.steps:
        run.model.train()
        diag = {k: float(v) for k, v in run.algo.train_step(run.next_batch(), run.step, run.stepper).items()}
        run.eval_ema.update(run.model)
        run.step += 1
        if not math.isfinite(diag["loss"]):
            return run.eval_rows, run.step
        for k, v in diag.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
            run.evaluate_all({k: sums[k] / counts[k] for k in sorted(sums)})
            sums, counts = {}, {}
    return run.eval_rows, None


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "run_id")} for r in rows]


@pytest.mark.parametrize("algorithm", ["vat", "mixmatch", "temporal_ensembling", "fixmatch+meta_semi",
                                       "pseudo_label+meta_grad", "mean_teacher+l2i_l"])
def test_reading_once_per_evaluation_gives_the_same_rows_as_reading_every_step(algorithm, tmp_path):
    cfg = _cfg(algorithm, "digits").resolved()
    expected, bad = _reading_every_step(cfg, str(tmp_path))
    assert bad is None
    got = train_run(cfg, RunEnv(str(tmp_path)), write=False)
    assert got.status == "ok"
    assert _without_timing(got.eval_rows) == _without_timing(expected)  # exactly: the same double additions
    assert any(k.startswith("diag_") for k in expected[0])


def test_a_divergence_found_at_the_evaluation_is_recorded_at_the_step_it_happened(tmp_path):
    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm="supervised", network="mlp", n_labels=50, steps=40,
                                   eval_every=20, batch_labeled=16, batch_unlabeled=32,
                                   optim={"name": "sgd", "lr": 1e6, "momentum": 0.0, "schedule": "constant"})).resolved()
    rows, bad = _reading_every_step(cfg, str(tmp_path))
    assert bad is not None and bad % cfg.eval_every != 0  # in between evaluations: found late
    out = train_run(cfg, RunEnv(str(tmp_path)), write=False)
    assert out.status == "diverged" and out.run_row["steps_done"] == bad
    assert f"not finite at step {bad}" in out.run_row["error_message"]
    assert _without_timing(out.eval_rows) == _without_timing(rows)
