"""bench.run: bad input is refused up front (one line, exit 2, nothing written)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.run import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_main(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    return exc.value.code, err


BAD_INPUTS = [
    (["--suite", "nope"], "unknown suite 'nope'"),
    (["--algorithms", "supervised,nope"], "unknown algorithm 'nope'"),
    (["--datasets", "nope"], "unknown dataset 'nope'"),
    (["--network", "nope"], "unknown network 'nope'"),
    (["--datasets", "digits", "--labels", "55"], "multiple of the 10 classes"),
    (["--datasets", "digits", "--labels", "5"], "fewer labels than classes"),
    (["--datasets", "digits", "--labels", "100000"], "digits"),
    (["--labels", "0"], "--labels must be positive"),
    (["--steps", "0"], "--steps must be positive"),
    (["--steps", "-3"], "--steps must be positive"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--workers", "16"], "--workers 16 needs 16 CPUs"),
    (["--workers", "64"], "not divisible by 64 workers"),
    (["--gpus-per-worker", "1"], "GPUs but this machine has"),
    (["--network", "cnn13", "--datasets", "digits"], "does not accept input shape"),
    (["--datasets", "cifar10", "--data-root", "{tmp}/empty"], "{tmp}/empty"),
    (["--datasets", "svhn", "--data-root", "{tmp}/empty"], "--download"),
    (["--results-dir", "{tmp}/a_file"], "not writable"),
    (["--suite", "smoke", "--steps", "abc"], "invalid int value"),
    (["--algorithms", "vat+l2i_o"], "vat cannot carry a meta rule"),
    (["--algorithms", "pseudo_label+nope"], "unknown meta rule 'nope'"),
    (["--algorithms", "pseudo_label", "--hp", "meta_method=approx"], "no selected algorithm has this hyperparameter"),
    (["--algorithms", "pseudo_label+l2i_o", "--hp", "meta_method=nope"], "meta_method must be one of"),
    (["--algorithms", "pseudo_label+l2i_o", "--hp", "l2i_variant=nope"], "meta_method must be one of"),
    (["--algorithms", "pseudo_label", "--hp", "threshold"], "--hp expects KEY=VALUE"),
    (["--max-failures", "-1"], "--max-failures must be >= 0"),
    (["--checkpoint-every-min", "-5"], "--checkpoint-every-min must be >= 0"),
    (["--checkpoint-every-min", "nan"], "--checkpoint-every-min must be >= 0"),
    (["--log-to", "wandb"], "--log-to wandb: unknown (valid: tensorboard, mlflow)"),
]


@pytest.mark.parametrize("args,expected", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_one_line_exit_2_nothing_written(args, expected, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    results = tmp_path / "results"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--results-dir" not in args:
        args += ["--results-dir", str(results)]
    if "--gpus-per-worker" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    code, err = _run_main(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bench.run: error: ")
    assert expected.replace("{tmp}", str(tmp_path)) in lines[0]
    assert not results.exists()
    assert (tmp_path / "a_file").read_text() == "x"


def test_exit_status_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--suite", "nope", "--results-dir", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bench.run: error: unknown suite 'nope' (valid: smoke, quick, standard, toy, full)"]
    assert not (tmp_path / "r").exists()


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ["--suite", "--algorithms", "--datasets", "--labels", "--seeds", "--steps", "--workers",
                 "--gpus-per-worker", "--results-dir", "--data-root", "--download", "--address", "--max-failures",
                 "--checkpoint-every-min", "--keep-checkpoints", "--log-to"]:
        assert flag in out


def test_dry_run_lists_every_algorithm_and_seed(tmp_path, capsys):
    from algorithms import list_algorithms

    assert main(["--suite", "quick", "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.splitlines()
    from algorithms import list_rules

    # (algorithms + one Pseudo-Label composition per rule) x (10 two_circles seeds + 3 digits seeds)
    assert len(out) == (len(list_algorithms()) + len(list_rules())) * (10 + 3)
    assert all(line.startswith("todo ") for line in out)
    for algo in list_algorithms():
        assert sum(f" {algo} " in line for line in out) == 10 + 3
    assert not (tmp_path / "r").exists()


def test_hp_sets_the_hyperparameter_where_the_algorithm_has_it(tmp_path):
    from bench.run import build_parser, plan

    def configs_with(name):
        args = build_parser().parse_args(["--suite", "smoke", "--algorithms", "pseudo_label+l2i_o,supervised",
                                          "--hp", f"{name}=approx", "--hp", "threshold=0.5",
                                          "--results-dir", str(tmp_path)])
        return plan(args)[0]

    configs = configs_with("meta_method")
    for c in configs:
        if c.algorithm == "supervised":
            assert "meta_method" not in c.hparams
        else:
            assert c.hparams["meta_method"] == "approx" and c.hparams["threshold"] == 0.5
    assert len({c.run_id for c in configs}) == len(configs)
    # the option's old name still works (one-line deprecation warning) and means the same run
    import pytest

    with pytest.warns(FutureWarning, match="l2i_variant is deprecated: use meta_method"):
        old = configs_with("l2i_variant")
    assert [c.run_id for c in old] == [c.run_id for c in configs]


EMPTY_ITEMS = [
    ("bench.run", ["--labels", "50,,100"]),
    ("bench.run", ["--algorithms", "supervised,"]),
    ("bench.run", ["--datasets", ",two_circles"]),
    ("bench.tune", ["--algorithm", "pseudo_label", "--params", "threshold,,lambda_u"]),
    ("bench.sensitivity", ["--algorithms", "meta_semi,,ict", "--param", "beta", "--values", "0.1"]),
    ("bench.sensitivity", ["--param", "beta,", "--values", "0.1"]),
    ("bench.sensitivity", ["--param", "beta", "--values", "0.1,,0.5"]),
    ("bench.perf", ["--algorithms", "supervised,,pseudo_label"]),
    ("bench.perf", ["--variants", "pseudo_label:threshold=0.5,,lambda_u=1"]),
]


@pytest.mark.parametrize("module,args", EMPTY_ITEMS, ids=[f"{m} {' '.join(a)}" for m, a in EMPTY_ITEMS])
def test_empty_list_items_are_errors_in_every_cli(module, args, tmp_path, capsys):
    import importlib

    cli = importlib.import_module(module)
    extra = [] if module == "bench.perf" else ["--results-dir", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exc:
        cli.main(args + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert "empty item" in err[0] and err[0].startswith(f"{module}: error: ")
    assert not (tmp_path / "r").exists()


def test_connect_timeout_is_checked_and_documented(tmp_path, capsys):
    code, err = _run_main(["--connect-timeout", "0", "--results-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and "--connect-timeout must be positive" in err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--connect-timeout" in capsys.readouterr().out


def test_channels_last_flag_reaches_every_config(tmp_path):
    from bench.run import build_parser, plan

    plain, _ = plan(build_parser().parse_args(["--suite", "smoke", "--results-dir", str(tmp_path)]))
    fast, _ = plan(build_parser().parse_args(["--suite", "smoke", "--channels-last", "--results-dir", str(tmp_path)]))
    assert plain and not any(c.channels_last for c in plain) and all(c.channels_last for c in fast)
    assert {c.run_id for c in plain}.isdisjoint({c.run_id for c in fast})  # a different run, not a rerun


def test_log_to_a_logger_whose_package_is_missing_is_one_line_exit_2(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed here")
    code, err = _run_main(["--suite", "smoke", "--log-to", "mlflow", "--results-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.strip() == "bench.run: error: --log-to mlflow needs mlflow (pip install mlflow-skinny)"
    assert not (tmp_path / "r").exists()
