"""GPU-hour estimates for planned runs, before any GPU is used: an ESTIMATE, not a measurement.

No GPU was available where this table was made, so it is a FLOP-count scaling:

    seconds per step = 3 x F(network, input) x (b_l + b_u + b_h) x m(rule) / R

- F: forward FLOPs per image (2 per multiply-add), counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on one CPU forward pass (:data:`FORWARD_GFLOPS`;
  tests recount it). Dropout and input-noise variants count as their plain network.
- 3: a backward pass costs about twice a forward pass.
- b_l + b_u + b_h: the labeled, unlabeled and hold-out images of one step. Extra views (MixMatch's
  K = 2, FixMatch's weak + strong view, teachers' forward passes) are not modelled: for those
  methods the estimate is low by up to about 2x.
- m: the meta rules' cost relative to their base, assumed: 1.6x first order, 4x exact second
  order (``bench.perf`` measures 1.3-3.2x and 2.1-4.5x on digits, the dearer on the cheap bases
  whose passes the rule adds to; docs/benchmarks.md), not measurements of these networks.
- R = :data:`EFFECTIVE_TFLOPS`, an assumed sustained training throughput of one current
  data-centre GPU on these small networks (a fraction of the fp32 / TF32 peak: small convolutions
  are launch- and bandwidth-bound).

Evaluation passes are not counted. Replace the estimate with measured steps/s (``python -m
bench.perf --device cuda``) where a GPU is available.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

#: assumed effective training throughput of one GPU, TFLOP/s (an assumption, see the module docstring)
EFFECTIVE_TFLOPS = 10.0
#: (network, input H) -> forward GFLOPs per image at 10 classes, counted with FlopCounterMode
FORWARD_GFLOPS: dict[tuple[str, int], float] = {
    ("cnn13", 32): 1.46276608,
    ("wrn28_2", 32): 0.428706304,
    ("wrn28_2", 96): 3.858336256,
}
#: variants whose extra layers (dropout, input noise) add no counted FLOPs
_SAME_AS = {"cnn13_dropout": "cnn13", "cnn13_dropout2d": "cnn13", "cnn13_noise_dropout": "cnn13"}
FIRST_ORDER, SECOND_ORDER = 1.6, 4.0
SOURCE = (f"estimate: FLOP-count scaling (forward FLOPs counted on CPU x 3 x images per step, meta rules x{FIRST_ORDER:g} "
          f"first order / x{SECOND_ORDER:g} exact second order, assumed) at an assumed "
          f"{EFFECTIVE_TFLOPS:g} TFLOP/s per GPU; no GPU measurement")


def count_forward_gflops(network: str, input_shape: tuple[int, ...], num_classes: int = 10) -> float:
    """Forward GFLOPs per image of ``network`` on ``input_shape`` (counted on CPU, eval mode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from algorithms.networks import build_network

    model = build_network(network, input_shape, num_classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() / 1e9


@lru_cache(maxsize=None)
def forward_gflops(network: str, input_shape: tuple[int, ...]) -> float:
    """From :data:`FORWARD_GFLOPS`, else counted now (small networks of the toy suites)."""
    key = (_SAME_AS.get(network, network), input_shape[-1] if len(input_shape) == 3 else 0)
    if key in FORWARD_GFLOPS:
        return FORWARD_GFLOPS[key]
    return count_forward_gflops(network, input_shape)


def rule_factor(algorithm: str, hparams: dict) -> float:
    """m(rule): 1 for a base; the second-order factor for exact L2I / exact meta-gradient variants
    (``hparams`` complete, e.g. ``dataclasses.asdict(cfg.typed_hparams())``), else first order."""
    if "+" not in algorithm:
        return 1.0
    from algorithms import get_algorithm
    from algorithms.hparams import order_of

    rule = get_algorithm(algorithm).rule_class  # the order comes from the rule's method fields
    order = order_of(rule.Hparams, {k: v for k, v in hparams.items() if k in rule.Hparams.__dataclass_fields__})
    return SECOND_ORDER if (order or rule.meta_order) == "second" else FIRST_ORDER


def step_seconds(cfg) -> float:
    """Estimated GPU seconds of one training step of RunConfig ``cfg``."""
    import datasets

    shape = tuple(datasets.get_info(cfg.dataset).input_shape)
    hp = dataclasses.asdict(cfg.typed_hparams())  # defaults filled in (hold-out batch, variant)
    images = cfg.batch_labeled + cfg.batch_unlabeled + int(hp.get("holdout_batch", 0) or 0)
    flops = 3 * forward_gflops(cfg.network, shape) * 1e9 * images * rule_factor(cfg.algorithm, hp)
    return flops / (EFFECTIVE_TFLOPS * 1e12)


def gpu_hours(cfg) -> float:
    """Estimated GPU-hours of RunConfig ``cfg`` (all its workers together)."""
    return cfg.steps * step_seconds(cfg) / 3600
