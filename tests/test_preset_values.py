"""Every preset family's values against the sentences of its sources, as the protocols run them.

Each number below is transcribed from the quoted sentence next to it. Where the four papers
and their official code are on this machine (/work/shared, absent for users), a test checks
that every quoted sentence is really in its source, so the transcription itself is checked.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import presets
from bench.protocols import PROTOCOLS, protocol_config

SHARED = Path("/work/shared")
QUOTES = {
    # paper 000 (L2I conference), App. A.1-A.2 and Sec. 3
    "000_adam": ("000", "we adopt Adam as the optimizer and fix the learning rate."),
    "000_wd": ("000", "the weight decay is set to 0.02 for all methods."),
    "000_ema": ("000", "exponential moving average of the learned models, parameters with a decay rate of 0.999."),
    "000_exp2": ("000", "On CIFAR-10, the batch size and learning rate is set to 50 and 0.003, respectively, as in "
                        "Tarvainen & Valpola (2017) while on CIFAR-100, the batch size is 128. We train each method for "
                        "40 × 1000 steps."),
    "000_lambda": ("000", "it increases gradually to 75 in 40 × (1000 × 0.4) steps (for both the PL and Ours)."),
    "000_metaval": ("000", "the batch size of the labeled, unlabeled and meta-validation data are set to 50"),
    "000_eta_z": ("000", "ηz is 1 for all experiments."),
    "000_exp3": ("000", "The batch size on CIFAR-10 is set to 32 and it is 128 on CIFAR-100. The learning rate is "
                        "initialized as 0.002 and fixed."),
    "000_inner": ("000", "Next we apply the updated model to a mini-batch of unlabeled samples, compute the loss and "
                         "simulate a SGD step w.r.t this loss."),
    "000_lu": ("000", "During the meta update in both our option1 and option2, we predict the pseudo labels of unlabeled "
                      "images by applying softmax on the augmentation of the original unlabeled image and compute the Mean "
                      "Square Error (MSE) between prediction on the original image and pseudo labels as the unlabeled loss"),
    "000_eq7": ("000", "where I is identity matrix and Vθ Vθ indicates a second order derivative"),
    # paper 001 (L2I journal), Sec. 5.4 and App. A.2
    "001_holdout": ("001", "In all the experiments, we use the same mini-batch size for the training and hold-out samples."),
    "001_joint": ("001", "During training our method samples the hold-out mini-batch from the training set."),
    "001_approx": ("001", "we only show results for MT setting, as the exact update rule is computationally expensive "
                          "for MM and FM."),
    "001_opt": ("001", "we adopt Adam as the optimizer with fixed learning rate in CIFAR-10 and SGD as optimizer with "
                       "initial learning rate of 0.03, momentum of 0.9, and a learning rate schedule of cosine learning "
                       "rate decay in CIFAR-100"),
    "001_wd": ("001", "the weight decay is set to 0.0004 for all methods in CIFAR-10 and is 0.001 in CIFAR-100."),
    "001_ema": ("001", "exponential moving average of the learned models’ parameters with a decay rate of 0.999."),
    "001_batch": ("001", "The batch size on CIFAR-10 and CIFAR-100 is set to 64."),
    "001_fm": ("001", "The unsupervised loss weight is 1 for FixMatch as in [41]"),
    "001_lu": ("001", "we impute the labels of unlabeled images by applying softmax on the augmentation of the original "
                      "unlabeled image and use Mean Square Error (MSE) between prediction on the original image and pseudo "
                      "labels for the unlabeled loss"),
    "001_aflw": ("001", "We train all methods for 22500 steps and set the initial learning rate to 0.03 and reduce it by "
                        "0.1 at 15,000 steps. The momentum and weight decay are set to 0.9 and 0.0005 resp."),
    "001_aflw_net": ("001", "we adopt the TCDCN backbone architecture in [53] and SGD optimizer"),
    "001_aflw_lambda": ("001", "We use the linear-schedule to update the unsupervised loss weight λ to 3 in 9000 steps."),
    "001_aflw_pl": ("001", "We then estimate the location of landmarks on the augmented image and subtract the number of "
                           "moving pixels, resulting in the pseudo label for the original image."),
    # paper 002 (Meta-Semi), Sec. 4.1 and App. D
    "002_cnn": ("002", "The CNN-13 network uses the SGD optimizer with a Nesterov momentum of 0.9. The L2 regularization "
                       "coefficient is set to 1e-4, and the initial learning rate is set to 0.1. For all experiments with "
                       "CNN-13, we train the network for 600 epochs using the cosine learning rate annealing technique"),
    "002_batch": ("002", "The batch size of labeled samples and unlabeled samples are set to 25 and 75 respectively."),
    "002_ema": ("002", "we use an exponential moving average on model parameters with a decay rate of 0.999."),
    "002_wrn": ("002", "For WRN-28, we adopt exactly the same training details as (Berthelot et al., 2019) except for "
                       "the batch size: we use 32 for labeled samples and 96 for unlabeled samples."),
    "002_noise": ("002", "we remove the Gaussian noise layer and the dropout layer in the network. Other methods use "
                         "these techniques if mentioned in their original papers"),
    "002_holdout": ("002", "We hold out 5k images from the training set as the validation set."),
    "002_beta": ("002", "The hyper-parameter β of Meta-Semi is selected among [0.2, 1] on the validation set."),
    "002_l2rw": ("002", "we retain our approach of generating pseudo-labeled samples, but use their reweighting strategy."),
    "002_update": ("002", "∆θ = θt+1 — θt = —at%，F(X,U, θt)."),
    "002_weights": ("002", "where the first argument X of F(∙) is used for determining the dynamic weights of pseudo-labeled "
                           "samples."),
    # paper 003 (Meta-Gradient SSL)
    "003_init": ("003", "The pseudo labels of the unlabeled data are initialized as the current predictions of the classifier"),
    "003_eps": ("003", r"we use $\epsilon = 0.01/\|\nabla \boldsymbol{\theta}_t^l\|_2$ in this work."),
    "003_net": ("003", "The 13-layer Conv-Large (Tarvainen and Valpola, 2017) and 26-layer ResNet"),
    # the official code, as read from its repositories (the project's notes on it)
    "code_mg": ("code", "Defaults: SGD lr 0.1, momentum 0.9 (no Nesterov), linear warm-up 4,000 steps, x0.1 at 300k and "
                        "350k, 400k steps, batch 128 + 128. SVHN-1000: alpha 0.1, wd 5e-5; CIFAR-10-4000 and "
                        "CIFAR-100-10000: alpha 1.0, wd 1e-4."),
    "code_mg_ramp": ("code", "with weight 1 ramped over 4,000 steps. No EMA teacher, no threshold."),
    "code_mg_net": ("code", "128x3 -> maxpool + Dropout2d(0.5) -> 256x3 -> maxpool + Dropout2d"),
    "code_mg_eval": ("code", "Meta step in **eval mode**"),
    "code_l2i_k": ("code", "k = 50 (L2I-O), 100 (L2I-L) at lr 0.002."),
    "code_l2i_label": ("code", "L2I-L: `p <- p - 1.0 * dC_H/dp`, then an MSE step with weight 1 (no ramp)."),
    "code_aflw": ("code", "SGD lr 0.03 momentum 0.9 wd 5e-4, lr x0.1 at epoch 100, 150 x 150 steps, batch 128 + 128, "
                          "consistency 75; virtual lr 10x lr (O) or 1x (L)."),
}


def _text(source: str) -> str:
    path = SHARED / "OFFICIAL_CODE_NOTES.md" if source == "code" else next((SHARED / "papers").glob(f"{source}_*.txt"))
    return " ".join(path.read_text(encoding="utf-8").split())


@pytest.mark.skipif(not (SHARED / "papers").is_dir(), reason="the papers are not on this machine")
def test_every_quoted_sentence_is_in_its_source():
    for key, (source, sentence) in QUOTES.items():
        assert " ".join(sentence.split()) in _text(source), key


def _run(protocol: str, method: str, dataset: str, n: int):
    return protocol_config(protocol, method, dataset, n, seed=0)


def test_l2i_conf_cnn13_is_000_appendix_a2_experiment_2():
    for d, n, batch in (("cifar10", 250, 50), ("cifar100", 1000, 128)):  # 000_exp2: batch 50 (C10), 128 (C100)
        for method in ("supervised", "pseudo_label", "pseudo_label+l2i_o", "pseudo_label+l2i_l"):
            c = _run("l2i_conf_table1", method, d, n)
            assert c.steps == 40 * 1000  # 000_exp2: "40 × 1000 steps"
            assert (c.batch_labeled, c.batch_unlabeled) == (batch, batch)  # 000_metaval: labeled = unlabeled batch
            assert (c.optim.name, c.optim.schedule, c.optim.lr) == ("adamw", "constant", 0.003)  # 000_adam, 000_exp2
            assert c.optim.weight_decay == 0.02  # 000_wd
            assert c.ema_decay == 0.999  # 000_ema
            assert c.network == "cnn13_dropout"  # Fig. 4: dropout after the max-pools, no noise layer
            hp = c.resolved().hparams
            if method != "supervised":
                assert (hp["lambda_u"], hp["rampup"]) == (75.0, "linear")  # 000_lambda
                assert hp["rampup_fraction"] * c.steps == 40 * 1000 * 0.4  # 000_lambda: 40 x (1000 x 0.4)
                assert hp["threshold"] == 0.0
            if "+" in method:
                assert hp["holdout_batch"] == batch  # 000_metaval
                assert hp["l2i_inner_labeled"] is False  # 000_inner: the virtual step on the unlabeled loss only
                assert hp["l2i_inner_lr_scale"] == (50.0 if method.endswith("l2i_o") else 100.0)  # code_l2i_k
                assert hp["l2i_inner_loss"] == "mse_views"  # 000_lu: MSE to labels imputed from an augmentation
            if method.endswith("l2i_o"):
                assert hp["meta_method"] == "exact"  # 000 has no approximation
                assert hp["l2i_meta_path"] == "total"  # 000_eq7: the total derivative, identity included
            if method.endswith("l2i_l"):
                assert (hp["l2i_label_lr"], hp["l2i_label_weight"]) == (1.0, 1.0)  # 000_eta_z, code_l2i_label
    assert "CIFAR-100 lr is not stated" in _run("l2i_conf_table1", "supervised", "cifar100", 1000).protocol_notes


def test_l2i_conf_wrn_is_000_appendix_a2_experiment_3():
    for d, n, batch in (("cifar10", 250, 32), ("cifar100", 1000, 128)):  # 000_exp3
        for method in ("mean_teacher", "mixmatch", "mean_teacher+l2i_o", "mixmatch+l2i_l"):
            c = _run("l2i_conf_table2", method, d, n)
            assert c.batch_labeled == batch and c.network == "wrn28_2"
            assert (c.optim.name, c.optim.lr, c.optim.schedule, c.optim.weight_decay) == ("adamw", 0.002, "constant",
                                                                                           0.02)  # 000_exp3, 000_wd
            hp = c.resolved().hparams
            if "+" in method:
                assert hp["holdout_batch"] == batch and hp["l2i_inner_labeled"] is False
                assert hp["l2i_inner_loss"] == "mse_views"  # 000_lu
            if method.endswith("l2i_o"):
                assert hp["l2i_meta_path"] == "total"  # 000_eq7
    # the literature rows are the 'paper' family's (the same runs as 001's)
    assert _run("l2i_conf_table2", "vat", "cifar10", 250) == _run("l2i_table2", "vat", "cifar10", 250)


def test_l2i_wrn_is_001_appendix_a2_and_section_5_4():
    for d, n in (("cifar10", 250), ("cifar100", 500)):
        for method in ("mean_teacher", "mixmatch", "fixmatch", "mean_teacher+l2i_o", "mixmatch+l2i_o",
                       "fixmatch+l2i_o", "fixmatch+l2i_l"):
            c = _run("l2i_table10" if method.endswith("l2i_l") else "l2i_table2", method, d, n)
            assert c.batch_labeled == 64 and c.network == "wrn28_2"  # 001_batch
            assert c.ema_decay == 0.999  # 001_ema
            if d == "cifar100":  # 001_opt, 001_wd: SGD 0.03, momentum 0.9, cosine, weight decay 0.001
                assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.schedule, c.optim.weight_decay) == (
                    "sgd", 0.03, 0.9, "cosine", 1e-3), method
            elif not method.startswith("fixmatch"):  # 001_opt: Adam, fixed lr (lr 0.002 from the official code)
                assert (c.optim.name, c.optim.lr, c.optim.schedule) == ("adamw", 0.002, "constant")
                assert "0.0004" in c.protocol_notes  # 001_wd's CIFAR-10 value vs the code's 0.02 x lr: recorded
            hp = c.resolved().hparams
            if method.startswith("fixmatch"):
                assert hp["lambda_u"] == 1.0  # 001_fm
            if "+" in method:
                assert hp["holdout_batch"] == c.batch_labeled  # 001_holdout
                assert hp["holdout"] == "joint"  # 001_joint
                assert hp["l2i_inner_labeled"] is True  # 001 Alg. 1 line 8: C_T + C_U
                assert hp["l2i_inner_loss"] == "mse_views"  # 001_lu, for every base
            if method.endswith("l2i_o"):
                assert hp["meta_method"] == "approx" and hp["l2i_inner_lr_scale"] == 50.0  # 001_approx, code_l2i_k
                assert hp["l2i_meta_path"] == "z"  # 001 Eq. 4: through z
            if method.endswith("l2i_l"):
                assert hp["l2i_inner_lr_scale"] == 100.0 and hp["l2i_label_lr"] == 1.0  # code_l2i_k, code_l2i_label


def test_l2i_aflw_is_001_section_5_2_and_appendix_a1():
    for n in (91, 182, 455):  # 1% / 2% / 5% of the 9,110 training images left after 001's validation hold-out
        for method in ("supervised", "pseudo_label", "mean_teacher", "pseudo_label+l2i_o", "mean_teacher+l2i_o",
                       "mean_teacher+l2i_l"):
            c = _run("l2i_table9" if method.endswith("l2i_l") else "l2i_table1", method, "aflw", n)
            assert c.network == "tcdcn"  # 001_aflw_net
            o = c.optim  # 001_aflw: 22,500 steps, lr 0.03 x0.1 at 15,000, momentum 0.9, weight decay 5e-4
            assert (c.steps, o.name, o.lr, o.momentum, o.weight_decay, o.schedule, o.milestones, o.gamma) == (
                22500, "sgd", 0.03, 0.9, 5e-4, "step", (15000,), 0.1), method
            assert (c.batch_labeled, c.batch_unlabeled, o.nesterov) == (128, 128, False)  # code_aflw
            hp = c.resolved().hparams
            if method != "supervised":  # 001_aflw_lambda: linear to 3 over 9,000 of 22,500 steps
                assert (hp["lambda_u"], hp["rampup"], hp["rampup_fraction"] * c.steps) == (3.0, "linear", 9000.0)
            if "+" in method:
                assert hp["holdout_batch"] == c.batch_labeled and hp["holdout"] == "joint"  # 001_holdout, 001_joint
                assert hp["l2i_inner_labeled"] is True  # 001 Alg. 1 line 8
            if method.endswith("l2i_o"):  # code_aflw: 10 x lr; Table 1's L2I rows are Table 7's approx row
                assert hp["meta_method"] == "approx" and hp["l2i_inner_lr_scale"] == 10.0
            if method.endswith("l2i_l"):
                assert hp["l2i_inner_lr_scale"] == 1.0 and hp["l2i_label_lr"] == 1.0  # code_aflw, 000_eta_z
            if method == "pseudo_label":
                assert hp["threshold"] == 0.0  # 001_aflw_pl: every unlabeled image gets its pseudo-label


@pytest.mark.skipif(not (SHARED / "paper_numbers.csv").is_file(), reason="the transcribed tables are not here")
def test_the_l2i_variant_readings_match_the_journals_own_tables():
    """Table 2's FM-L2I row is Table 10's (O) row and its MT-L2I row Table 8's approx row; on AFLW, Table 1's
    MT-L2I row is Table 7's approx row and Table 9's (O) row."""
    import csv

    rows = list(csv.DictReader((SHARED / "paper_numbers.csv").open()))

    def cells(table, method):
        return {(r["dataset"], r["n_labels"]): r["value"] for r in rows
                if r["paper"] == "001" and r["table"] == table and r["method"] == method}

    assert cells("Table 2", "FM-L2I (Ours)") == cells("Table 10", "FM-L2I (O)") != cells("Table 10", "FM-L2I (L)")
    t2, approx, exact = cells("Table 2", "MT-L2I (Ours)"), cells("Table 8", "MT-L2I (approx)"), cells(
        "Table 8", "MT-L2I (exact)")
    assert sum(t2[k] == approx[k] for k in t2) == 5 and sum(t2[k] == exact[k] for k in t2) == 0  # 14.76 vs 15.76
    t1 = cells("Table 1", "MT-L2I (Ours)")
    assert len(t1) == 3 and t1 == cells("Table 7", "MT-L2I (approx)") == cells("Table 9", "MT-L2I (O)")
    assert all(t1[k] != v for k, v in cells("Table 7", "MT-L2I (exact)").items())


def test_paper_cnn13_is_002_appendix_d():
    for d, n in (("cifar10", 1000), ("cifar100", 4000)):
        c = _run("meta_semi_table1", "meta_semi", d, n)
        o = c.optim
        assert (o.name, o.momentum, o.nesterov, o.weight_decay, o.lr, o.schedule) == (
            "sgd", 0.9, True, 1e-4, 0.1, "cosine")  # 002_cnn
        assert c.steps == 600 * 45000 // 100  # 002_cnn: 600 epochs; 002_holdout: 45,000 training images
        assert (c.batch_labeled, c.batch_unlabeled) == (25, 75)  # 002_batch
        hp = c.resolved().hparams
        assert hp["ema_decay"] == 0.999  # 002_ema
        assert 0.2 <= hp["beta"] <= 1.0  # 002_beta: chosen in [0.2, 1]
        # 002_weights: G on X_tilde; 002_update: the update is F = L_meta alone; Eq. 9's signs
        assert (hp["meta_objective"], hp["labeled_weight"], hp["weight_rule"]) == ("mixed", 0.0, "sign")
        assert c.network == _run("meta_semi_table1", "ict", d, n).network == "cnn13"  # 002_noise (ICT: none)
        for m in ("pi_model", "temporal_ensembling", "mean_teacher"):
            if d == "cifar10" or m != "temporal_ensembling":
                assert _run("meta_semi_table1", m, d, n).network == "cnn13_noise_dropout"  # 002_noise
    assert _run("meta_semi_table1", "vat", "cifar10", 1000).network == "cnn13_dropout"
    # 002_l2rw: the L2RW row is Meta-Semi's pipeline and training setup with L2RW's weights, nothing else changed
    for d, n in (("cifar10", 1000), ("cifar100", 10000)):
        l2rw, ms = _run("meta_semi_table1", "meta_semi_l2rw", d, n), _run("meta_semi_table1", "meta_semi", d, n)
        assert (l2rw.network, l2rw.optim, l2rw.steps, l2rw.batch_labeled, l2rw.batch_unlabeled) == (
            ms.network, ms.optim, ms.steps, ms.batch_labeled, ms.batch_unlabeled)
        lh, mh = l2rw.resolved().hparams, ms.resolved().hparams
        assert lh["weight_rule"] == "l2rw" and {k: v for k, v in lh.items() if k != "weight_rule"} == {
            k: v for k, v in mh.items() if k != "weight_rule"}


def test_paper_wrn_meta_semi_is_mixmatch_with_002s_batch():
    for d, n in (("cifar10", 250), ("cifar100", 10000)):
        ms, mm = _run("meta_semi_table2", "meta_semi", d, n), _run("meta_semi_table2", "mixmatch", d, n)
        assert (ms.batch_labeled, ms.batch_unlabeled) == (32, 96)  # 002_wrn
        hp = ms.resolved().hparams
        assert (hp["meta_objective"], hp["labeled_weight"], hp["weight_rule"]) == ("mixed", 0.0, "sign")  # Alg. 1
        assert (ms.optim, ms.steps, ms.network, ms.ema_decay) == (mm.optim, mm.steps, mm.network, mm.ema_decay)


def test_meta_grad_cnn13_is_003_and_its_official_code():
    for d, n, gamma, wd in (("svhn", 1000, 0.1, 5e-5), ("cifar10", 4000, 1.0, 1e-4), ("cifar100", 10000, 1.0, 1e-4)):
        for method in ("pseudo_label", "pseudo_label+meta_grad"):
            c = _run("meta_grad_table1", method, d, n)
            o = c.optim
            assert (o.name, o.lr, o.momentum, o.nesterov) == ("sgd", 0.1, 0.9, False)  # code_mg
            assert (o.warmup_steps, o.schedule, o.milestones, o.gamma) == (4000, "step", (300_000, 350_000), 0.1)
            assert (c.steps, c.batch_labeled, c.batch_unlabeled) == (400_000, 128, 128)  # code_mg
            assert o.weight_decay == wd  # code_mg: 5e-5 on SVHN-1000, 1e-4 on CIFAR
            assert c.network == "cnn13_dropout2d"  # code_mg_net; 003_net: Conv-Large
            hp = c.resolved().hparams
            assert hp["threshold"] == 0.0  # code_mg_ramp: no threshold
            assert hp["lambda_u"] == 1.0 and hp["rampup_fraction"] * c.steps == 4000  # code_mg_ramp
            if "+" in method:
                assert hp["meta_grad_init"] == "model"  # 003_init (Eq. 2)
                assert hp["mixup_gamma"] == gamma and hp["use_mixup"] is True  # code_mg
                assert hp["meta_grad_eps_scale"] == 0.01 and hp["meta_method"] == "fd"  # 003_eps (Alg. 2)
                assert hp["meta_bn"] == "eval"  # code_mg_eval
                assert hp["meta_grad_loss"] == "mse"  # 003 Eq. 13
                assert hp["mixup_mask"] == "base"  # the base's mask, all ones at threshold 0: Eq. 12's MixUp
    # its baselines are 002's CNN-13 runs: the same configs, planned once
    assert _run("meta_grad_table1", "mean_teacher", "cifar10", 4000) == _run("meta_semi_table1", "mean_teacher",
                                                                              "cifar10", 4000)


def test_every_protocol_family_is_tested_here():
    tested = {"l2i_conf_cnn13", "l2i_conf_wrn", "l2i_wrn", "paper_cnn13", "paper", "meta_grad_cnn13", "l2i_aflw"}
    assert {p.preset for p in PROTOCOLS.values()} <= tested and set(presets.FAMILIES) <= tested
    assert all(re.fullmatch(r"(000|001|002|003|code)_[a-z0-9_]+", k) for k in QUOTES)
