"""Suites: the full suite's paper protocols and the quick suite's coverage."""
from __future__ import annotations

import re

import pytest

from algorithms import list_algorithms
from algorithms.networks import list_networks

import datasets
from bench import presets
from bench.run import main
from bench.suites import PROTOCOLS, SUITES, Suite, expand, protocols_of

_RULE = re.compile(r"^[a-z][a-z0-9_]*$")


def _is_registered_or_composition(name: str) -> bool:
    from algorithms import list_compositions

    if name in list_algorithms() or name in list_compositions():
        return True
    base, plus, rule = name.partition("+")
    return bool(plus) and base in list_algorithms() and bool(_RULE.match(rule))


def test_protocols_name_only_registered_methods_or_base_plus_rule():
    for pname, p in PROTOCOLS.items():
        for m in p.methods:
            assert _is_registered_or_composition(m), f"{pname}: {m!r} is neither registered nor BASE+RULE"


def test_the_check_itself_rejects_bad_names():
    assert not _is_registered_or_composition("l2i")  # a bare rule is not a method
    assert not _is_registered_or_composition("nope+l2i_o")  # unknown base
    assert not _is_registered_or_composition("mean_teacher+")
    assert _is_registered_or_composition("mean_teacher+l2i_o")


def test_protocols_point_at_real_datasets_networks_labels_and_presets():
    for pname, p in PROTOCOLS.items():
        assert p.network in list_networks(), pname
        assert p.preset is None or p.preset in presets.preset_names(), pname
        for d, counts in p.labels.items():
            info = datasets.get_info(d)
            for n in counts:
                datasets.validate_request(info, n, n)  # the scarce protocol's request fits the pool
                assert info.task == "regression" or n % info.num_classes == 0, \
                    f"{pname}: {n} labels are not class-balanced on {d}"
        # Where a protocol names a preset family, each of its registered methods has one of its datasets covered.
        if p.preset:
            for m in p.methods:
                if m in list_algorithms():
                    assert any(presets.find(p.preset, m, d) for d in p.labels), f"{pname}: no {p.preset} preset for {m}"


def test_full_suite_runs_registered_algorithms_only_and_lists_protocol_membership():
    from algorithms import list_compositions

    runs = expand(SUITES["full"], seeds=1)
    protocol_pairs = {m for p in PROTOCOLS.values() for m in p.methods if "+" in m}
    assert protocol_pairs <= set(list_compositions())  # every composition a protocol names exists now
    assert {c.algorithm for c in runs} == set(list_algorithms()) | protocol_pairs
    described = SUITES["full"].description
    assert all(name in described for name in PROTOCOLS)
    # Membership is the inverse of the table, computed here by hand for two methods.
    assert protocols_of("meta_semi") == ["meta_semi_table1", "meta_semi_table2", "meta_semi_table3", "meta_semi_table4"]
    assert protocols_of("fixmatch") == ["l2i_table2", "l2i_table10"]


def test_list_prints_every_protocol_and_method(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, p in PROTOCOLS.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + ":"))
        assert all(m in line for m in p.methods)
    assert "mean_teacher+l2i_o*" not in out  # registered now: not marked


def _evals_in_last_half(steps: int, every: int) -> int:
    """Evaluation steps of the engine's loop (multiples of ``every`` and the last step) past steps / 2."""
    points = set(range(every, steps + 1, every)) | {steps}
    return sum(1 for p in points if p > steps / 2)


def test_quick_suite_keeps_every_algorithm_and_every_rule_on_both_toy_datasets():
    from algorithms import list_rules

    runs = expand(SUITES["quick"])
    pairs = {(c.dataset, c.algorithm) for c in runs}
    expected = list_algorithms() + [f"pseudo_label+{r}" for r in list_rules()]
    assert pairs == {(d, a) for d in ("two_circles", "digits") for a in expected}
    for c in runs:
        c.resolved()  # toy hyperparameters use real field names
        if c.algorithm.startswith("pseudo_label") and c.dataset == "two_circles":
            assert c.hparams["threshold"] == 0.0  # compositions inherit their base's recipe hyperparameters
    seeds = {d: {c.seed for c in runs if c.dataset == d} for d in ("two_circles", "digits")}
    assert len(seeds["two_circles"]) >= 10 and len(seeds["digits"]) >= 3


SETUP = ("network", "steps", "batch_labeled", "batch_unlabeled", "optim", "ema_decay", "eval_every", "val_protocol",
         "n_test", "protocol_notes", "eval_last_k", "eval_batch", "channels_last")


def test_every_run_of_a_setting_shares_budget_network_optimizer_batches_and_evaluations():
    for name in ("quick", "standard", "toy", "full"):
        runs = expand(SUITES[name])
        for key in {(c.dataset, c.n_labels) for c in runs}:
            mine = [c for c in runs if (c.dataset, c.n_labels) == key]
            assert len({tuple(getattr(c, f) for f in SETUP) for c in mine}) == 1, (name, key)
            # the same seeds (and so splits) for every method: each pair of the report has all of them
            by_algo = {}
            for c in mine:
                by_algo.setdefault(c.algorithm, set()).add((c.seed, c.split_seed))
            assert len({frozenset(v) for v in by_algo.values()}) == 1, (name, key)
            # the reported median of the last eval_last_k evaluations is over the last half only
            assert _evals_in_last_half(mine[0].steps, mine[0].eval_every) >= mine[0].eval_last_k >= 10, (name, key)


def test_dense_evaluations_hold_for_any_budget_and_after_a_steps_override():
    from bench.suites import dense_eval_every

    for steps in list(range(1, 300)) + [997, 4096, 48000, 2 ** 20]:
        every = dense_eval_every(steps, 4096)
        assert _evals_in_last_half(steps, every) >= min(20, steps - steps // 2), steps
        assert every == 4096 or _evals_in_last_half(steps, every) <= 2 * 20 + 2  # not much denser than needed
    runs = expand(SUITES["quick"], steps=120, datasets=["digits"], algorithms=["supervised"])
    assert {c.eval_every for c in runs} == {3} and "overridden to 120" in runs[0].protocol_notes


def test_standard_suite_covers_digits_and_fashion_at_two_label_counts_with_rules_on_two_bases():
    from algorithms import get_algorithm, list_rules

    runs = expand(SUITES["standard"])
    settings = {(c.dataset, c.n_labels) for c in runs}
    assert {d for d, _ in settings} == {"digits", "fashion_mnist", "synthetic_landmarks"}
    expected = set(list_algorithms()) | {f"{b}+{r}" for b in ("pseudo_label", "mean_teacher") for r in list_rules()}
    for key in settings:
        algos = {c.algorithm for c in runs if (c.dataset, c.n_labels) == key}
        if key[0] == "synthetic_landmarks":  # the regression-capable ones, from each class's own declaration
            assert algos == {a for a in expected if get_algorithm(a).refuse_task("regression") is None}
            assert {"supervised", "pseudo_label", "mean_teacher", "pseudo_label+l2i_o", "mean_teacher+l2i_o"} <= algos
        else:
            assert len({n for d2, n in settings if d2 == key[0]}) == 2
            assert algos == expected
        assert len({c.seed for c in runs if (c.dataset, c.n_labels) == key}) >= 3
    assert {n for d, n in settings if d == "synthetic_landmarks"} == {100}
    fashion = [c for c in runs if c.dataset == "fashion_mnist"]
    assert {c.n_test for c in fashion} == {500} and all("500 of the 10,000 test" in c.protocol_notes for c in fashion)


def test_plan_keeps_dense_evaluations_when_steps_override_the_suite(tmp_path):
    from bench.run import build_parser, plan

    args = build_parser().parse_args(["--suite", "quick", "--datasets", "digits", "--algorithms", "supervised",
                                      "--steps", "2000", "--results-dir", str(tmp_path)])
    configs, _ = plan(args)
    assert {c.eval_every for c in configs} == {50}  # 2000 // 40, below the recipe's 100


def test_recipe_rule_keys_reach_every_composition_with_that_rule_and_nothing_else():
    from bench.suites import Recipe

    r = Recipe("two_circles", "mlp", (50,), 10, 10, hparams={
        "pseudo_label": {"threshold": 0.5}, "+l2i_o": {"l2i_inner_lr_scale": 3.0},
        "mean_teacher+l2i_o": {"l2i_inner_lr_scale": 7.0}})
    suite = Suite("t", "t", (r,), seeds=1)
    hp = {c.algorithm: c.hparams for c in expand(suite, algorithms=[
        "pseudo_label", "pseudo_label+l2i_o", "mean_teacher+l2i_o", "pseudo_label+l2i_l"])}
    assert hp["pseudo_label"] == {"threshold": 0.5}
    assert hp["pseudo_label+l2i_o"] == {"threshold": 0.5, "l2i_inner_lr_scale": 3.0}
    assert hp["mean_teacher+l2i_o"] == {"l2i_inner_lr_scale": 7.0}  # BASE+RULE beats +RULE
    assert hp["pseudo_label+l2i_l"] == {"threshold": 0.5}


def test_toy_suite_is_paper_000_figure_1():
    runs = expand(SUITES["toy"])
    assert {c.algorithm for c in runs} == {"supervised", "pseudo_label", "pseudo_label+l2i_o", "pseudo_label+l2i_l"}
    assert {c.dataset for c in runs} == {"two_circles"} and {c.n_labels for c in runs} == {50}
    assert {c.network for c in runs} == {"mlp_2_4_2"} and {c.seed for c in runs} == {0, 1, 2}


def test_renaming_options_kept_the_run_ids():
    """l2i_bn / l2i_variant / l2i_l_method / meta_grad_method / meta_grad_bn became meta_bn and
    meta_method; identities hash them under their first names, so the quick suite's runs keep
    the ids they had before the rename (recorded from a run of the suite at that commit)."""
    import dataclasses

    # the quick suite of that commit ran digits rules at 300 of 600 steps, batches 32+96, evaluated every 100
    old_notes = ("offline stand-in for CIFAR: 8x8 digits, small CNN, 600 steps (quick budget); 300 steps (0.5 of the "
                 "recipe's budget, as the suite runs meta rules)")
    configs = {(c.algorithm, c.dataset, c.seed): dataclasses.replace(
        c, steps=300, eval_every=100, batch_labeled=32, batch_unlabeled=96, protocol_notes=old_notes)
        for c in expand(SUITES["quick"]) if c.dataset == "digits"}
    # Issue 10 made these rules their papers' versions by default (L2I's inner loss of 001/000
    # App. A.2; meta_grad's base mask inside the MixUp): different methods, so different ids (old
    # results are not reused); the rename itself is checked below.
    assert configs[("pseudo_label+l2i_o", "digits", 0)].run_id != "7cb03739e9bf419c"
    assert configs[("pseudo_label+l2i_l", "digits", 0)].run_id != "90dd9835c5dd90fe"
    assert configs[("pseudo_label+meta_grad", "digits", 0)].run_id != "7fb85590ef7c29e6"
    assert "meta_method" in configs[("pseudo_label+l2i_o", "digits", 0)].resolved().hparams
    # an option spelled by its first name gives the very config (and id) of its new name
    base = configs[("pseudo_label+l2i_o", "digits", 0)]
    old = dataclasses.replace(base, hparams={**dict(base.hparams), "l2i_variant": "approx", "l2i_bn": "eval"})
    new = dataclasses.replace(base, hparams={**dict(base.hparams), "meta_method": "approx", "meta_bn": "eval"})
    with pytest.warns(Warning):
        old_id = old.run_id
    assert old_id == new.run_id != base.run_id


def test_diagnostics_cadence_at_its_default_keeps_the_run_ids():
    """L2I's ``diag_every`` came after run ids were published and changes no training step: at its
    default a run keeps the id it had before the option existed (recorded from the quick suite at
    e282a47), an explicit default is the same identity, another cadence is another one."""
    import dataclasses

    cfg = next(c for c in expand(SUITES["quick"]) if c.algorithm == "pseudo_label+l2i_o")
    assert (cfg.dataset, cfg.seed) == ("two_circles", 0) and cfg.resolved().hparams["diag_every"] == 50
    assert cfg.run_id == "f3a2970a38c14dd8"
    explicit = dataclasses.replace(cfg, hparams={**dict(cfg.hparams), "diag_every": 50})
    other = dataclasses.replace(cfg, hparams={**dict(cfg.hparams), "diag_every": 5})
    assert explicit.run_id == cfg.run_id != other.run_id


def test_landmark_recipe_is_sized_by_its_evaluations():
    """synthetic_landmarks: 10 evaluations in the last half of 500 steps (median of the last 10), 128-image
    evaluation chunks and a channels-last TCDCN, for every method and both label counts alike; the
    classification recipes keep the last-20 median, 1,024-image chunks and the default memory format."""
    lm = expand(SUITES["quick"], datasets=["synthetic_landmarks"])
    assert {c.n_labels for c in lm} == {100, 500}
    assert {(c.steps, c.eval_every, c.eval_last_k, c.eval_batch, c.channels_last) for c in lm} == {(500, 25, 10, 128, True)}
    assert sum(1 for s in range(1, 501) if s % 25 == 0 and s > 250) == 10
    other = [c for c in expand(SUITES["standard"]) if c.dataset != "synthetic_landmarks"]
    assert {(c.eval_last_k, c.eval_batch, c.channels_last) for c in other} == {(20, 1024, False)}
