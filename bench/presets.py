"""Paper presets: the hyperparameters the papers (and their code) used, per (method, dataset).

Select with ``python -m bench.run --preset NAME``; the preset's name is part of every run's
config (and so of its identity and its row); ``python -m bench.presets`` lists them. Two
families:

- ``paper``: the WRN-28-2 protocol of MixMatch / FixMatch that papers 000/001 (L2I, Table 2)
  and 002 (Meta-Semi, Tables 2-3) report on; per method, the method's own WRN settings
  (MixMatch, FixMatch), Oliver et al. 2018's for the older baselines (Pseudo-Label, Pi-model,
  VAT), L2I's official code for Mean Teacher (OFFICIAL_CODE_NOTES.md), Meta-Semi App. D.
- ``paper_cnn13``: the CNN-13 protocol of paper 002 (Table 1: CIFAR-10 1000-4000, CIFAR-100
  4000/10000; Table 4: SVHN 500/1000), which paper 003's Conv-Large tables share; Meta-Semi
  from 002 App. D, each baseline from its own paper's CNN-13 setting (002 says it tuned them
  "according to the recommendations provided by their original papers" without giving values).

Every entry's ``source`` names paper and section; its ``notes`` state every ambiguous or
adapted choice. Values recalled from a paper that is not among /work/shared/papers are
flagged "from memory of <paper>, not verified against its text". Conventions that recur:

- Consistency weights: our ``pi_model``, ``temporal_ensembling``, ``mean_teacher`` and ``ict``
  use the squared error of softmaxes SUMMED over classes, their papers (and code) AVERAGE it
  over the C classes, so a published w_max becomes w_max / C here. ``mixmatch`` averages over
  classes as its paper does (no conversion); ``vat``, ``fixmatch``, ``pseudo_label`` weight a
  KL / cross-entropy (no class reduction to convert).
- Budgets are steps. An "epoch" is one pass of (labeled + unlabeled batch) over the training
  images left after the validation hold-out (45,000 for CIFAR, 72,257 for SVHN).
- Schedules: we have only cosine-to-0 and constant (with optional linear warm-up); step
  decays and the Gaussian lr ramps of Laine & Aila / Mean Teacher are approximated and said so.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

from .config import OptimConfig, RunConfig

STEPS_2_20 = 2 ** 20
_N_TRAIN = {"cifar10": 45000, "cifar100": 45000, "svhn": 72257}  # training images after the val hold-out
_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "stl10": 10}


def _epochs(n: int, dataset: str, per_step: int = 100) -> int:
    """Steps of ``n`` epochs over the dataset's training images at ``per_step`` images per step."""
    return n * round(_N_TRAIN[dataset] / per_step)


@dataclass(frozen=True)
class Preset:
    """Overrides of a run config: ``run`` holds RunConfig fields (``optim`` as a dict),
    ``hparams`` the algorithm's own."""

    name: str
    algorithm: str
    dataset: str
    source: str
    run: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


# --- paper: WRN-28-2 (MixMatch / FixMatch protocol) ------------------------------------------
# MixMatch's optimiser: Adam 0.002 constant with the code's decoupled decay w <- w - 0.02 lr w
# (MixMatch's text says "weight decay 0.0004"; L2I's code uses the 0.02 lr form); eval EMA 0.999.
_MM_OPT = {"name": "adamw", "lr": 0.002, "weight_decay": 0.02, "schedule": "constant"}
_MM_NOTE = ("optimiser as MixMatch's code (Adam 0.002 constant, decoupled decay 0.02 x lr); 2^20 steps; WRN-28-2 on every "
            "dataset as in papers 001/002 (the MixMatch/FixMatch papers use wider nets for CIFAR-100 and STL-10)")
_FM_OPT = {"name": "sgd", "lr": 0.03, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "cosine"}
_FM_OPT_C100 = {**_FM_OPT, "weight_decay": 1e-3}
_FM_NOTE = ("FixMatch's cosine is cos(7 pi k / 16 K), not reaching 0; ours anneals to 0; CIFAR-100 and STL-10 use WRN-28-2 as "
            "in L2I Table 2 (FixMatch: WRN-28-8 for CIFAR-100, WRN-37-2 for STL-10, from memory of Sohn et al. 2020, not "
            "verified); weak/strong augmentation are the dataset module's")
_WRN = {"network": "wrn28_2", "steps": STEPS_2_20, "ema_decay": 0.999}
# Oliver et al. 2018 ("Realistic evaluation"), their Table of shared/per-method settings: Adam 3e-4, batch 100 + 100,
# 500k steps with lr x0.2 at 400k, ramp-up over 200k steps (0.4). From memory of Oliver et al. 2018, not verified.
_OLIVER_RUN = {**_WRN, "optim": {"name": "adam", "lr": 3e-4, "weight_decay": 0.0, "schedule": "constant"},
               "batch_labeled": 100, "batch_unlabeled": 100}
_OLIVER_NOTE = ("Oliver et al. 2018 settings from memory, not verified against its text; their lr x0.2 at 400k of 500k "
                "steps is dropped (constant lr) and the budget is the 2^20 steps of the L2I / MixMatch tables")
_MM_LAMBDA = {"cifar10": 75.0, "cifar100": 150.0, "svhn": 250.0, "stl10": 50.0}
_MM_RAMP = 16000 / STEPS_2_20  # MixMatch ramps lambda_u linearly over the first 16k steps


def _mixmatch(dataset: str) -> Preset:
    # CIFAR-10's values are corroborated by L2I's code (OFFICIAL_CODE_NOTES: MixMatch baseline 75, alpha 0.75, T 0.5).
    unsure = "; CIFAR-10 values match L2I's code" if dataset == "cifar10" else (
        f"; lambda_u {_MM_LAMBDA[dataset]:g} (and alpha 0.75) for {dataset} from memory of Berthelot et al. 2019, "
        "not verified against its text")
    return Preset("paper", "mixmatch", dataset, "MixMatch (Berthelot et al. 2019), WRN-28 setup; L2I Table 2, Meta-Semi Tables 2-3",
                  {**_WRN, "optim": _MM_OPT, "batch_labeled": 64, "batch_unlabeled": 64},
                  {"K": 2, "T": 0.5, "alpha": 0.75, "lambda_u": _MM_LAMBDA[dataset], "rampup": "linear",
                   "rampup_fraction": _MM_RAMP},
                  "lambda_u on the class-averaged squared error as in the paper (no conversion); ramp over 16k of 2^20 "
                  "steps; 64 unlabeled images per step, each seen in K=2 augmentations; " + _MM_NOTE + unsure)


def _fixmatch(dataset: str) -> Preset:
    return Preset("paper", "fixmatch", dataset, "FixMatch (Sohn et al. 2020), WRN-28 setup; L2I Table 2",
                  {**_WRN, "optim": _FM_OPT_C100 if dataset == "cifar100" else _FM_OPT,
                   "batch_labeled": 64, "batch_unlabeled": 7 * 64},
                  {"threshold": 0.95, "lambda_u": 1.0, "rampup": "none", "rampup_fraction": 0.0},
                  "batch 64 labeled + mu=7 x 64 unlabeled, tau 0.95, lambda_u 1 (no ramp); SGD 0.03 / momentum 0.9 / cosine / "
                  "lambda_u 1 / CIFAR-100 wd 1e-3 are confirmed by 001 App. A.2, mu, tau and wd 5e-4 are from memory of "
                  "Sohn et al. 2020, not verified; " + _FM_NOTE)


def _supervised_wrn(dataset: str) -> Preset:
    return Preset("paper", "supervised", dataset, "FixMatch (Sohn et al. 2020) optimiser for the labeled-only baseline",
                  {**_WRN, "optim": _FM_OPT_C100 if dataset == "cifar100" else _FM_OPT,
                   "batch_labeled": 64, "batch_unlabeled": 64},
                  notes="FixMatch's optimiser for the labeled-only baseline (from memory of Sohn et al. 2020, not "
                        "verified); the unlabeled batch is drawn but unused")


def _meta_semi_wrn(dataset: str, source: str) -> Preset:
    return Preset("paper", "meta_semi", dataset, source,
                  {**_WRN, "optim": _MM_OPT, "batch_labeled": 32, "batch_unlabeled": 96},
                  {"beta": 0.5, "ema_decay": 0.999},
                  "002 App. D: 'exactly the same training details as (Berthelot et al., 2019) except for the batch size' "
                  "32 + 96; beta is tuned in [0.2, 1] on validation in the paper, 0.5 is our default, not a published "
                  "value; " + _MM_NOTE)


# --- paper_cnn13: 002 Table 1 / Table 4 (CNN-13) -----------------------------------------------
# Meta-Semi App. D: SGD Nesterov 0.9, wd 1e-4, lr 0.1, cosine, 600 epochs, batch 25 + 75.
_MS_CNN_OPT = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "schedule": "cosine"}


def _cnn13(dataset: str, epochs: int = 600, bl: int = 25, bu: int = 75) -> dict[str, Any]:
    return {"network": "cnn13", "steps": _epochs(epochs, dataset, bl + bu), "ema_decay": 0.999,
            "batch_labeled": bl, "batch_unlabeled": bu}


_EPOCH_NOTE = "an epoch = (training images after the val hold-out) / (labeled + unlabeled batch) steps (our reading)"


def _meta_semi_cnn13(dataset: str, table: str) -> Preset:
    return Preset("paper_cnn13", "meta_semi", dataset,
                  f"Meta-Semi App. D, CNN-13 (SGD Nesterov 0.1, wd 1e-4, cosine, 600 epochs, batch 25+75); 002 {table}",
                  {**_cnn13(dataset), "optim": _MS_CNN_OPT}, {"beta": 0.5, "ema_decay": 0.999},
                  "beta tuned in [0.2, 1] on validation in the paper; 0.5 is our default, not a published value; "
                  "CNN-13 without the Gaussian-noise and dropout layers (002 App. D, following ICT); " + _EPOCH_NOTE)


def _supervised_cnn13(dataset: str, algorithm: str, table: str) -> Preset:
    hp = {"alpha": 1.0} if algorithm == "supervised_mixup" else {}
    extra = "; MixUp alpha 1.0 is Zhang et al.'s CIFAR-10 value (002 does not state its baseline's)" if hp else ""
    return Preset("paper_cnn13", algorithm, dataset, f"002 {table} baseline with 002 App. D's CNN-13 training setup",
                  {**_cnn13(dataset), "optim": _MS_CNN_OPT}, hp,
                  "002 gives no settings for this baseline: Meta-Semi's own CNN-13 optimiser, budget and batch are used "
                  "(the unlabeled batch is drawn but unused); " + _EPOCH_NOTE + extra)


def _laine_aila(dataset: str, algorithm: str, table: str) -> Preset:
    w_max = 100.0 if algorithm == "pi_model" else 30.0
    c = _CLASSES[dataset]
    hp = {"lambda_u": w_max / c, "rampup": "sigmoid", "rampup_fraction": 80 / 300}
    if algorithm == "temporal_ensembling":
        hp["alpha"] = 0.6
    return Preset("paper_cnn13", algorithm, dataset,
                  f"Laine & Aila 2017 (Adam 0.003, 300 epochs, batch 100, ramp-up 80 epochs); 002 {table}",
                  {**_cnn13(dataset, epochs=300, bl=50, bu=50),
                   "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0, "schedule": "constant",
                             "warmup_steps": _epochs(80, dataset)}},
                  hp,
                  f"w_max {w_max:g} on the class-averaged error = {w_max:g}/{c} on our class-summed one; the code's extra "
                  "factor M/N (labeled/all) is not applied; their batch of 100 mixes labeled and unlabeled images, ours "
                  "is 50 + 50; their Gaussian lr ramp-up (80 epochs) and ramp-down (last 50 epochs, Adam beta1 0.9->0.5) "
                  "become a linear 80-epoch warm-up and a constant lr; from memory of Laine & Aila 2017, not verified "
                  "against its text (not among our papers); " + _EPOCH_NOTE)


def _mean_teacher_cnn13(dataset: str, table: str) -> Preset:
    c = _CLASSES[dataset]
    return Preset("paper_cnn13", "mean_teacher", dataset,
                  f"Tarvainen & Valpola 2017 (ConvNet-13: Adam 0.003, consistency 100, EMA 0.999); 002 {table}",
                  {**_cnn13(dataset, bl=50, bu=50),
                   "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0, "schedule": "constant"}},
                  {"lambda_u": 100.0 / c, "ema_decay": 0.999, "rampup": "sigmoid", "rampup_fraction": 0.25},
                  f"consistency 100 on the class-averaged error = 100/{c} here; lr 0.003 and batch 50 also cited by paper "
                  "000 App. A.2 'as in Tarvainen & Valpola'; EMA 0.99 during their ramp-up is not modelled (0.999 "
                  "throughout); ramp-up over the first quarter and 600 epochs (002's budget) are our choices; from memory "
                  "of Tarvainen & Valpola 2017, not verified; " + _EPOCH_NOTE)


def _vat_cnn13(dataset: str, table: str) -> Preset:
    eps = {"cifar10": 6.0, "cifar100": 6.0, "svhn": 2.5}[dataset]
    return Preset("paper_cnn13", "vat", dataset,
                  f"Miyato et al. 2018 (Conv-Large: Adam 0.001, 48k updates, batch 32+128); 002 {table}",
                  {"network": "cnn13", "steps": 48000, "ema_decay": 0.999, "batch_labeled": 32, "batch_unlabeled": 128,
                   "optim": {"name": "adam", "lr": 0.001, "weight_decay": 0.0, "schedule": "constant"}},
                  {"eps": eps, "lambda_u": 1.0, "n_power": 1, "rampup": "none"},
                  f"eps {eps:g} was set for ZCA-whitened CIFAR-10 / raw SVHN, our inputs are channel-standardised (tune "
                  "eps); xi stays at our float32-safe default 1e-2 instead of 1e-6; their linear lr decay over the last "
                  "16k updates is dropped; all values from memory of Miyato et al. 2018, not verified")


def _ict_cnn13(dataset: str, table: str) -> Preset:
    c = _CLASSES[dataset]
    alpha = 0.1 if dataset == "svhn" else 1.0
    return Preset("paper_cnn13", "ict", dataset,
                  f"ICT (Verma et al. 2019) (CNN-13, SGD 0.1, 400 epochs); 002 {table}",
                  {**_cnn13(dataset, epochs=400, bl=50, bu=50), "optim": _MS_CNN_OPT},
                  {"lambda_u": 100.0 / c, "alpha": alpha, "ema_decay": 0.999, "rampup": "sigmoid",
                   "rampup_fraction": 100 / 400},
                  f"w_max 100 on the class-averaged error = 100/{c} here (ICT's softmax_mse_loss divides by the classes); "
                  f"alpha {alpha:g}; consistency ramp over the first 100 of 400 epochs; SGD Nesterov lr 0.1, wd 1e-4, "
                  "cosine to 0 (ICT's cosine runs to epoch 450, so it stops above 0); batch 50 + 50; from memory of "
                  "Verma et al. 2019, not verified (CIFAR-100 is not in the ICT paper: its CIFAR-10 values are used); "
                  + _EPOCH_NOTE)


PRESETS: tuple[Preset, ...] = (
    # paper (WRN-28-2)
    *(_supervised_wrn(d) for d in ("cifar10", "cifar100", "svhn")),
    Preset("paper", "supervised_mixup", "cifar10", "Zhang et al. 2018 (alpha 1, CIFAR-10); L2I Table 2 'MixUp' row",
           {**_WRN, "optim": _MM_OPT, "batch_labeled": 64, "batch_unlabeled": 64}, {"alpha": 1.0},
           "L2I / MixMatch's 'MixUp' baseline also mixes unlabeled images with guessed labels (from memory of Berthelot "
           "et al. 2019, not verified); ours mixes labeled data only; " + _MM_NOTE),
    Preset("paper", "pseudo_label", "cifar10", "Oliver et al. 2018 (threshold 0.95, lambda 1); L2I Table 2 'PL' row",
           _OLIVER_RUN, {"threshold": 0.95, "lambda_u": 1.0, "rampup": "linear", "rampup_fraction": 0.4},
           "lambda ramped over 200k of 500k steps (0.4); " + _OLIVER_NOTE),
    Preset("paper", "pi_model", "cifar10", "Oliver et al. 2018 (max consistency 20, sigmoid ramp 0.4); L2I Table 2",
           _OLIVER_RUN, {"lambda_u": 2.0, "rampup": "sigmoid", "rampup_fraction": 0.4},
           "consistency 20 on a class-averaged error = 20/10 on ours (their reduction over classes not verified); "
           + _OLIVER_NOTE),
    Preset("paper", "vat", "cifar10", "Oliver et al. 2018 (eps 6.0, consistency 0.3); L2I Table 2, Meta-Semi Table 2",
           _OLIVER_RUN, {"eps": 6.0, "lambda_u": 0.3, "rampup": "sigmoid", "rampup_fraction": 0.4, "n_power": 1},
           "Oliver's eps is for ZCA-whitened CIFAR-10, ours are channel-standardised; xi stays at our float32-safe 1e-2 "
           "(theirs 1e-6); ramp as their other consistency methods; " + _OLIVER_NOTE),
    Preset("paper", "mean_teacher", "cifar10", "L2I official code (MT baseline: Adam 0.002, consistency 50, ramp 40%)",
           {**_WRN, "optim": _MM_OPT, "batch_labeled": 64, "batch_unlabeled": 64},
           {"lambda_u": 50.0, "ema_decay": 0.999, "rampup": "linear", "rampup_fraction": 0.4},
           "consistency weight 50 as in the L2I code, applied to our class-summed squared error (the code's "
           "reduction over classes is not verified); teacher EMA 0.999; the code's extra decay w *= 1 - 0.02 lr "
           "is AdamW's decoupled decay"),
    Preset("paper", "mean_teacher", "cifar100", "L2I (001) App. A.2: SGD 0.03 cosine, wd 1e-3, batch 64; L2I Table 2",
           {**_WRN, "optim": _FM_OPT_C100, "batch_labeled": 64, "batch_unlabeled": 64},
           {"lambda_u": 50.0, "ema_decay": 0.999, "rampup": "linear", "rampup_fraction": 0.4},
           "001 A.2 gives the CIFAR-100 optimiser; consistency 50 / linear ramp over 40% are the L2I code's CIFAR-10 "
           "values, assumed for CIFAR-100 (not stated)"),
    *(_mixmatch(d) for d in ("cifar10", "cifar100", "svhn", "stl10")),
    *(_fixmatch(d) for d in ("cifar10", "cifar100", "svhn", "stl10")),
    _meta_semi_wrn("cifar10", "Meta-Semi App. D, WRN-28 (MixMatch's training details, batch 32+96); 002 Table 2"),
    _meta_semi_wrn("cifar100", "Meta-Semi App. D, WRN-28 (MixMatch's training details, batch 32+96); 002 Table 2"),
    _meta_semi_wrn("stl10", "Meta-Semi App. D, WRN-28 (MixMatch's protocol); 002 Table 3"),
    # paper_cnn13 (002 Table 1: CIFAR-10, CIFAR-100; Table 4: SVHN)
    *(_meta_semi_cnn13(d, t) for d, t in (("cifar10", "Table 1"), ("cifar100", "Table 1"), ("svhn", "Table 4"))),
    *(_supervised_cnn13(d, a, "Table 1") for a in ("supervised", "supervised_mixup") for d in ("cifar10", "cifar100")),
    *(_laine_aila(d, a, t) for a in ("pi_model", "temporal_ensembling")
      for d, t in (("cifar10", "Table 1"), ("cifar100", "Table 1"), ("svhn", "Table 4"))),
    *(_mean_teacher_cnn13(d, t) for d, t in (("cifar10", "Table 1"), ("cifar100", "Table 1"), ("svhn", "Table 4"))),
    *(_vat_cnn13(d, t) for d, t in (("cifar10", "Table 1"), ("svhn", "Table 4"))),
    *(_ict_cnn13(d, t) for d, t in (("cifar10", "Table 1"), ("cifar100", "Table 1"), ("svhn", "Table 4"))),
)


def list_presets() -> list[Preset]:
    return list(PRESETS)


def find(name: str, algorithm: str, dataset: str) -> Preset | None:
    for p in PRESETS:
        if (p.name, p.algorithm, p.dataset) == (name, algorithm, dataset):
            return p
    return None


def preset_names() -> list[str]:
    return sorted({p.name for p in PRESETS})


def apply(cfg: RunConfig, name: str) -> RunConfig:
    """``cfg`` with preset ``name`` applied where one exists for its (algorithm, dataset).

    Without one, the config keeps its suite recipe and says so in ``protocol_notes``.
    """
    p = find(name, cfg.algorithm, cfg.dataset)
    if p is None:
        return dataclasses.replace(cfg, preset=f"{name}:none",
                                   protocol_notes=f"{cfg.protocol_notes}; no {name!r} preset for {cfg.algorithm} on "
                                                  f"{cfg.dataset}: suite recipe used")
    run = dict(p.run)
    if "optim" in run:
        run["optim"] = OptimConfig(**run["optim"])
    note = f"{cfg.protocol_notes}; preset {name} ({p.source})" + (f": {p.notes}" if p.notes else "")
    return RunConfig.from_dict({**cfg.to_dict(), **run, "optim": run.get("optim", cfg.optim),
                                "hparams": {**cfg.hparams, **p.hparams}, "preset": name, "protocol_notes": note})


def main() -> int:
    rows = [(p.name, p.algorithm, p.dataset, p.run.get("network", "-"), p.run.get("steps", "-"),
             f"{p.run.get('batch_labeled', '-')}+{p.run.get('batch_unlabeled', '-')}", p.source)
            for p in PRESETS]
    head = ("preset", "algorithm", "dataset", "network", "steps", "batch", "source")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\n{len(rows)} presets; select with python -m bench.run --preset NAME ({', '.join(preset_names())}); "
          "each entry's notes (stored with every run) say which choices were adapted or unverified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
