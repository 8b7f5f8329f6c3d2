"""Paper presets: applied values, identity, listing, CLI selection."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

from bench import presets
from bench.config import RunConfig
from bench.run import main


def _cfg(algorithm="mean_teacher", dataset="cifar10"):
    return RunConfig.from_dict(dict(dataset=dataset, algorithm=algorithm, network="cnn_small", n_labels=250, steps=100))


def test_every_preset_builds_a_valid_config():
    for p in presets.list_presets():
        cfg = presets.apply(_cfg(p.algorithm, p.dataset), p.name)
        cfg.typed_hparams()  # hyperparameter names exist and types are right
        assert cfg.preset == p.name and p.source in cfg.protocol_notes


def test_mean_teacher_paper_values_from_the_l2i_code():
    cfg = presets.apply(_cfg(), "paper")
    hp = cfg.typed_hparams()
    assert (cfg.network, cfg.steps, cfg.batch_labeled, cfg.batch_unlabeled) == ("wrn28_2", 2 ** 20, 64, 64)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 0.002, 0.02)
    assert (hp.lambda_u, hp.ema_decay, hp.rampup, hp.rampup_fraction) == (50.0, 0.999, "linear", 0.4)
    assert cfg.run_id != dataclasses.replace(cfg, preset="").run_id  # the preset is part of the identity


def test_missing_preset_is_recorded_not_silent():
    cfg = presets.apply(_cfg("supervised", "digits"), "paper")
    assert cfg.preset == "paper:none" and "no 'paper' preset for supervised on digits" in cfg.protocol_notes
    assert cfg.network == "cnn_small"


def test_listing_command_prints_every_preset():
    out = subprocess.run([sys.executable, "-m", "bench.presets"], capture_output=True, text=True, timeout=120).stdout
    for p in presets.list_presets():
        assert any(p.algorithm in line and p.dataset in line for line in out.splitlines())


def test_cli_applies_the_preset(tmp_path, capsys):
    assert main(["--preset", "paper", "--datasets", "digits", "--algorithms", "mean_teacher", "--seeds", "1",
                 "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
    assert "mean_teacher" in capsys.readouterr().out


def _registered_preset_cfgs():
    from algorithms import list_algorithms
    from algorithms.networks import list_networks

    import datasets

    for p in presets.list_presets():
        assert p.algorithm in list_algorithms(), p
        assert p.dataset in datasets.list_datasets(), p
        assert p.run.get("network", "cnn_small") in list_networks(), p
        assert p.source and p.notes, f"{p.name}/{p.algorithm}/{p.dataset} needs a source and notes"
        yield p, presets.apply(_cfg(p.algorithm, p.dataset), p.name)


def test_every_preset_is_registered_unique_and_resolves():
    keys = [(p.name, p.algorithm, p.dataset) for p in presets.list_presets()]
    assert len(keys) == len(set(keys))  # find() would silently pick the first of duplicates
    for p, cfg in _registered_preset_cfgs():
        full = cfg.resolved()  # a wrong hyperparameter key or type raises here
        for k, v in p.hparams.items():
            assert full.hparams[k] == v
        for k, v in p.run.items():
            assert (dataclasses.asdict(cfg.optim) if k == "optim" else getattr(cfg, k)) == (
                {**dataclasses.asdict(presets.OptimConfig()), **v} if k == "optim" else v)


def test_both_families_cover_the_methods_of_their_tables():
    have = {(p.name, p.algorithm, p.dataset) for p in presets.list_presets()}
    # 002 Table 1 (CNN-13, CIFAR-10) rows we implement, and 001 Table 2 (WRN-28-2, CIFAR-10) rows.
    for algo in ("supervised", "supervised_mixup", "pi_model", "temporal_ensembling", "mean_teacher", "vat", "ict",
                 "meta_semi"):
        assert ("paper_cnn13", algo, "cifar10") in have, algo
    for algo in ("pseudo_label", "pi_model", "vat", "supervised_mixup", "mean_teacher", "mixmatch", "fixmatch"):
        assert ("paper", algo, "cifar10") in have, algo
    for d in ("cifar10", "cifar100", "stl10"):
        assert ("paper", "meta_semi", d) in have
    assert ("paper_cnn13", "meta_semi", "svhn") in have


def test_class_averaged_weights_are_converted_to_our_class_summed_losses():
    import datasets

    # Published w_max on the class-AVERAGED squared error: Laine & Aila (Pi 100, TE 30), MT 100, ICT 100.
    published = {"pi_model": 100.0, "temporal_ensembling": 30.0, "mean_teacher": 100.0, "ict": 100.0}
    seen = 0
    for p in presets.list_presets():
        if p.name == "paper_cnn13" and p.algorithm in published:
            c = datasets.get_info(p.dataset).num_classes
            assert abs(p.hparams["lambda_u"] * c - published[p.algorithm]) < 1e-9, p
            seen += 1
    assert seen == 12  # 4 methods x CIFAR-10, CIFAR-100, SVHN
    # MixMatch's loss is class-averaged like its paper: no conversion (75 / 150 / 250).
    mm = {p.dataset: p.hparams["lambda_u"] for p in presets.list_presets() if p.algorithm == "mixmatch"}
    assert (mm["cifar10"], mm["cifar100"], mm["svhn"]) == (75.0, 150.0, 250.0)


def test_epoch_budgets_follow_the_training_set_after_the_val_hold_out():
    import datasets

    for d in ("cifar10", "cifar100", "svhn"):
        info = datasets.get_info(d)
        n_train = sum(info.train_class_counts) - info.paper_n_val  # 45,000 (CIFAR), 72,257 (SVHN)
        cfg = presets.apply(_cfg("meta_semi", d), "paper_cnn13")
        assert cfg.steps == 600 * round(n_train / 100), d  # 600 epochs at 25 + 75 images a step
        assert (cfg.batch_labeled, cfg.batch_unlabeled, cfg.network) == (25, 75, "cnn13")
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.nesterov, cfg.optim.weight_decay, cfg.optim.schedule) == (
            "sgd", 0.1, True, 1e-4, "cosine")
    assert presets.apply(_cfg("meta_semi", "cifar10"), "paper_cnn13").steps == 270_000


def test_fixmatch_and_mixmatch_paper_settings():
    fm = presets.apply(_cfg("fixmatch", "cifar10"), "paper")
    hp = fm.typed_hparams()
    assert (fm.batch_labeled, fm.batch_unlabeled, fm.steps) == (64, 7 * 64, 2 ** 20)
    assert (fm.optim.name, fm.optim.lr, fm.optim.momentum, fm.optim.nesterov, fm.optim.weight_decay) == (
        "sgd", 0.03, 0.9, True, 5e-4)
    assert (hp.threshold, hp.lambda_u, hp.rampup) == (0.95, 1.0, "none")
    assert presets.apply(_cfg("fixmatch", "cifar100"), "paper").optim.weight_decay == 1e-3
    mm = presets.apply(_cfg("mixmatch", "cifar10"), "paper")
    hp = mm.typed_hparams()
    assert (hp.K, hp.T, hp.alpha, hp.lambda_u, hp.rampup) == (2, 0.5, 0.75, 75.0, "linear")
    assert abs(hp.rampup_fraction * 2 ** 20 - 16000) < 1e-6  # linear ramp over the first 16k steps
    assert (mm.optim.name, mm.optim.lr, mm.optim.weight_decay) == ("adamw", 0.002, 0.02)


def test_listing_names_both_families_and_counts_every_preset():
    out = subprocess.run([sys.executable, "-m", "bench.presets"], capture_output=True, text=True, timeout=120).stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip() and not line.startswith(f"{len(presets.PRESETS)} presets")]
    assert {(r[0], r[1], r[2]) for r in rows} == {(p.name, p.algorithm, p.dataset) for p in presets.list_presets()}
    assert f"{len(presets.PRESETS)} presets" in out


def _plan(argv, monkeypatch, tmp_path):
    import datasets

    from bench.run import build_parser, plan

    # CIFAR is not on this machine; everything else in plan() is checked as usual.
    monkeypatch.setattr(datasets, "check_available", lambda *a, **k: None)
    return plan(build_parser().parse_args(argv + ["--results-dir", str(tmp_path / "r")]))[0]


def test_cli_preset_lands_in_the_run_config(monkeypatch, tmp_path):
    configs = _plan(["--suite", "full", "--datasets", "cifar10", "--labels", "250", "--algorithms", "fixmatch,ict",
                     "--seeds", "1", "--preset", "paper_cnn13"], monkeypatch, tmp_path)
    by_algo = {c.algorithm: c for c in configs}
    ict = by_algo["ict"]
    assert ict.preset == "paper_cnn13" and ict.network == "cnn13" and ict.typed_hparams().lambda_u == 10.0
    assert "ICT (Verma et al. 2019)" in ict.protocol_notes
    assert by_algo["fixmatch"].preset == "paper_cnn13:none"  # no CNN-13 FixMatch table: recipe kept, recorded
    assert by_algo["fixmatch"].network == "wrn28_2"
    fm = _plan(["--suite", "full", "--datasets", "cifar10", "--labels", "250", "--algorithms", "fixmatch", "--seeds",
                "1", "--preset", "paper", "--steps", "7"], monkeypatch, tmp_path)[0]
    assert (fm.preset, fm.batch_unlabeled, fm.steps, fm.eval_every) == ("paper", 448, 7, 7)  # --steps beats the preset
