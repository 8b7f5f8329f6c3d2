"""BASE+RULE composition: names, refusals, merged hyperparameters, delegation and hold-out batches.

Uses a dummy rule defined here (composed directly, not registered), so these tests do not
depend on any real meta rule.
"""
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

import datasets
from algorithms import ConfigError, get_algorithm, list_algorithms, list_compositions, list_rules, parse_hparams
from algorithms import HoldoutSpec
from algorithms.meta.compose import compose
from algorithms.meta.rule import LossRule
from algorithms.pseudo_label import PseudoLabel
from algorithms.supervised import Supervised
from algorithms.vat import VAT
from bench.config import RunConfig, RunEnv
from bench.engine import train_run


@dataclass
class DummyHparams:
    scale: float = field(default=0.5, metadata={"range": (0.0, 1.0), "scale": "linear"})
    holdout_batch: int = 0
    holdout: str = "joint"

    def validate(self) -> None:
        if self.scale < 0:
            raise ConfigError("dummy scale must be >= 0")


class DummyRule(LossRule[DummyHparams]):
    """Scales the unlabeled term by ``scale`` and records what it saw."""

    name = "dummy"
    description = "test rule"
    seen: list = []

    @classmethod
    def holdout_spec(cls, hp):
        return HoldoutSpec(hp.holdout_batch, hp.holdout, 0.4)

    def meta_step(self, s, batch, info):
        DummyRule.seen.append(batch)

    def loss_terms(self, s, meta, info):
        terms = self.algo.base_terms(s)
        return dataclasses.replace(terms, unlabeled=self.hp.scale * terms.unlabeled)


def test_generic_parameter_sets_the_hyperparameter_class():
    assert DummyRule.Hparams is DummyHparams and PseudoLabel.Hparams.__name__ == "PseudoLabelHparams"


def test_renamed_options_still_load_with_one_line_deprecation():
    with pytest.warns(FutureWarning, match=r"^pseudo_label\+l2i_o hyperparameter l2i_variant is deprecated: use meta_method"):
        hp = parse_hparams("pseudo_label+l2i_o", {"l2i_variant": "approx", "l2i_bn": "eval"})
    assert (hp.meta_method, hp.meta_bn) == ("approx", "eval")
    with pytest.raises(ConfigError, match="same option"):
        parse_hparams("pseudo_label+meta_grad", {"meta_grad_method": "fd", "meta_method": "jvp"})
    # every renamed key maps to a field of its class
    for name in list_compositions():
        hp_cls = get_algorithm(name).Hparams
        assert set(hp_cls.renamed.values()) <= {f.name for f in dataclasses.fields(hp_cls)}, name


def test_composed_class_is_the_base_with_merged_hparams():
    cls = compose(PseudoLabel, DummyRule)
    assert cls.name == "pseudo_label+dummy" and issubclass(cls, PseudoLabel)
    names = [f.name for f in dataclasses.fields(cls.Hparams)]
    assert names == [f.name for f in dataclasses.fields(PseudoLabel.Hparams)] + ["scale", "holdout_batch", "holdout"]
    hp = cls.Hparams(threshold=0.5, scale=0.25)
    base_hp, rule_hp = hp.split()
    assert isinstance(base_hp, PseudoLabel.Hparams) and base_hp.threshold == 0.5
    assert isinstance(rule_hp, DummyHparams) and rule_hp.scale == 0.25
    # metadata (search ranges) survives the merge
    meta = {f.name: f.metadata for f in dataclasses.fields(cls.Hparams)}
    assert meta["scale"]["range"] == (0.0, 1.0) and meta["lambda_u"]["range"] == (0.1, 10.0)
    assert compose(PseudoLabel, DummyRule) is cls  # cached: one class per pair


def test_merged_validate_runs_both_parts():
    cls = compose(PseudoLabel, DummyRule)
    with pytest.raises(ConfigError, match="dummy scale"):
        cls.Hparams(scale=-1.0).validate()
    with pytest.raises(ConfigError, match="threshold"):
        cls.Hparams(threshold=2.0).validate()


def test_refusals_say_why():
    for base in (Supervised, VAT):
        with pytest.raises(ConfigError, match="cannot carry a meta rule"):
            compose(base, DummyRule)


def test_registry_names():
    assert set(list_algorithms()).isdisjoint(list_rules()) or "meta_semi" in list_rules()
    for name in list_compositions():
        base, rule = name.split("+")
        assert base in list_algorithms() and rule in list_rules()
        assert get_algorithm(name).name == name
    with pytest.raises(ConfigError, match="unknown base"):
        get_algorithm("nope+dummy")
    with pytest.raises(ConfigError, match="unknown meta rule"):
        get_algorithm("pseudo_label+nope")
    with pytest.raises(ConfigError, match="more than one"):
        get_algorithm("pseudo_label+a+b")


def test_rule_field_names_never_clash_with_any_base():
    """Every registered rule composes with every base it accepts (clashes raise ValueError)."""
    for name in list_compositions():
        get_algorithm(name)


def _tiny_config(algorithm, hparams, **kw):
    return RunConfig.from_dict(dict(dataset="digits", algorithm=algorithm, network="cnn_small", n_labels=50, steps=4,
                                    eval_every=4, batch_labeled=8, batch_unlabeled=16, hparams=hparams, **kw))


@pytest.fixture
def dummy_registered(monkeypatch):
    """Make 'dummy' resolvable by name for the engine, without touching the real registry."""
    import algorithms.meta.rule as rule_mod

    monkeypatch.setitem(rule_mod._RULES, "dummy", DummyRule)
    DummyRule.seen = []
    yield
    DummyRule.seen = []


@pytest.mark.parametrize("mode", ["joint", "separate"])
def test_engine_feeds_holdout_batches(tmp_path, dummy_registered, mode):
    cfg = _tiny_config("pseudo_label+dummy", {"holdout_batch": 6, "holdout": mode, "threshold": 0.0})
    out = train_run(cfg, RunEnv(str(tmp_path)))
    assert out.status == "ok", out.run_row["error_message"]
    assert len(DummyRule.seen) == 4
    data = datasets.load("digits")
    split = datasets.make_split("digits", data.y_train, 10, 50, datasets.resolve_n_val(data.info, 50), cfg.split_seed)
    x_lab = data.x_train[torch.from_numpy(split.labeled.copy())]
    y_lab = data.y_train[torch.from_numpy(split.labeled.copy())].numpy()
    train_pos, hold_pos = datasets.holdout_split(y_lab, 0.4, cfg.split_seed)
    flat = x_lab.reshape(x_lab.shape[0], -1)

    def positions(x):
        d = torch.cdist(x.reshape(x.shape[0], -1), flat)
        assert torch.all(d.min(dim=1).values < 1e-2)  # cdist is not exact at 0; distinct digits are ~5 apart
        return set(d.argmin(dim=1).tolist())

    for b in DummyRule.seen:
        assert b.x_h.shape[0] == 6 and b.y_h.shape == (6,)
        h, t = positions(b.x_h), positions(b.x_l)
        if mode == "separate":  # hold-out and training labeled sets are disjoint, as holdout_split says
            assert h <= set(hold_pos.tolist()) and t <= set(train_pos.tolist())
        else:
            assert h <= set(range(50))


def test_no_holdout_batch_unless_asked(tmp_path, dummy_registered):
    out = train_run(_tiny_config("pseudo_label+dummy", {}), RunEnv(str(tmp_path)))
    assert out.status == "ok"
    assert all(b.x_h is None for b in DummyRule.seen)


def test_holdout_split_is_class_balanced_and_seeded():
    y = np.repeat(np.arange(10), 5)
    train, hold = datasets.holdout_split(y, 0.4, seed=3)
    assert set(train).isdisjoint(hold) and len(train) + len(hold) == 50
    assert np.all(np.bincount(y[hold], minlength=10) == 2)
    assert np.array_equal(hold, datasets.holdout_split(y, 0.4, seed=3)[1])
    assert not np.array_equal(hold, datasets.holdout_split(y, 0.4, seed=4)[1])
    with pytest.raises(datasets.SplitError):
        datasets.holdout_split(np.arange(10), 0.4, seed=0)  # one sample per class


def test_composed_hparams_parse_strictly(dummy_registered):
    hp = parse_hparams("pseudo_label+dummy", {"scale": 0.1, "lambda_u": 2.0})
    assert hp.scale == 0.1 and hp.lambda_u == 2.0
    with pytest.raises(ConfigError, match="unknown"):
        parse_hparams("pseudo_label+dummy", {"bogus": 1})


def test_base_options_a_rule_would_drop_are_refused():
    from algorithms.mean_teacher import MeanTeacher

    cls = compose(MeanTeacher, DummyRule)
    with pytest.raises(ConfigError, match="fast_swa"):
        cls.Hparams(fast_swa=True).validate()
    cls.Hparams(fast_swa=False).validate()
