"""--precision bf16 and --compile: recorded with the run, in its identity only when set, and
equivalent to the default fp32 eager run within stated tolerances on short CPU runs."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from algorithms.networks import build_network
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from bench.run_options import set_precision


def _cfg(**kw) -> RunConfig:
    base = dict(dataset="digits", algorithm="fixmatch", network="cnn_small", n_labels=50, steps=20, eval_every=10,
                batch_labeled=16, batch_unlabeled=32, optim={"name": "sgd", "lr": 0.03, "momentum": 0.9})
    base.update(kw)
    return RunConfig.from_dict(base)


def test_defaults_keep_the_run_id_and_each_option_changes_it():
    cfg = _cfg()
    # computed on main before the options existed (the same config, the same hash)
    assert cfg.run_id == "0e51a99e8d076e10"
    assert dataclasses.replace(cfg, precision="fp32", compile=False).run_id == cfg.run_id
    ids = {cfg.run_id, _cfg(precision="bf16").run_id, _cfg(compile=True).run_id, _cfg(precision="bf16", compile=True).run_id}
    assert len(ids) == 4
    with pytest.raises(Exception, match="precision"):
        _cfg(precision="fp16")


def test_bf16_forward_is_close_to_fp32_and_returns_float32():
    torch.manual_seed(0)
    net = build_network("cnn_small", (1, 8, 8), 10)
    x = torch.randn(64, 1, 8, 8)
    ref = net(x)
    set_precision(net, "bf16")
    got = net(x)
    assert got.dtype == torch.float32 and all(p.dtype == torch.float32 for p in net.parameters())
    # bf16 keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4%) per operand; a few layers of it
    assert (got - ref).abs().max() <= 0.05 * ref.abs().max()
    assert torch.equal(got.argmax(1)[ref.softmax(1).max(1).values > 0.5], ref.argmax(1)[ref.softmax(1).max(1).values > 0.5])
    import copy

    assert copy.deepcopy(net).autocast_dtype == torch.bfloat16  # teachers copied from it compute alike


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["fixmatch", "fixmatch+meta_semi"])
def test_a_short_bf16_run_matches_fp32_within_tolerance(algorithm, tmp_path):
    """20 SGD steps: the evaluation losses within 5% and errors within 0.05 of the fp32 run's
    (measured: <1% and <=0.01 here; bf16 rounding, not a different computation)."""
    runs = {p: train_run(_cfg(algorithm=algorithm, precision=p), RunEnv(str(tmp_path)), write=p == "bf16")
            for p in ("fp32", "bf16")}
    assert all(o.status == "ok" for o in runs.values())
    assert runs["bf16"].run_row["precision"] == "bf16" and runs["fp32"].run_row["precision"] == "fp32"
    rows = {p: {(r["step"], r["split"], r["model"]): r for r in o.eval_rows} for p, o in runs.items()}
    assert rows["fp32"].keys() == rows["bf16"].keys()
    for key, ref in rows["fp32"].items():
        got = rows["bf16"][key]
        assert got["loss"] == pytest.approx(ref["loss"], rel=0.05), key
        assert abs(got["error"] - ref["error"]) <= 0.05, key
    from results import ResultStore

    stored = ResultStore(tmp_path).load_runs()
    assert list(stored["precision"]) == ["bf16"] and list(stored["compile"]) == [False]


@pytest.mark.slow
def test_a_compiled_network_trains_as_the_eager_one(tmp_path):
    """torch.compile on CPU (inductor): the same run up to float reassociation in the fused kernels."""
    cfg = _cfg(algorithm="pseudo_label", network="mlp", dataset="two_circles", steps=6, eval_every=3)
    eager = train_run(cfg, RunEnv(str(tmp_path)), write=False)
    compiled = train_run(dataclasses.replace(cfg, compile=True), RunEnv(str(tmp_path)), write=False)
    assert compiled.status == "ok", compiled.run_row["error_message"]
    assert compiled.run_row["compile"] is True and eager.run_row["compile"] is False
    for a, b in zip(eager.eval_rows, compiled.eval_rows):
        assert (a["step"], a["split"], a["model"]) == (b["step"], b["split"], b["model"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6) and abs(b["error"] - a["error"]) <= 0.02
    for k, v in eager.model_state.items():
        assert torch.allclose(compiled.model_state[k], v, rtol=1e-4, atol=1e-5), k
