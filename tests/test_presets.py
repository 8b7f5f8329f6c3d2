"""Paper presets: the registry, composition resolution, identity, listing, CLI selection.

The values of each family against its paper's text are in tests/test_preset_values.py."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from algorithms import get_algorithm, list_algorithms, list_compositions
from algorithms.hparams import from_dict
from bench import presets
from bench.config import OptimConfig, RunConfig
from bench.preset_entry import Preset
from bench.run import main


def _cfg(algorithm="mean_teacher", dataset="cifar10"):
    return RunConfig.from_dict(dict(dataset=dataset, algorithm=algorithm, network="cnn_small", n_labels=250, steps=100))


def _bases_for(p: Preset) -> list[str]:
    """Methods of ``p``'s family (or its parents) on ``p``'s dataset that compose with ``p``'s rule."""
    rule = p.algorithm.partition("+")[2]
    return [b for b in list_algorithms() if f"{b}+{rule}" in list_compositions() and presets.find(p.name, b, p.dataset)]


def _applied_cfgs():
    """(entry, a config that entry reaches) for every entry: a rule entry through each of its bases."""
    for p in presets.list_presets():
        if p.kind == "method":
            yield p, presets.apply(_cfg(p.algorithm, p.dataset), p.name)
        else:
            bases = _bases_for(p) if p.kind == "rule" else [p.algorithm.partition("+")[0]]
            assert bases, f"{p.name}/{p.algorithm}/{p.dataset}: no base of its family composes with it"
            for b in bases:
                algo = f"{b}+{p.algorithm.partition('+')[2]}"
                yield p, presets.apply(_cfg(algo, p.dataset), p.name)


def test_every_entry_is_registered_unique_and_resolves():
    import datasets
    from algorithms.networks import list_networks

    keys = [(p.name, p.algorithm, p.dataset) for p in presets.list_presets()]
    assert len(keys) == len(set(keys))
    for p in presets.list_presets():
        assert p.name in presets.FAMILIES and p.dataset in datasets.list_datasets(), p
        assert p.source and p.notes, f"{p.name}/{p.algorithm}/{p.dataset} needs a source and notes"
        assert p.run.get("network", "cnn_small") in list_networks(), p
        if p.kind == "method":
            assert p.algorithm in list_algorithms(), p
        else:
            get_algorithm(p.algorithm if p.kind == "composition" else "pseudo_label" + p.algorithm)
    for p, cfg in _applied_cfgs():
        full = cfg.resolved()  # a wrong hyperparameter key or type raises here
        for k, v in p.hparams.items():
            assert full.hparams[k] == v, (p, k)
        for k, v in p.run.items():
            want = from_dict(OptimConfig, v, "optimizer key") if k == "optim" else v
            assert getattr(cfg, k) == want, (p, k)
        assert p.source in cfg.protocol_notes


def test_rule_entries_set_only_their_rules_hyperparameters():
    for p in presets.list_presets():
        if p.kind != "rule":
            continue
        for b in _bases_for(p):
            composed = {f.name for f in dataclasses.fields(get_algorithm(b + p.algorithm).Hparams)}
            own = {f.name for f in dataclasses.fields(get_algorithm(b).Hparams)}
            assert set(p.hparams) <= composed - own, (p.name, p.algorithm, b, set(p.hparams) - (composed - own))


def test_rule_and_composition_entries_cannot_change_the_training_setup():
    with pytest.raises(ValueError, match="sets no run fields"):
        Preset("paper", "+l2i_o", "cifar10", "s", run={"steps": 10})
    with pytest.raises(ValueError, match="sets no run fields"):
        Preset("paper", "mean_teacher+l2i_o", "cifar10", "s", run={"batch_labeled": 8})


def test_a_composition_gets_its_base_then_its_rule_then_its_pair():
    base = presets.apply(_cfg("mean_teacher"), "l2i_wrn")
    comp = presets.apply(_cfg("mean_teacher+l2i_o"), "l2i_wrn")
    res = presets.resolve("l2i_wrn", "mean_teacher+l2i_o", "cifar10")
    # the base entry comes from the parent family 'paper', the rule's from l2i_wrn itself
    assert [(p.name, p.algorithm) for p in res.applied] == [("paper", "mean_teacher"), ("l2i_wrn", "+l2i_o")]
    assert comp.preset == "paper:mean_teacher;l2i_wrn:+l2i_o" and base.preset == "paper"
    for f in ("network", "steps", "batch_labeled", "batch_unlabeled", "ema_decay", "optim"):
        assert getattr(comp, f) == getattr(base, f), f
    assert {k: comp.hparams[k] for k in base.hparams} == base.hparams
    assert comp.hparams["l2i_inner_lr_scale"] == 50.0 and comp.hparams["holdout_batch"] == comp.batch_labeled
    # a BASE+RULE entry, where one exists, comes last and wins
    pair = Preset("l2i_wrn", "mean_teacher+l2i_o", "cifar10", "test", hparams={"l2i_inner_lr_scale": 7.0}, notes="n")
    res2 = dataclasses.replace(res, applied=res.applied + (pair,))
    assert presets.apply(_cfg("mean_teacher+l2i_o"), "l2i_wrn", res2).hparams["l2i_inner_lr_scale"] == 7.0


def test_missing_preset_is_recorded_not_silent():
    cfg = presets.apply(_cfg("supervised", "digits"), "paper")
    assert cfg.preset == "paper:none" and "no 'paper' preset for supervised on digits" in cfg.protocol_notes
    assert cfg.network == "cnn_small"
    # a composition whose rule has no entry in the family keeps the base's and says so
    part = presets.apply(_cfg("mean_teacher+l2i_o"), "paper")
    assert part.preset == "paper:mean_teacher,+l2i_o=none" and part.network == "wrn28_2"
    assert "no 'paper' preset for +l2i_o on cifar10: the rule's defaults used" in part.protocol_notes
    assert not presets.resolve("paper", "mean_teacher+l2i_o", "cifar10").complete


def test_families_inherit_from_their_parent_unless_they_override():
    assert presets.find("l2i_wrn", "pi_model", "cifar10") is presets.find("paper", "pi_model", "cifar10")
    own = presets.find("l2i_wrn", "mixmatch", "cifar100")
    assert own.name == "l2i_wrn" and own is not presets.find("paper", "mixmatch", "cifar100")
    assert presets.find("l2i_conf_cnn13", "pi_model", "cifar10") is None  # no parent
    assert presets.find("nope", "pi_model", "cifar10") is None


def test_mean_teacher_paper_values_from_the_l2i_code():
    cfg = presets.apply(_cfg(), "paper")
    hp = cfg.typed_hparams()
    assert (cfg.network, cfg.steps, cfg.batch_labeled, cfg.batch_unlabeled) == ("wrn28_2", 2 ** 20, 64, 64)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 0.002, 0.02)
    assert (hp.lambda_u, hp.ema_decay, hp.rampup, hp.rampup_fraction) == (50.0, 0.999, "linear", 0.4)
    assert cfg.run_id != dataclasses.replace(cfg, preset="").run_id  # the preset is part of the identity


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
    mm = {p.dataset: p.hparams["lambda_u"] for p in presets.list_presets() if p.algorithm == "mixmatch" and p.name == "paper"}
    assert (mm["cifar10"], mm["cifar100"], mm["svhn"]) == (75.0, 150.0, 250.0)


def test_epoch_budgets_follow_the_training_set_after_the_val_hold_out():
    import datasets

    for d in ("cifar10", "cifar100", "svhn"):
        info = datasets.get_info(d)
        n_train = sum(info.train_class_counts) - info.paper_n_val  # 45,000 (CIFAR), 72,257 (SVHN)
        cfg = presets.apply(_cfg("meta_semi", d), "paper_cnn13")
        assert cfg.steps == 600 * round(n_train / 100), d  # 600 epochs at 25 + 75 images a step
    assert presets.apply(_cfg("meta_semi", "cifar10"), "paper_cnn13").steps == 270_000


def test_where_no_paper_of_ours_gives_a_value_the_entry_says_from_memory():
    # entries whose source is only another paper (not 000-003 and not an official code we read)
    ours = ("000", "001", "002", "003", "L2I", "Meta-Semi", "Meta-Gradient", "official code")
    for p in presets.list_presets():
        if not any(o in p.source for o in ours):
            assert "from memory" in p.notes, (p.name, p.algorithm, p.dataset)
        if "from memory" in p.notes:
            assert "not verified" in p.notes, (p.name, p.algorithm, p.dataset)


def test_listing_command_prints_every_entry_and_family():
    out = subprocess.run([sys.executable, "-m", "bench.presets"], capture_output=True, text=True, timeout=120).stdout
    table, _, tail = out.partition(f"\n{len(presets.PRESETS)} presets in {len(presets.FAMILIES)} families")
    rows = [line.split() for line in table.splitlines()[1:] if line.strip()]
    assert {(r[0], r[1], r[2]) for r in rows} == {(p.name, p.algorithm, p.dataset) for p in presets.list_presets()}
    assert len(rows) == len(presets.PRESETS)
    for f in presets.FAMILIES.values():
        assert f"  {f.name}: {f.description}" in tail


def test_cli_applies_the_preset(tmp_path, capsys):
    assert main(["--preset", "paper", "--datasets", "digits", "--algorithms", "mean_teacher", "--seeds", "1",
                 "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
    assert "mean_teacher" in capsys.readouterr().out


def _plan(argv, monkeypatch, tmp_path):
    import datasets

    from bench.run import build_parser, plan

    # CIFAR is not on this machine; everything else in plan() is checked as usual.
    monkeypatch.setattr(datasets, "check_available", lambda *a, **k: None)
    return plan(build_parser().parse_args(argv + ["--results-dir", str(tmp_path / "r")]))[0]


def test_cli_preset_lands_in_the_run_config(monkeypatch, tmp_path):
    configs = _plan(["--suite", "quick", "--datasets", "cifar10", "--labels", "250", "--algorithms", "fixmatch,ict",
                     "--seeds", "1", "--preset", "paper_cnn13"], monkeypatch, tmp_path)
    by_algo = {c.algorithm: c for c in configs}
    ict = by_algo["ict"]
    assert ict.preset == "paper_cnn13" and ict.network == "cnn13" and ict.typed_hparams().lambda_u == 10.0
    assert "ICT (Verma et al. 2019)" in ict.protocol_notes
    assert by_algo["fixmatch"].preset == "paper_cnn13:none"  # no CNN-13 FixMatch table: recipe kept, recorded
    assert by_algo["fixmatch"].network == "wrn28_2"
    fm = _plan(["--suite", "quick", "--datasets", "cifar10", "--labels", "250", "--algorithms", "fixmatch", "--seeds",
                "1", "--preset", "paper", "--steps", "7"], monkeypatch, tmp_path)[0]
    # --steps beats the preset; a run shorter than 40 steps is evaluated every step (20 in its last half at most)
    assert (fm.preset, fm.batch_unlabeled, fm.steps, fm.eval_every) == ("paper", 448, 7, 1)


def test_cli_preset_reaches_compositions(monkeypatch, tmp_path):
    comp, base = sorted(_plan(["--suite", "quick", "--datasets", "svhn", "--labels", "1000", "--seeds", "1",
                               "--algorithms", "pseudo_label+meta_grad,pseudo_label", "--preset", "meta_grad_cnn13"],
                              monkeypatch, tmp_path), key=lambda c: -len(c.algorithm))
    assert comp.preset == "meta_grad_cnn13:pseudo_label,+meta_grad" and base.preset == "meta_grad_cnn13"
    assert (comp.network, comp.steps, comp.optim) == (base.network, base.steps, base.optim)
    assert (comp.network, comp.steps, comp.optim.schedule, comp.optim.milestones) == (
        "cnn13_dropout2d", 400_000, "step", (300_000, 350_000))
    assert comp.hparams["meta_grad_init"] == "model" and comp.hparams["mixup_gamma"] == 0.1
