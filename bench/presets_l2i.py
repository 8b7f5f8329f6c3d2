"""Preset families of Learning to Impute: ``l2i_wrn`` (journal, paper 001 Tables 2 and 10),
``l2i_conf_wrn`` (conference, paper 000 Table 2) and ``l2i_conf_cnn13`` (000 Table 1).

The WRN families fall back to ``paper`` (:mod:`bench.presets_wrn`) for what they do not
override: the literature rows (Pi-model, Pseudo-Label, MixUp, VAT) both L2I papers copy from
their original papers, and the methods whose settings they share. Every L2I rule entry
quotes where its hold-out batch, inner step and loss come from; the papers give no inner
learning rate, so k (the virtual step = k x the current lr) is the official code's (k = 50
for model output, 100 for learnable labels, at Adam lr 0.002; the code has Mean Teacher only).
"""
from __future__ import annotations

from .preset_entry import Preset
from .presets_wrn import FM_OPT_C100, MM_OPT, MT_L2I_CODE_HP, MT_L2I_CODE_NOTE, WRN_RUN, mixmatch_entry

_K = {"l2i_o": 50.0, "l2i_l": 100.0}
_K_NOTE = ("inner step k x the current lr with k = {k:g} from L2I's official code (its Mean Teacher at Adam lr 0.002; "
           "the papers do not state k, so it is assumed for every base and optimiser)")
_O_001 = ("model output (O): 001 Table 2's FM-L2I row equals Table 10's FM-L2I (O); the approximate update (Eq. 6, last "
          "layer): 001 Sec. 5.4 'we only show results for MT setting, as the exact update rule is computationally expensive "
          "for MM and FM', and Table 2's MT-L2I row equals Table 8's approx row (CIFAR-10 1000: 14.76 vs 15.76, a typo in "
          "one of them)")
_HOLDOUT_001 = ("hold-out batch 64 = the training batch: 001 Sec. 5.4 'In all the experiments, we use the same mini-batch "
                "size for the training and hold-out samples', App. A.2 'The batch size on CIFAR-10 and CIFAR-100 is set to "
                "64'; drawn from the labeled training set (joint, Sec. 5.4 and Table 6)")
_INNER_001 = "inner loss C_T + C_U (001 Alg. 1 line 8); the second update with the run's optimizer (Alg. 1 line 11)"
_LU_001 = ("C_U of the meta step: the squared error between the softmax and z imputed from another weak view, for every "
           "base (001 App. A.2: 'we impute the labels of unlabeled images by applying softmax on the augmentation of the "
           "original unlabeled image and use Mean Square Error (MSE) between prediction on the original image and pseudo "
           "labels'; the 'original image' read as the student's usual weakly augmented view, as the official code's u1 / "
           "u2); no base mask in it (the MSE is the whole of l_u)")
_LU_000 = ("C_U of the meta step: the squared error between the softmax and z imputed from another weak view (000 App. A.2: "
           "'During the meta update in both our option1 and option2, we predict the pseudo labels of unlabeled images by "
           "applying softmax on the augmentation of the original unlabeled image and compute the Mean Square Error (MSE)'); "
           "no base mask in it")
_PATH_001 = ("meta-gradient through z only (001 Eq. 4 and App. B: dC_H/dtheta = dC_H/dtheta* dtheta*/dz dz/dtheta; the "
             "official code differentiates w.r.t. its imputing copy tmp_model)")
_PATH_000 = ("meta-gradient = the total derivative of C_V(theta_t+1) w.r.t. theta (000 Eq. 7: the identity, the Hessian "
             "term and the path through z = the model's output; 'where I is identity matrix')")
_HOLDOUT_000 = ("meta-validation batch = the labeled batch: 000 App. A.2 'in experiment 2 on CIFAR-10, the batch size of the "
                "labeled, unlabeled and meta-validation data are set to 50'; for CIFAR-100 and experiment 3 not stated, "
                "assumed equal to the labeled batch; drawn from the labeled training set (000 Alg. 1: 'another batch of "
                "training data')")
_INNER_000 = ("exact second-order update (000 has no approximation); inner loss C_U only (000 Alg. 1: C = sum over the "
              "unlabeled batch, then 'simulate a SGD step')")


def l2i_rule(family: str, rule: str, dataset: str, holdout: int, journal: bool, source: str) -> Preset:
    """An L2I rule entry: 001's (``journal``) or 000's reading, hold-out batch ``holdout``."""
    hp = {"holdout_batch": holdout, "holdout": "joint", "meta_bn": "train", "l2i_meta_optimizer": "shared",
          "l2i_inner_steps": 1, "l2i_inner_labeled": journal, "l2i_inner_lambda": False,
          "l2i_inner_lr_scale": _K[rule], "l2i_inner_loss": "mse_views"}
    paths = ""
    if rule == "l2i_o":
        hp["meta_method"] = "approx" if journal else "exact"
        hp["l2i_meta_path"] = "z" if journal else "total"
        what = _O_001 if journal else "000 option 2 (meta-gradient on the model)"
        paths = _PATH_001 if journal else _PATH_000
    else:
        hp.update(l2i_label_lr=1.0, l2i_label_weight=1.0, l2i_label_init="output", meta_method="exact")
        what = ("learnable labels (L), initialised from the model's output; label step eta_z = 1 (000 App. A.1: 'ηz is 1 "
                "for all experiments'; the official code: p <- p - 1.0 dC_H/dp, then an MSE step with weight 1); the step "
                "on the corrected labels with the meta step's squared error")
        if not journal:
            what = "000 option 1: " + what
    notes = "; ".join([what, *([paths] if paths else []), _LU_001 if journal else _LU_000,
                       _HOLDOUT_001 if journal else _HOLDOUT_000, _K_NOTE.format(k=_K[rule]),
                       _INNER_001 if journal else _INNER_000])
    return Preset(family, "+" + rule, dataset, source, hparams=hp, notes=notes)


# --- l2i_wrn: 001 Tables 2 and 10 (WRN-28-2) ------------------------------------------------
_SRC_001 = "L2I journal (001) Tables 2 and 10, Sec. 5.4, App. A.2; L2I official code (k)"
_L2I_WRN = (
    mixmatch_entry("cifar100", family="l2i_wrn", optim=FM_OPT_C100,
                   source="001 App. A.2 (CIFAR-100: SGD lr 0.03, momentum 0.9, cosine decay, weight decay 0.001, batch 64; "
                          "MixMatch's consistency weight and ramp-up); 001 Table 2",
                   extra_note="001 A.2 uses SGD on CIFAR-100 for all methods (Nesterov as FixMatch, not stated in 001); "),
    *(l2i_rule("l2i_wrn", r, d, 64, True, _SRC_001) for r in ("l2i_o", "l2i_l") for d in ("cifar10", "cifar100")),
)

# --- l2i_conf_wrn: 000 Table 2 (WRN-28-2) ---------------------------------------------------
_SRC_000_T2 = ("000 App. A.2 Exp. 3 (WRN-28-2, batch 32 on CIFAR-10 and 128 on CIFAR-100, Adam lr 0.002 fixed, weight "
               "decay 0.02, EMA 0.999); 000 Table 2")
_BATCH_000_T2 = {"cifar10": 32, "cifar100": 128}
_NOTE_000_T2 = ("000 A.2: 'The batch size on CIFAR-10 is set to 32 and it is 128 on CIFAR-100. The learning rate is "
                "initialized as 0.002 and fixed'; the unlabeled batch equals the labeled one and the budget is 2^20 steps "
                "(neither is stated in 000: MixMatch's protocol, which 000 follows); weight decay 0.02 in MixMatch's code "
                "form (decoupled, x lr); ")


def _mean_teacher_000(dataset: str) -> Preset:
    b = _BATCH_000_T2[dataset]
    return Preset("l2i_conf_wrn", "mean_teacher", dataset, _SRC_000_T2,
                  {**WRN_RUN, "optim": MM_OPT, "batch_labeled": b, "batch_unlabeled": b}, MT_L2I_CODE_HP,
                  _NOTE_000_T2 + "000 A.2 takes 'the same consistency weight and ramp-up schedule (linear-schedule)' as "
                  "MixMatch: for Mean Teacher, the L2I code's; " + MT_L2I_CODE_NOTE)


_SRC_000_RULES = "L2I conference (000) Alg. 1, App. A.1-A.2, Table 2; L2I official code (k)"
_L2I_CONF_WRN = (
    *(_mean_teacher_000(d) for d in ("cifar10", "cifar100")),
    *(mixmatch_entry(d, family="l2i_conf_wrn", batch=_BATCH_000_T2[d], source=_SRC_000_T2, extra_note=_NOTE_000_T2)
      for d in ("cifar10", "cifar100")),
    *(l2i_rule("l2i_conf_wrn", r, d, _BATCH_000_T2[d], False, _SRC_000_RULES)
      for r in ("l2i_o", "l2i_l") for d in ("cifar10", "cifar100")),
)

# --- l2i_conf_cnn13: 000 Table 1 (CNN-13) ---------------------------------------------------
_SRC_000_T1 = ("000 App. A.2 Exp. 2 (13-layer conv-net, Adam fixed lr 0.003, batch 50 on CIFAR-10 / 128 on CIFAR-100, "
               "40 x 1000 steps, lambda linear to 75 over 40 x (1000 x 0.4) steps, weight decay 0.02, EMA 0.999), Fig. 4; "
               "000 Table 1")
_BATCH_000_T1 = {"cifar10": 50, "cifar100": 128}
_NOTE_000_T1 = ("000 A.2: 'On CIFAR-10, the batch size and learning rate is set to 50 and 0.003, respectively, as in "
                "Tarvainen & Valpola (2017) while on CIFAR-100, the batch size is 128. We train each method for 40 x 1000 "
                "steps'; the CIFAR-100 lr is not stated (0.003 assumed); the unlabeled batch equals the labeled one (000 "
                "A.2's meta-validation note: labeled, unlabeled and meta-validation batches of 50); weight decay 0.02 'for "
                "all methods' in MixMatch's code form (decoupled, x lr); network cnn13_dropout: 000 Fig. 4 shows dropout "
                "(p = 0.5) after both max-pools and no input-noise layer (read from the figure's garbled text "
                "extraction); BatchNorm on every convolution, not on the final linear layer (000 puts it on the fully "
                "connected layer too)")


def _run_000_t1(dataset: str) -> dict:
    b = _BATCH_000_T1[dataset]
    return {"network": "cnn13_dropout", "steps": 40 * 1000, "ema_decay": 0.999, "batch_labeled": b,
            "batch_unlabeled": b, "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.02, "schedule": "constant"}}


_L2I_CONF_CNN13 = (
    *(Preset("l2i_conf_cnn13", "supervised", d, _SRC_000_T1, _run_000_t1(d), {},
             _NOTE_000_T1 + "; the unlabeled batch is drawn but unused") for d in ("cifar10", "cifar100")),
    *(Preset("l2i_conf_cnn13", "pseudo_label", d, _SRC_000_T1, _run_000_t1(d),
             {"threshold": 0.0, "lambda_u": 75.0, "rampup": "linear", "rampup_fraction": 0.4},
             "000 A.2: 'we use the linear-schedule and it increases gradually to 75 in 40 x (1000 x 0.4) steps (for both "
             "the PL and Ours)'; no confidence threshold (000 Alg. 1 imputes every unlabeled sample, as Lee 2013); 000's "
             "weight 75 is MixMatch's, on a squared error (its meta update uses MSE 'as in Berthelot et al.'), our "
             "Pseudo-Label's distance is cross-entropy; " + _NOTE_000_T1) for d in ("cifar10", "cifar100")),
    *(l2i_rule("l2i_conf_cnn13", r, d, _BATCH_000_T1[d], False, _SRC_000_RULES.replace("Table 2", "Table 1"))
      for r in ("l2i_o", "l2i_l") for d in ("cifar10", "cifar100")),
)

ENTRIES: tuple[Preset, ...] = _L2I_WRN + _L2I_CONF_WRN + _L2I_CONF_CNN13
