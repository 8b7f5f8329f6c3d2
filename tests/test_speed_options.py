"""Speed options that must not move training numbers: channels_last and eval_batch (float rounding only,
recorded with the run, identity unchanged when off), multi-tensor optimizers and EMA (bit for bit against the
per-tensor loops), and the paired timing helpers of bench.usb_compare."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from algorithms.ema import WeightEMA
from algorithms.networks import build_network, set_memory_format
from bench.config import RunConfig, RunEnv
from bench.engine import make_optimizer, train_run
from bench.paired_timing import interleaved_times, median_ratio


def _cfg(**kw):
    base = dict(dataset="digits", algorithm="fixmatch", network="cnn_small_bn", n_labels=50, steps=6, eval_every=3,
                batch_labeled=8, batch_unlabeled=16)
    base.update(kw)
    return RunConfig.from_dict(base)


def test_run_id_ignores_channels_last_when_off():
    # ids computed on main at 28368ef, before the field existed
    assert _cfg().run_id == "5316561c314742ba"
    pinned = {"fixmatch": "d6afb630be767191", "mixmatch": "394e00ad7c88e498", "mean_teacher": "9d80c282ef725eb7"}
    for algo, run_id in pinned.items():
        cfg = RunConfig.from_dict(dict(dataset="cifar10", algorithm=algo, network="wrn28_2", n_labels=250, steps=1000,
                                       batch_labeled=64, batch_unlabeled=448))
        assert cfg.run_id == run_id, algo
        assert dataclasses.replace(cfg, channels_last=True).run_id != run_id


def test_channels_last_run_matches_default_within_float_noise(tmp_path):
    outs = {}
    for cl in (False, True):
        out = train_run(_cfg(channels_last=cl), RunEnv(str(tmp_path / str(cl))))
        assert out.status == "ok", out.run_row["error_message"]
        assert out.run_row["channels_last"] is cl and json.loads(out.run_row["config_json"])["channels_last"] is cl
        outs[cl] = out
    a, b = outs[False], outs[True]
    for k, v in a.model_state.items():
        torch.testing.assert_close(b.model_state[k], v, rtol=1e-4, atol=1e-5)
    for ra, rb in zip(a.eval_rows, b.eval_rows, strict=True):
        assert abs(ra["loss"] - rb["loss"]) < 1e-4 and abs(ra["error"] - rb["error"]) <= 1 / 50


def test_eval_batch_is_in_the_identity_only_off_its_default():
    assert _cfg(eval_batch=1024).run_id == _cfg().run_id == "5316561c314742ba"  # pinned above, before the field
    assert _cfg(eval_batch=128).run_id != _cfg().run_id
    with pytest.raises(Exception, match="eval_batch must be positive"):
        _cfg(eval_batch=0).validate()


def test_eval_batch_moves_evaluations_by_float_rounding_only(tmp_path):
    """Evaluating in chunks of 7 (the test set split into many forwards, the last one short) gives the
    same training and, up to float rounding in the summed losses, the same evaluations as one chunk."""
    outs = {b: train_run(_cfg(eval_batch=b), RunEnv(str(tmp_path / str(b)))) for b in (1024, 7)}
    a, b = outs[1024], outs[7]
    assert a.status == b.status == "ok"
    for k, v in a.model_state.items():
        assert torch.equal(b.model_state[k], v), k  # evaluation never touches training
    for ra, rb in zip(a.eval_rows, b.eval_rows, strict=True):
        assert (ra["split"], ra["model"]) == (rb["split"], rb["model"])
        assert ra["error"] == rb["error"] and abs(ra["loss"] - rb["loss"]) < 1e-5


def test_set_memory_format_converts_conv_weights_only():
    model = set_memory_format(build_network("wrn28_2", (3, 8, 8), 10), True)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(not w.is_contiguous() for w in convs if w.shape[-1] > 1)  # 1x1 kernels: both layouts coincide
    assert model.classifier.weight.is_contiguous()
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    mlp = build_network("mlp", (2,), 3)
    assert set_memory_format(mlp, False) is mlp


@pytest.mark.parametrize("optim", [{"name": "sgd"}, {"name": "adam", "lr": 0.003}, {"name": "adamw", "lr": 0.003}])
def test_make_optimizer_equals_the_per_tensor_loop(optim):
    torch.manual_seed(0)
    model = build_network("cnn_small_bn", (1, 8, 8), 10)
    ref_model = copy.deepcopy(model)
    cfg = _cfg(optim=optim)
    opt, _ = make_optimizer(model, cfg)
    o = cfg.optim
    if o.name == "sgd":
        ref = torch.optim.SGD(ref_model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                              weight_decay=o.weight_decay, foreach=False)
    else:
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        ref = cls(ref_model.parameters(), lr=o.lr, weight_decay=o.weight_decay, foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        for p, q in zip(model.parameters(), ref_model.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)


def test_weight_ema_equals_the_per_tensor_loop():
    torch.manual_seed(0)
    model = build_network("cnn_small_bn", (1, 8, 8), 10)
    ema = WeightEMA(model, 0.99)
    ref = {k: v.clone() for k, v in ema.model.state_dict().items()}
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 1, 8, 8))  # moves the BN statistics (buffers)
        d = ema.current_decay()
        ema.update(model)
        params = dict(model.named_parameters())
        for k, v in model.state_dict().items():
            # the per-tensor loop WeightEMA.update ran before its multi-tensor form
            ref[k] = ref[k].mul_(d).add_(params[k].detach(), alpha=1 - d) if k in params else v.clone()
    for k, v in ema.model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_interleaved_times_rotates_the_order():
    calls = []
    steps = {name: (lambda i, n=name: calls.append((n, i))) for name in "abc"}
    times = interleaved_times(steps, rounds=6, warmup=2)
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6, "c": 6}
    warm, timed = calls[:6], calls[6:]
    assert warm == [(n, i) for i in range(2) for n in "abc"]
    firsts = [timed[3 * r][0] for r in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]  # every contender leads equally often
    assert all(i == 2 + r for r in range(6) for _, i in timed[3 * r:3 * r + 3])


def test_median_ratio_against_a_brute_force_bootstrap():
    rng = np.random.default_rng(3)
    den = rng.uniform(1.0, 2.0, 15)
    num = den * rng.uniform(0.7, 0.9, 15)
    med, lo, hi = median_ratio(list(num), list(den), resamples=500, seed=4)
    ratios = num / den
    assert med == pytest.approx(np.median(ratios))
    draws = np.random.default_rng(4).choice(ratios, size=(500, 15), replace=True)
    boot = [np.median(row) for row in draws]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert lo <= med <= hi and 0.7 <= lo and hi <= 0.9
    with pytest.raises(ValueError):
        median_ratio([1.0], [1.0, 2.0])
