"""Diagnostics: every name an algorithm returns is declared (so it has its results column), and
the recorded values are all-reduced over workers: two gloo workers record what one worker
on the whole batch records, not rank 0's shard."""
from __future__ import annotations

import pytest

from algorithms import list_algorithms, list_compositions
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from results.schema import registry_columns
from tests.gloo import run_workers


def _cfg(name: str, workers: int = 1, steps: int = 2) -> RunConfig:
    return RunConfig.from_dict(dict(dataset="two_circles", algorithm=name, network="mlp", n_labels=50, steps=steps,
                                    eval_every=1, batch_labeled=16, batch_unlabeled=32, workers=workers,
                                    optim={"name": "adam", "lr": 0.01}, hparams=_hp(name)))


def _hp(name: str) -> dict:
    from algorithms import get_algorithm
    import dataclasses

    fields = {f.name for f in dataclasses.fields(get_algorithm(name).Hparams)}
    # Unlabeled terms and the every-k diagnostics from the first steps on.
    values = {"rampup": "none", "threshold": 0.0, "diag_every": 1}
    return {k: v for k, v in values.items() if k in fields}


@pytest.mark.parametrize("name", list_algorithms() + list_compositions())
def test_every_returned_diagnostic_has_a_column(name, tmp_path):
    out = train_run(_cfg(name), RunEnv(str(tmp_path)), write=False)
    assert out.status == "ok", out.run_row["error_message"]
    _, declared = registry_columns()
    returned = {k for r in out.eval_rows for k in r if k.startswith("diag_")}
    assert returned and returned <= set(declared), sorted(returned - set(declared))


# Methods whose diagnostics are continuous in the weights. Sign-based counts (Meta-Semi's
# kept_fraction, L2RW's positive_fraction) are already global, but float reduction-order noise
# between 1 and 2 workers can flip the sign of a near-zero derivative, i.e. one sample in 48.
NAMES = ["pseudo_label", "vat", "mixmatch", "ict", "pseudo_label+l2i_o", "mean_teacher+l2i_l"]


def _two_worker_eval_rows(comm, results_dir: str) -> dict:
    """Worker body: {name: (status, message, eval rows)} of 2-worker runs of every name."""
    out = {}
    for name in NAMES:
        o = train_run(_cfg(name, workers=2, steps=3), RunEnv(results_dir), comm=comm, write=False)
        out[name] = (o.status, o.run_row["error_message"], o.eval_rows)
    return out


def test_diagnostics_are_all_reduced_over_workers(tmp_path):
    parallel, single = run_workers(_two_worker_eval_rows, str(tmp_path), meanwhile=lambda: {
        n: train_run(_cfg(n, steps=3), RunEnv(str(tmp_path)), write=False) for n in NAMES})
    got = {}
    for rank, res in enumerate(parallel):
        for name, (status, message, rows) in res.items():
            assert status == "ok", message
            got[(rank, name)] = rows
    for name in NAMES:
        one = single[name].eval_rows
        for rank in range(2):
            two = got[(rank, name)]
            assert len(one) == len(two)
            for a, b in zip(one, two):
                keys = sorted(k for k in a if k.startswith("diag_"))
                assert keys == sorted(k for k in b if k.startswith("diag_"))
                for k in keys:  # every rank records the global value, equal to one worker's
                    assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (name, rank, k, a["step"])
