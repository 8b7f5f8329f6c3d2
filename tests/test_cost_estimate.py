"""The GPU-hour estimate: its FLOP table is recounted, its formula checked by hand."""
from __future__ import annotations

import dataclasses

import pytest

from bench import cost_estimate as ce
from bench.config import RunConfig


def test_flop_counter_agrees_with_a_hand_count():
    # 2-4-2 MLP: Linear(2, 4) and Linear(4, 2), 2 FLOPs per multiply-add: 2 * (2*4 + 4*2) = 32 per image
    assert ce.count_forward_gflops("mlp_2_4_2", (2,), num_classes=2) * 1e9 == pytest.approx(32)


@pytest.mark.parametrize("key", sorted(ce.FORWARD_GFLOPS))
def test_the_flop_table_is_what_the_counter_gives(key):
    network, hw = key
    assert ce.count_forward_gflops(network, (3, hw, hw)) == pytest.approx(ce.FORWARD_GFLOPS[key], rel=1e-9)


def test_noise_and_dropout_variants_cost_their_plain_network():
    base = ce.count_forward_gflops("cnn13", (3, 32, 32))
    for v in ("cnn13_dropout", "cnn13_dropout2d", "cnn13_noise_dropout"):
        assert ce.count_forward_gflops(v, (3, 32, 32)) == pytest.approx(base, rel=1e-9)
        assert ce.forward_gflops(v, (3, 32, 32)) == ce.FORWARD_GFLOPS[("cnn13", 32)]


def test_step_time_is_the_stated_formula():
    cfg = RunConfig.from_dict(dict(dataset="cifar10", algorithm="mean_teacher+l2i_o", network="wrn28_2", n_labels=250,
                                   steps=1000, batch_labeled=64, batch_unlabeled=64,
                                   hparams={"holdout_batch": 64, "meta_method": "approx"}))
    f = ce.FORWARD_GFLOPS[("wrn28_2", 32)] * 1e9
    assert ce.step_seconds(cfg) == pytest.approx(3 * f * (64 + 64 + 64) * ce.FIRST_ORDER / (ce.EFFECTIVE_TFLOPS * 1e12))
    exact = dataclasses.replace(cfg, hparams={"holdout_batch": 64, "meta_method": "exact"})
    assert ce.step_seconds(exact) / ce.step_seconds(cfg) == pytest.approx(ce.SECOND_ORDER / ce.FIRST_ORDER)
    base = dataclasses.replace(cfg, algorithm="mean_teacher", hparams={})
    assert ce.step_seconds(base) == pytest.approx(3 * f * 128 / (ce.EFFECTIVE_TFLOPS * 1e12))
    assert ce.gpu_hours(base) == pytest.approx(1000 * ce.step_seconds(base) / 3600)
    assert "estimate" in ce.SOURCE and "no GPU measurement" in ce.SOURCE
