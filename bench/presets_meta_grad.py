"""Preset family ``meta_grad_cnn13``: Meta-Gradient SSL (paper 003) on Conv-Large, 003 Table 1.

003's text defers its training details to a supplementary file we do not have, so the
training setup comes from its official code (Sakura03/SemiMeta, read from the repository):
SGD lr 0.1, momentum 0.9 without Nesterov, linear warm-up over 4,000 steps, lr x0.1 at 300k
and 350k, 400k steps, batch 128 labeled + 128 unlabeled; cross-domain MixUp Beta(0.1, 0.1) and
weight decay 5e-5 on SVHN-1000, Beta(1, 1) and 1e-4 on CIFAR-10-4000 and CIFAR-100-10000; the
consistency term with weight 1 ramped over 4,000 steps; no EMA teacher, no threshold; the
meta step in eval mode; ConvLarge with Dropout2d(0.5) after both max-pools and no input
noise. Falls back to ``paper_cnn13`` for the baselines of 003 Table 1 (their papers' settings).
"""
from __future__ import annotations

from .preset_entry import Preset

_DATASETS = ("svhn", "cifar10", "cifar100")
_WD = {"svhn": 5e-5, "cifar10": 1e-4, "cifar100": 1e-4}
_GAMMA = {"svhn": 0.1, "cifar10": 1.0, "cifar100": 1.0}
STEPS = 400_000
_SRC = ("Meta-Gradient SSL (003) Sec. 4 and Table 1 (Conv-Large); training setup from its official code (SemiMeta): "
        "SGD 0.1, momentum 0.9 without Nesterov, 4k warm-up, x0.1 at 300k and 350k, 400k steps, batch 128 + 128")


def _run(dataset: str) -> dict:
    return {"network": "cnn13_dropout2d", "steps": STEPS, "ema_decay": 0.999, "batch_labeled": 128,
            "batch_unlabeled": 128,
            "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": _WD[dataset],
                      "schedule": "step", "milestones": (300_000, 350_000), "gamma": 0.1, "warmup_steps": 4000}}


def _base(dataset: str) -> Preset:
    return Preset("meta_grad_cnn13", "pseudo_label", dataset, _SRC, _run(dataset),
                  {"threshold": 0.0, "lambda_u": 1.0, "rampup": "linear", "rampup_fraction": 4000 / STEPS},
                  f"the base of pseudo_label+meta_grad, not a row of 003 Table 1; weight decay {_WD[dataset]:g} on "
                  f"{dataset} (official code); no threshold mask (the code has none); unlabeled weight 1 ramped over the "
                  "first 4,000 steps (ramp shape not recorded in our reading of the code: linear); network "
                  "cnn13_dropout2d (the code's ConvLarge); the code evaluates the raw model on the test set every 400 "
                  "steps and keeps the best (selection on test), we report EMA and raw weights on honest splits")


def _rule(dataset: str) -> Preset:
    return Preset("meta_grad_cnn13", "+meta_grad", dataset,
                  "003 Eq. 2 (pseudo-labels initialised as the classifier's predictions), Alg. 2 (finite difference, "
                  "eps = 0.01 / ||grad||), Eq. 12-13 (cross-domain MixUp, MSE consistency); official code (MixUp gamma "
                  "0.1 on SVHN, 1.0 on CIFAR; eval-mode meta pass)",
                  hparams={"meta_grad_init": "model", "meta_method": "fd", "meta_grad_eps_scale": 0.01,
                           "meta_grad_fd_divisor": "2eps", "meta_lr": 1.0, "meta_lr_from_lr": False,
                           "meta_bn": "eval", "meta_grad_loss": "mse", "use_mixup": True,
                           "mixup_gamma": _GAMMA[dataset], "mixup_mask": "base"},
                  notes=f"MixUp lambda ~ Beta({_GAMMA[dataset]:g}, {_GAMMA[dataset]:g}) on {dataset}; y_tilde = the "
                        "model's softmax (003 Eq. 2: 'The pseudo labels of the unlabeled data are initialized as the "
                        "current predictions of the classifier'); meta_lr 1 with the central difference equals the "
                        "code's update y_hat = softmax f(x_u) - lr (p+ - p-) / eps, the inner step being the current lr "
                        "(see the meta_grad rule's documentation); the base's mask in the MixUp is all ones here "
                        "(threshold 0), so the MixUp is 003's Eq. 12")


ENTRIES: tuple[Preset, ...] = (*(_base(d) for d in _DATASETS), *(_rule(d) for d in _DATASETS))
