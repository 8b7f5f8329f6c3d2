"""Paper protocols: each expands to exactly its table's runs, with its presets, fairly."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from algorithms import ConfigError, get_algorithm
from bench import presets, protocol_plan
from bench.protocols import PROTOCOLS, Protocol, UnknownProtocol, check_names, expand, protocol_config
from bench.run import main

CSV = Path("/work/shared/paper_numbers.csv")


@pytest.fixture(scope="module")
def full():
    return expand()


def test_the_full_expansion_has_no_missing_preset(full):
    assert full and all("none" not in r.config.preset for r in full)
    assert all(r.config.suite == "full" and r.config.protocol_notes.startswith("paper protocol;") for r in full)
    assert len({r.config.run_id for r in full}) == len(full)  # planned once each


def test_label_counts_of_the_papers_appear(full):
    cells = {(p, r.config.dataset, r.config.n_labels) for r in full for p in r.protocols}
    assert ("l2i_table2", "cifar10", 500) in cells and ("l2i_table2", "cifar100", 500) in cells  # 001's 500
    assert ("meta_semi_table1", "cifar10", 2000) in cells  # 002's 2000
    assert ("l2i_conf_table1", "cifar100", 3000) in cells and ("meta_semi_table4", "svhn", 500) in cells


# Paper row label (as transcribed in paper_numbers.csv) -> method, per protocol; rows not run are listed.
ROWS = {
    "meta_semi_table1": ("002", "Table 1", {
        "Supervised": "supervised", "Supervised + MixUp": "supervised_mixup", "Pi-model": "pi_model",
        "Temp-ensemble": "temporal_ensembling", "Mean Teacher": "mean_teacher", "VAT": "vat", "ICT": "ict",
        "Meta-Semi": "meta_semi", "Learning to Reweight": "meta_semi_l2rw"},
        {"SNTG", "MT + Fast SWA", "Meta-Semi + ICT"}),
    "meta_semi_table2": ("002", "Table 2", {"Mean Teacher": "mean_teacher", "VAT": "vat", "MixMatch": "mixmatch",
                                            "Meta-Semi": "meta_semi"}, set()),
    "meta_semi_table3": ("002", "Table 3", {"MixMatch": "mixmatch", "Meta-Semi": "meta_semi"}, {"SWWAE", "CC-GAN"}),
    "meta_semi_table4": ("002", "Table 4", {
        "VAT": "vat", "Pi-model": "pi_model", "Temp-ensemble": "temporal_ensembling", "Mean Teacher": "mean_teacher",
        "ICT": "ict", "Meta-Semi": "meta_semi"}, {"SNTG", "Meta-Semi + ICT"}),
    "l2i_table2": ("001", "Table 2", {
        "Pi model": "pi_model", "PL": "pseudo_label", "MixUp": "supervised_mixup", "VAT": "vat", "MT": "mean_teacher",
        "MT-L2I (Ours)": "mean_teacher+l2i_o", "MM": "mixmatch", "MM-L2I (Ours)": "mixmatch+l2i_o", "FM": "fixmatch",
        "FM-L2I (Ours)": "fixmatch+l2i_o"}, set()),
    "l2i_table10": ("001", "Table 10", {"FM": "fixmatch", "FM-L2I (O)": "fixmatch+l2i_o",
                                        "FM-L2I (L)": "fixmatch+l2i_l"}, set()),
    "l2i_conf_table1": ("000", "Table 1", {"SL": "supervised", "PL": "pseudo_label", "PL+option1": "pseudo_label+l2i_l",
                                           "PL+option2": "pseudo_label+l2i_o"}, set()),
    "l2i_conf_table2": ("000", "Table 2", {
        "Pi model": "pi_model", "PseudoLabel": "pseudo_label", "MixUp": "supervised_mixup", "VAT": "vat",
        "MT": "mean_teacher", "MT + option1": "mean_teacher+l2i_l", "MT + option2": "mean_teacher+l2i_o",
        "MM": "mixmatch", "MM + option1": "mixmatch+l2i_l", "MM + option2": "mixmatch+l2i_o"}, set()),
    "l2i_table1": ("001", "Table 1", {"SL": "supervised", "PL": "pseudo_label", "PL-L2I (Ours)": "pseudo_label+l2i_o",
                                      "MT": "mean_teacher", "MT-L2I (Ours)": "mean_teacher+l2i_o"}, set()),
    "l2i_table9": ("001", "Table 9", {"MT": "mean_teacher", "MT-L2I (O)": "mean_teacher+l2i_o",
                                      "MT-L2I (L)": "mean_teacher+l2i_l"}, set()),
    "meta_grad_table1": ("003", "Table 1", {
        "Pi-Model": "pi_model", "TE": "temporal_ensembling", "MT": "mean_teacher", "VAT": "vat",
        "Ours": "pseudo_label+meta_grad"},
        {"ADA-Net", "ADA-Net+fastSWA", "Co-training", "DualStudent", "Fully-Supervised", "MA-DNN", "MT+SNTG",
         "MT+fastSWA", "TNAR-VAE", "VAT+Ent", "VAT+Ent+SNTG", "VAT+VAAD"}),
}


@pytest.mark.skipif(not CSV.is_file(), reason="the transcribed paper tables are not on this machine")
def test_each_protocol_expands_to_exactly_its_tables_cells(full):
    rows = list(csv.DictReader(CSV.open()))
    assert set(ROWS) == set(PROTOCOLS)
    for name, (paper, table, mapping, not_run) in ROWS.items():
        printed = [r for r in rows if r["paper"] == paper and r["table"] == table and r["dataset"]]
        assert {r["method"] for r in printed} == set(mapping) | not_run, name
        want = {(mapping[r["method"]], r["dataset"], int(r["n_labels"])) for r in printed
                if r["method"] in mapping and r["n_labels"]}
        if any(not r["n_labels"] and r["method"] in mapping for r in printed):  # a reference row on every label (001 Table 1's SL 7.71)
            assert "whole training set" in PROTOCOLS[name].notes, name
        got = {(r.config.algorithm, r.config.dataset, r.config.n_labels) for r in full if name in r.protocols
               and r.paper_row and r.config.algorithm in PROTOCOLS[name].methods}
        assert got == want, (name, got ^ want)
        notes = PROTOCOLS[name].notes.lower()
        for label in not_run:  # each row left out is named in the protocol's notes
            assert any(w.lower() in notes for w in label.replace("+", " ").split() if len(w) > 2), (name, label)


def _by_cell(runs, name):
    return {(r.config.algorithm, r.config.dataset, r.config.n_labels, r.config.seed): r.config
            for r in runs if name in r.protocols}


def test_a_base_and_its_compositions_train_alike_in_every_protocol(full):
    shared = ("network", "optim", "steps", "batch_labeled", "batch_unlabeled", "ema_decay", "eval_every", "val_protocol")
    checked = 0
    for name, p in PROTOCOLS.items():
        cells = _by_cell(full, name)
        for (algo, d, n, seed), comp in cells.items():
            if "+" not in algo:
                continue
            base = cells[(algo.partition("+")[0], d, n, seed)]  # every composition's base runs in its protocol
            for f in shared:
                assert getattr(comp, f) == getattr(base, f), (name, algo, d, n, f)
            base_fields = {f.name for f in dataclasses.fields(get_algorithm(base.algorithm).Hparams)}
            ch, bh = comp.resolved().hparams, base.resolved().hparams
            assert {k: ch[k] for k in base_fields} == {k: bh[k] for k in base_fields}, (name, algo, d, n)
            checked += 1
    assert checked == sum(1 for n in PROTOCOLS for k in _by_cell(full, n) if "+" in k[0]) > 0


def test_bases_that_are_not_rows_run_and_are_marked(full):
    runs = [r for r in full if "meta_grad_table1" in r.protocols and r.config.algorithm == "pseudo_label"]
    assert runs and not any(r.paper_row for r in runs)
    assert ("pseudo_label", False) in PROTOCOLS["meta_grad_table1"].run_methods()
    # the base runs exactly its composition's cells
    assert {(r.config.dataset, r.config.n_labels) for r in runs} == {("svhn", 1000), ("cifar10", 4000),
                                                                      ("cifar100", 10000)}
    assert all(r.paper_row for r in full if "l2i_conf_table1" in r.protocols)
    # 002's Learning to Reweight row is a standalone method (Meta-Semi's pipeline): no base is added for it
    assert all(row for _, row in PROTOCOLS["meta_semi_table1"].run_methods())
    l2rw = {(r.config.dataset, r.config.n_labels) for r in full
            if "meta_semi_table1" in r.protocols and r.config.algorithm == "meta_semi_l2rw"}
    assert l2rw == {("cifar10", 1000), ("cifar10", 4000), ("cifar100", 4000), ("cifar100", 10000)}


def test_identical_runs_of_two_tables_are_planned_once(full):
    fm = [r for r in full if r.config.algorithm == "fixmatch" and r.config.dataset == "cifar10"
          and r.config.n_labels == 250 and r.config.seed == 0]
    assert len(fm) == 1 and fm[0].protocols == ("l2i_table2", "l2i_table10")
    mt = [r for r in full if r.config.algorithm == "mean_teacher" and r.config.dataset == "svhn"
          and r.config.n_labels == 1000 and r.config.seed == 0]
    assert len(mt) == 1 and set(mt[0].protocols) == {"meta_semi_table4", "meta_grad_table1"}


def test_a_cell_without_a_preset_is_refused_in_one_line_unless_allowed(monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "t", Protocol("x", "T", {"cifar10": (1000,)}, "cnn13",
                                                  ("fixmatch", "mean_teacher+l2i_o"), "paper_cnn13", seeds=1))
    with pytest.raises(presets.MissingPreset) as e:
        expand(["t"])
    msg = str(e.value)
    assert "\n" not in msg and "protocol t" in msg and "'paper_cnn13'" in msg and "fixmatch" in msg
    with pytest.raises(presets.MissingPreset, match=r"\+l2i_o on cifar10"):
        protocol_config("t", "mean_teacher+l2i_o", "cifar10", 1000, 0)
    runs = {r.config.algorithm: r.config for r in expand(["t"], allow_missing_presets=True)}
    assert runs["fixmatch"].preset == "paper_cnn13:none" and runs["fixmatch"].network == "cnn13"
    assert "missing presets allowed" in runs["fixmatch"].protocol_notes
    comp = runs["mean_teacher+l2i_o"]
    assert comp.preset == "paper_cnn13:mean_teacher,+l2i_o=none" and comp.steps == runs["mean_teacher"].steps
    assert "no 'paper_cnn13' preset for +l2i_o on cifar10" in comp.protocol_notes


def test_unknown_protocol_names_raise_one_line():
    with pytest.raises(UnknownProtocol) as e:
        check_names(["l2i_table2", "nope"])
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value) and "'nope'" in str(e.value)
    assert "meta_grad_table1" in str(e.value)
    assert check_names(None) == list(PROTOCOLS) and check_names(["l2i_table2", "l2i_table2"]) == ["l2i_table2"]


def test_filters_keep_matching_cells_and_refuse_an_empty_selection():
    runs = expand(["l2i_table2"], algorithms=["mean_teacher+l2i_o"], datasets=["cifar100"], labels=[500], seeds=2)
    assert [(r.config.algorithm, r.config.dataset, r.config.n_labels, r.config.seed) for r in runs] == [
        ("mean_teacher+l2i_o", "cifar100", 500, 0), ("mean_teacher+l2i_o", "cifar100", 500, 1)]
    with pytest.raises(ConfigError, match="no run of protocol"):
        expand(["l2i_table2"], datasets=["svhn"])


def test_plan_entries_and_totals(full):
    some = full[:30]
    done = {some[0].config.run_id}
    entries = protocol_plan.plan(some, done)
    e = entries[0]
    assert e["finished"] and not any(x["finished"] for x in entries[1:])
    for key in ("protocol", "protocols", "dataset", "n_labels", "algorithm", "network", "steps", "batch_labeled",
                "batch_unlabeled", "optim", "hparams", "preset", "est_gpu_hours"):
        assert key in e
    assert e["protocol"] == some[0].protocols[0] and "schedule" in e["optim"]
    assert e["hparams"] == some[0].config.resolved().hparams  # defaults filled in
    json.dumps(entries)  # JSON-able
    nets = protocol_plan.network_totals(entries)
    assert sum(t["steps"] for t in nets) == sum(x["steps"] for x in entries)
    total = protocol_plan.grand_total(entries)
    assert total["runs"] == 30 and total["finished"] == 1 and "estimate" in total["estimate"]
    assert abs(total["est_gpu_hours"] - sum(x["est_gpu_hours"] for x in entries)) < 1e-9
    assert abs(total["est_gpu_hours_todo"] - total["est_gpu_hours"] + e["est_gpu_hours"]) < 1e-9


def test_protocol_summary_counts_each_protocols_runs(full):
    summary = {t["protocol"]: t for t in protocol_plan.protocol_summary()}
    assert list(summary) == list(PROTOCOLS)
    for name in PROTOCOLS:
        mine = [r for r in full if name in r.protocols]
        assert summary[name]["runs"] == len(mine) and summary[name]["est_gpu_hours"] > 0
    assert summary["meta_semi_table3"]["runs"] == 2 * 5  # MixMatch and Meta-Semi, STL-10 1000, 5 seeds


def test_cli_full_dry_run_json_lists_every_run_without_dataset_files(tmp_path, capsys, monkeypatch, full):
    import results

    monkeypatch.setattr(results.ResultStore, "finished_run_ids", lambda self: {full[0].config.run_id})
    (tmp_path / "r" / "runs").mkdir(parents=True)  # a results dir that has runs (their ids patched in)
    assert main(["--suite", "full", "--dry-run", "--json", "--data-root", str(tmp_path / "nothing"),
                 "--results-dir", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(full) and all(x["kind"] == "run" for x in lines)
    assert {x["run_id"] for x in lines} == {r.config.run_id for r in full}
    assert [x["run_id"] for x in lines if x["finished"]] == [full[0].config.run_id]
    totals = [json.loads(line) for line in err.splitlines()]
    assert {t["kind"] for t in totals} == {"network", "protocol", "total"}
    assert totals[-1]["runs"] == len(full) and totals[-1]["finished"] == 1


def test_cli_protocol_dry_run_works_for_each_protocol(tmp_path, capsys):
    for name in PROTOCOLS:
        assert main(["--protocol", name, "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
        out, err = capsys.readouterr()
        assert out and all(f"[{name}" in line or f",{name}" in line for line in out.splitlines())
        assert name in err and "est. GPU-h" in err and "estimate" in err
    assert not (tmp_path / "r").exists()


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    for argv, text in ((["--protocol", "nope"], "unknown protocol 'nope'"),
                       (["--protocol", "l2i_table2", "--preset", "paper"], "--preset does not combine"),
                       (["--protocol", "l2i_table2", "--suite", "smoke"], "does not combine with --suite smoke"),
                       (["--protocol", "l2i_table2", "--datasets", "svhn"], "no run of protocol")):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--dry-run", "--results-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and text in err, (argv, err)
    assert not (tmp_path / "r").exists()


def test_cli_overrides_of_a_protocol_are_recorded(tmp_path, monkeypatch):
    import datasets

    from bench.run import build_parser, plan

    monkeypatch.setattr(datasets, "check_available", lambda *a, **k: None)
    args = build_parser().parse_args(["--protocol", "meta_grad_table1", "--algorithms", "pseudo_label+meta_grad",
                                      "--datasets", "svhn", "--seeds", "1", "--steps", "100", "--hp", "meta_lr=0.5",
                                      "--results-dir", str(tmp_path)])
    (cfg,) = plan(args)[0]
    assert cfg.steps == 100 and cfg.eval_every <= 100 and "budget overridden to 100 steps" in cfg.protocol_notes
    assert cfg.hparams["meta_lr"] == 0.5 and cfg.preset == "meta_grad_cnn13:pseudo_label,+meta_grad"


def test_cli_allow_missing_presets_runs_the_cell_and_records_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "t", Protocol("x", "T", {"cifar10": (1000,)}, "cnn13", ("fixmatch",),
                                                  "paper_cnn13", seeds=1))
    with pytest.raises(SystemExit):
        main(["--protocol", "t", "--dry-run", "--results-dir", str(tmp_path / "r")])
    assert "no 'paper_cnn13' preset for fixmatch" in capsys.readouterr().err
    assert main(["--protocol", "t", "--dry-run", "--json", "--allow-missing-presets",
                 "--results-dir", str(tmp_path / "r")]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["preset"] == "paper_cnn13:none"


def test_the_docs_table_of_runs_and_gpu_hours_is_the_current_expansion():
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "protocols.md").read_text()
    summary = {t["protocol"]: t for t in protocol_plan.protocol_summary()}
    for name, t in summary.items():
        m = re.search(rf"^\| `{name}` \| (\d+) \| ([\d,]+) \|$", text, re.M)
        assert m, name
        assert (int(m.group(1)), int(m.group(2).replace(",", ""))) == (t["runs"], round(t["est_gpu_hours"])), name
    for family in presets.FAMILIES:
        assert f"| `{family}` |" in text
