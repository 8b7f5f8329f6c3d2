"""Network registry for the benchmark.

Public API::

    NETWORKS: dict[str, NetworkSpec]
    list_networks() -> list[str]
    build_network(name, input_shape, num_classes) -> nn.Module
    check_network(name, input_shape) -> None
    count_parameters(model) -> int
    set_memory_format(model, channels_last) -> nn.Module

``input_shape`` excludes the batch dimension: ``(D,)`` for vectors,
``(C, H, W)`` for images.  Every built network exposes
``features(x) -> [B, F]``, ``classifier: nn.Linear`` and
``forward(x) = classifier(features(x))`` (logits ``[B, num_classes]``); see
:mod:`algorithms.networks.base`.

Registered networks (``python -m algorithms.networks`` prints parameter
counts):

=============== ============== ===================================================
name            natural input  what
=============== ============== ===================================================
``mlp_2_4_2``   (2,)           2-4-2 toy net of Learning to Impute (paper 000 A.1)
``mlp``         (2,)           D-64-64-C MLP, LeakyReLU 0.1 (toy baseline)
``cnn_small``   (1, 28, 28)    small CNN, no BN/dropout (digits 1x8x8, F-MNIST)
``cnn_small_bn`` (1, 28, 28)   same with BatchNorm2d after each conv
``cnn_tiny``    (1, 28, 28)    cnn_small at width 8 (8-8-16 channels): ~15x cheaper, CPU suites
``cnn13``       (3, 32, 32)    13-layer Conv-Large without noise/dropout (002 App. D)
``cnn13_dropout`` (3, 32, 32)  same with Dropout(0.5) after both max-pools (000 Fig. 4)
``cnn13_dropout2d`` (3, 32, 32) same with Dropout2d(0.5) (Meta-Gradient SSL's code)
``cnn13_noise_dropout`` (3, 32, 32) input noise std 0.15 + Dropout(0.5) (Pi, TE, MT)
``wrn28_2``     (3, 32, 32)    WRN-28-2 as MixMatch / Oliver et al. (~1.47M)
``wrn28_8``     (3, 32, 32)    WRN-28-8 (same, width 8)
``resnet26_shake`` (3, 32, 32) ResNet-26 2x96d shake-shake (paper 003 Table 2; ~26.2M)
``tcdcn``       (1, 60, 60)    TCDCN landmark regressor (paper 001 A.1; 10 = 5 x (x, y))
``resnet18``    (3, 224, 224)  torchvision ResNet-18; 3x3 stem, no max-pool if H < 64
=============== ============== ===================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .base import FeatureClassifier
from .cnn13 import CNN13
from .mlp import MLP, MLP242
from .resnet18 import SMALL_INPUT_HW, ResNet18
from .shake_shake import ShakeShakeResNet
from .small_cnn import SmallCNN
from .tcdcn import TCDCN
from .wrn import WideResNet

__all__ = [
    "NETWORKS", "NetworkSpec", "list_networks", "build_network", "check_network",
    "count_parameters", "set_memory_format", "FeatureClassifier", "MLP242", "MLP", "SmallCNN", "CNN13",
    "WideResNet",
]


@dataclass(frozen=True)
class NetworkSpec:
    """A registered network.

    ``builder(input_shape, num_classes)`` returns the module; ``accepts``
    tells whether an input shape (without batch dimension) fits;
    ``requirement`` is a human-readable form of ``accepts`` (for error
    messages); ``default_input_shape`` is the natural input shape (used by the
    CLI table and the tests).
    """

    name: str
    builder: Callable[[tuple[int, ...], int], nn.Module]
    accepts: Callable[[tuple[int, ...]], bool]
    description: str
    requirement: str = ""
    default_input_shape: tuple[int, ...] = ()


def _vector(shape: tuple[int, ...]) -> bool:
    return len(shape) == 1 and shape[0] >= 1


def _image(min_hw: int) -> Callable[[tuple[int, ...]], bool]:
    def accepts(shape: tuple[int, ...]) -> bool:
        return len(shape) == 3 and shape[0] >= 1 and shape[1] >= min_hw and shape[2] >= min_hw
    return accepts


def _small_cnn(batch_norm: bool, width: int = 32) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return SmallCNN(in_channels=shape[0], num_classes=num_classes,
                        pool=shape[1] >= 16, batch_norm=batch_norm, width=width)
    return build


def _cnn13(**options) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return CNN13(in_channels=shape[0], num_classes=num_classes, **options)
    return build


def _wrn(width: int) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return WideResNet(in_channels=shape[0], num_classes=num_classes, depth=28, width=width)
    return build


NETWORKS: dict[str, NetworkSpec] = {s.name: s for s in [
    NetworkSpec(
        "mlp_2_4_2",
        lambda shape, k: MLP242(in_features=shape[0], num_classes=k),
        _vector,
        "2-4-2 toy MLP of Learning to Impute (paper 000, App. A.1): Linear(D,4)-LReLU-Linear(4,C)",
        "a vector shape (D,)", (2,)),
    NetworkSpec(
        "mlp",
        lambda shape, k: MLP(in_features=shape[0], num_classes=k),
        _vector,
        "MLP D-64-64-C with LeakyReLU 0.1 (stronger toy baseline)",
        "a vector shape (D,)", (2,)),
    NetworkSpec(
        "cnn_small", _small_cnn(False), _image(4),
        "small 3-conv CNN for 1x8x8 / 1x28x28 images, no BatchNorm, no dropout",
        "an image shape (C, H, W) with H, W >= 4", (1, 28, 28)),
    NetworkSpec(
        "cnn_small_bn", _small_cnn(True), _image(4),
        "cnn_small with BatchNorm2d after each conv",
        "an image shape (C, H, W) with H, W >= 4", (1, 28, 28)),
    NetworkSpec(
        "cnn_tiny", _small_cnn(False, width=8), _image(4),
        "cnn_small at width 8 (channels 8-8-16): a 28x28 image costs ~1.5 MFLOP instead of ~22 (CPU suites)",
        "an image shape (C, H, W) with H, W >= 4", (1, 28, 28)),
    NetworkSpec(
        "cnn13", _cnn13(), _image(28),
        "13-layer Conv-Large CNN (Laine & Aila; Tarvainen & Valpola) without noise/dropout, "
        "as Meta-Semi App. D / ICT",
        "an image shape (C, H, W) with H, W >= 28", (3, 32, 32)),
    NetworkSpec(
        "cnn13_dropout", _cnn13(dropout=0.5), _image(28),
        "cnn13 with Dropout(0.5) after both max-pools (L2I paper 000 Fig. 4; VAT's Conv-Large)",
        "an image shape (C, H, W) with H, W >= 28", (3, 32, 32)),
    NetworkSpec(
        "cnn13_dropout2d", _cnn13(dropout=0.5, dropout_kind="channel"), _image(28),
        "cnn13 with Dropout2d(0.5) after both max-pools (Meta-Gradient SSL's official ConvLarge)",
        "an image shape (C, H, W) with H, W >= 28", (3, 32, 32)),
    NetworkSpec(
        "cnn13_noise_dropout", _cnn13(dropout=0.5, noise_std=0.15), _image(28),
        "cnn13 with Gaussian input noise (std 0.15) and Dropout(0.5) after both max-pools "
        "(Laine & Aila's Pi / TE, Mean Teacher's ConvNet)",
        "an image shape (C, H, W) with H, W >= 28", (3, 32, 32)),
    NetworkSpec(
        "wrn28_2", _wrn(2), _image(8),
        "Wide-ResNet-28-2 as MixMatch / Oliver et al. (BN momentum 0.001, LeakyReLU 0.1)",
        "an image shape (C, H, W) with H, W >= 8", (3, 32, 32)),
    NetworkSpec(
        "wrn28_8", _wrn(8), _image(8),
        "Wide-ResNet-28-8 as MixMatch (BN momentum 0.001, LeakyReLU 0.1)",
        "an image shape (C, H, W) with H, W >= 8", (3, 32, 32)),
    NetworkSpec(
        "resnet26_shake",
        lambda shape, k: ShakeShakeResNet(in_channels=shape[0], num_classes=k, depth=26,
                                          width=96),
        _image(8),
        "ResNet-26 2x96d with shake-shake regularisation (Gastaldi 2017), as Meta-Gradient "
        "SSL (paper 003, Table 2)",
        "an image shape (C, H, W) with H, W >= 8", (3, 32, 32)),
    NetworkSpec(
        "tcdcn",
        lambda shape, k: TCDCN(in_channels=shape[0], num_classes=k,
                               input_hw=(shape[1], shape[2])),
        _image(44),
        "TCDCN facial-landmark regressor (L2I journal, App. A.1; official code): "
        "4 conv + Hardtanh, FC 720-256-K (K = 10 for 5 landmarks)",
        "an image shape (C, H, W) with H, W >= 44", (1, 60, 60)),
    NetworkSpec(
        "resnet18",
        lambda shape, k: ResNet18(in_channels=shape[0], num_classes=k,
                                  small_stem=min(shape[1], shape[2]) < SMALL_INPUT_HW),
        _image(8),
        "ResNet-18 (torchvision layout); 3x3 stride-1 stem without max-pool when H or W < 64",
        "an image shape (C, H, W) with H, W >= 8", (3, 224, 224)),
]}


def list_networks() -> list[str]:
    """Names of all registered networks, sorted."""
    return sorted(NETWORKS)


def _normalise_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
    return shape


def check_network(name: str, input_shape: tuple[int, ...]) -> None:
    """Raise a one-line ``ValueError`` if ``name`` is not registered or does
    not accept ``input_shape`` (without batch dimension); build nothing."""
    if name not in NETWORKS:
        raise ValueError(
            f"unknown network {name!r}; valid names: {', '.join(list_networks())}")
    shape = _normalise_shape(input_shape)
    spec = NETWORKS[name]
    if not spec.accepts(shape):
        fitting = [n for n in list_networks() if NETWORKS[n].accepts(shape)]
        raise ValueError(
            f"network {name!r} does not accept input shape {shape} (needs {spec.requirement}); "
            f"networks accepting it: {', '.join(fitting) or 'none'}; "
            f"valid names: {', '.join(list_networks())}")


def build_network(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build network ``name`` for inputs of shape ``input_shape`` (no batch
    dimension) and ``num_classes`` outputs.  Raises ``ValueError`` (one line)
    for an unknown name, an incompatible shape or ``num_classes < 1``."""
    check_network(name, input_shape)
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return NETWORKS[name].builder(_normalise_shape(input_shape), int(num_classes))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``model`` (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def set_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` with its 4-d weights in channels-last (NHWC) memory format if ``channels_last``
    (a no-op for networks without convolutions); returned unchanged otherwise.

    Convolutions given an NHWC weight run, and return, NHWC whatever their input's layout, so
    the inputs need no conversion; every layer computes the same function (summation order,
    hence float rounding, may differ). The run option ``RunConfig.channels_last``.
    """
    return model.to(memory_format=torch.channels_last) if channels_last else model
