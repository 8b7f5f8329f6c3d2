"""Search spaces come from the algorithms' own declarations and contain their defaults."""
from __future__ import annotations

import math

from algorithms import list_algorithms
from tune_spaces import space_for


def test_every_algorithm_has_a_space_whose_ranges_hold_the_defaults():
    for name in list_algorithms():
        space = space_for(name)
        for pname, p in space.params.items():
            assert p.low < p.high, (name, pname)
            assert p.low <= p.default <= p.high, (name, pname)
            if p.scale == "log":
                assert p.low > 0 and math.isfinite(math.log(p.high / p.low))


def test_meta_semi_has_one_hyperparameter_beta_in_the_papers_range():
    s = space_for("meta_semi")
    assert list(s.params) == ["beta"] and (s.params["beta"].low, s.params["beta"].high) == (0.1, 1.0)
    assert s.paper_hps == 1
    assert space_for("mixmatch").paper_hps == 4


def test_composed_method_space_is_the_union_and_counts_add():
    from algorithms import get_algorithm
    from algorithms.meta.rule import get_rule

    base, rule = space_for("mean_teacher"), space_for("mean_teacher+meta_grad")
    assert set(base.params) < set(rule.params)
    assert {"meta_lr", "mixup_gamma"} <= set(rule.params) - set(base.params)
    assert rule.params["lambda_u"] == base.params["lambda_u"]
    assert rule.paper_hps == get_algorithm("mean_teacher").paper_hps + get_rule("meta_grad").paper_hps == 4


def test_values_outside_the_range_or_not_integer_are_refused():
    import pytest

    from tune_spaces import ConfigError, check_value, select

    s = space_for("mixmatch")
    assert check_value(s, "K", 3.0) == 3 and isinstance(check_value(s, "K", 3.0), int)
    assert check_value(s, "T", 0.1) == 0.1  # range ends are inside
    for name, v in (("T", 1.01), ("lambda_u", 0.5), ("K", 2.5), ("T", float("nan"))):
        with pytest.raises(ConfigError):
            check_value(s, name, v)
    with pytest.raises(ConfigError, match="no searchable hyperparameter 'gamma'"):
        select(s, ["gamma"])


def test_optuna_distributions_keep_bounds_scale_and_type():
    from optuna.distributions import FloatDistribution, IntDistribution

    from tune_spaces import to_optuna

    d = to_optuna(space_for("mixmatch"))
    assert isinstance(d["K"], IntDistribution) and (d["K"].low, d["K"].high) == (1, 4)
    assert isinstance(d["lambda_u"], FloatDistribution) and d["lambda_u"].log and (d["lambda_u"].low, d["lambda_u"].high) == (1.0, 300.0)
    assert not d["alpha"].log
