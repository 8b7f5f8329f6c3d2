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
