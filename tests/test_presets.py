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
