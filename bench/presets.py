"""Paper presets: the hyperparameters the papers (and their code) used, per (method, dataset).

Select with ``python -m bench.run --preset FAMILY`` (or through a paper protocol,
``--protocol NAME``, which names its family); ``python -m bench.presets`` lists every entry.
The applied entries are part of every run's config (its ``preset`` field and
``protocol_notes``), hence of its identity and its row.

Families (:data:`FAMILIES`): ``paper`` (WRN-28-2, MixMatch / FixMatch protocol),
``paper_cnn13`` (002's CNN-13 protocol), ``l2i_wrn`` (001), ``l2i_conf_wrn`` and
``l2i_conf_cnn13`` (000), ``meta_grad_cnn13`` (003), ``l2i_aflw`` (001's AFLW landmark regression). A family may name a parent whose
entries it inherits unless it overrides them.

Entries (:class:`~bench.preset_entry.Preset`) are keyed by (family, key, dataset), the key a
method, a rule (``+RULE``) or a composition (``BASE+RULE``). A composition ``BASE+RULE``
resolves to its base's entry (network, optimiser and schedule, batch sizes, budget, EMA, the
base's hyperparameters), then the rule's entry, then the pair's own entry if there is one, all
looked up in the same family (and its parents): so a base and its composition train alike.

Every entry's ``source`` names paper, section and table; its ``notes`` state every ambiguous
or adapted choice. Values recalled from a paper that is not among the four of this project
(000-003) are flagged "from memory of <paper>, not verified against its text". Conventions:

- Consistency weights: our ``pi_model``, ``temporal_ensembling``, ``mean_teacher`` and ``ict``
  use the squared error of softmaxes SUMMED over classes, their papers (and code) AVERAGE it
  over the C classes, so a published w_max becomes w_max / C here. ``mixmatch`` averages over
  classes as its paper does (no conversion); ``vat``, ``fixmatch``, ``pseudo_label`` weight a
  KL / cross-entropy (no class reduction to convert).
- Budgets are steps. An "epoch" is one pass of (labeled + unlabeled batch) over the training
  images left after the validation hold-out (45,000 for CIFAR, 72,257 for SVHN).
- Schedules: cosine-to-0, constant and step decay (with optional linear warm-up); the Gaussian
  lr ramps of Laine & Aila / Mean Teacher are approximated and said so.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from algorithms import ConfigError

from . import presets_aflw, presets_cnn13, presets_l2i, presets_meta_grad, presets_wrn
from .config import RunConfig
from .preset_entry import STEPS_2_20, Preset

__all__ = ["FAMILIES", "PRESETS", "STEPS_2_20", "Family", "MissingPreset", "Preset", "Resolution", "applied_to", "apply", "find",
           "list_presets", "preset_names", "resolve"]


@dataclass(frozen=True)
class Family:
    """A named set of entries; ``parent``'s entries apply where this family has none."""

    name: str
    description: str
    parent: str | None = None


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("paper", "WRN-28-2, MixMatch / FixMatch protocol (002 Tables 2-3; the literature rows of 000/001 Table 2)"),
    Family("paper_cnn13", "CNN-13 protocol of 002 (Tables 1, 4); the baselines of 003 Table 1"),
    Family("l2i_wrn", "L2I journal (001) Tables 2 and 10, WRN-28-2", parent="paper"),
    Family("l2i_conf_wrn", "L2I conference (000) Table 2, WRN-28-2", parent="paper"),
    Family("l2i_conf_cnn13", "L2I conference (000) Table 1, CNN-13"),
    Family("meta_grad_cnn13", "Meta-Gradient SSL (003) Table 1, Conv-Large", parent="paper_cnn13"),
    Family("l2i_aflw", "L2I journal (001) Tables 1 and 9, AFLW landmark regression, TCDCN"),
)}

PRESETS: tuple[Preset, ...] = (*presets_wrn.ENTRIES, *presets_cnn13.ENTRIES, *presets_l2i.ENTRIES,
                               *presets_meta_grad.ENTRIES, *presets_aflw.ENTRIES)
_INDEX: dict[tuple[str, str, str], Preset] = {}
for _p in PRESETS:
    if (_p.name, _p.algorithm, _p.dataset) in _INDEX or _p.name not in FAMILIES:
        raise ValueError(f"preset {_p.name}/{_p.algorithm}/{_p.dataset} is defined twice or in an unknown family")
    _INDEX[(_p.name, _p.algorithm, _p.dataset)] = _p


class MissingPreset(ConfigError):
    """A paper protocol run has no preset entry for its method or rule on its dataset."""


def list_presets() -> list[Preset]:
    return list(PRESETS)


def preset_names() -> list[str]:
    """The family names ``--preset`` accepts."""
    return sorted(FAMILIES)


def _chain(name: str) -> list[str]:
    chain = []
    while name is not None:
        chain.append(name)
        name = FAMILIES[name].parent
    return chain


def find(name: str, algorithm: str, dataset: str) -> Preset | None:
    """The entry for key ``algorithm`` (a method, ``+RULE`` or ``BASE+RULE``) on ``dataset`` in
    family ``name`` or, failing that, its parents; None if there is none."""
    if name not in FAMILIES:
        return None
    for family in _chain(name):
        p = _INDEX.get((family, algorithm, dataset))
        if p is not None:
            return p
    return None


@dataclass(frozen=True)
class Resolution:
    """The entries one run gets from family ``family``: ``applied`` in order (base, rule, pair),
    ``missing`` the required keys that have no entry."""

    family: str
    algorithm: str
    dataset: str
    applied: tuple[Preset, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def label(self) -> str:
        """The run's ``preset`` field: the family alone for a method with its own entry, else
        ``FAMILY:KEY,KEY`` per family of the applied entries (in order), missing keys as
        ``KEY=none`` under the requested family; e.g. ``paper:mean_teacher;l2i_wrn:+l2i_o``."""
        if not self.applied:
            return f"{self.family}:none"
        if self.complete and len(self.applied) == 1 and self.applied[0].algorithm == self.algorithm:
            return self.applied[0].name
        groups: list[tuple[str, list[str]]] = []
        for family, key in [(p.name, p.algorithm) for p in self.applied] + [(self.family, f"{k}=none")
                                                                              for k in self.missing]:
            if groups and groups[-1][0] == family:
                groups[-1][1].append(key)
            else:
                groups.append((family, [key]))
        return ";".join(f"{family}:{','.join(keys)}" for family, keys in groups)

    def missing_message(self) -> str:
        keys = ", ".join(self.missing)
        return f"no {self.family!r} preset for {keys} on {self.dataset} (run {self.algorithm})"


def resolve(name: str, algorithm: str, dataset: str) -> Resolution:
    """Look up ``algorithm``'s entries on ``dataset`` in family ``name`` (see the module docstring)."""
    base, plus, rule = algorithm.partition("+")
    required = [base, "+" + rule] if plus else [base]
    applied, missing = [], []
    for key in required:
        p = find(name, key, dataset)
        if p is None:
            missing.append(key)
        else:
            applied.append(p)
    if plus:
        pair = find(name, algorithm, dataset)
        if pair is not None:
            applied.append(pair)
    return Resolution(name, algorithm, dataset, tuple(applied), tuple(missing))


def apply(cfg: RunConfig, name: str, resolution: Resolution | None = None) -> RunConfig:
    """``cfg`` with family ``name``'s entries for its (algorithm, dataset) applied.

    What has no entry keeps the config's values (its suite recipe), and the ``preset`` field
    and ``protocol_notes`` say so: a missing preset is recorded, never silent. Paper
    protocols refuse such runs before this is called (:mod:`bench.protocols`).
    """
    res = resolution or resolve(name, cfg.algorithm, cfg.dataset)
    return RunConfig.from_dict(applied_to(cfg.to_dict(), res))


def applied_to(data: dict, res: Resolution) -> dict:
    """A RunConfig dict (``optim`` a dict or an OptimConfig) with ``res``'s entries applied (see :func:`apply`)."""
    if not res.applied:
        return {**data, "preset": res.label,
                "protocol_notes": f"{data['protocol_notes']}; no {res.family!r} preset for {res.algorithm} on "
                                  f"{res.dataset}: suite recipe used"}
    run: dict = {}
    hparams = dict(data["hparams"])
    notes = data["protocol_notes"]
    single = res.label == res.applied[0].name
    for p in res.applied:
        run.update(p.run)
        hparams.update(p.hparams)
        title = p.name if single else f"{p.name}/{p.algorithm}"
        notes += f"; preset {title} ({p.source})" + (f": {p.notes}" if p.notes else "")
    for key in res.missing:
        notes += f"; no {res.family!r} preset for {key} on {res.dataset}: " + (
            "the rule's defaults used" if key.startswith("+") else "suite recipe used")
    return {**data, **run, "hparams": hparams, "preset": res.label, "protocol_notes": notes}


def main() -> int:
    rows = [(p.name, p.algorithm, p.dataset, p.run.get("network", "-"), p.run.get("steps", "-"),
             f"{p.run.get('batch_labeled', '-')}+{p.run.get('batch_unlabeled', '-')}" if p.run else "-", p.source)
            for p in PRESETS]
    head = ("preset", "algorithm", "dataset", "network", "steps", "batch", "source")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\n{len(rows)} presets in {len(FAMILIES)} families; select with python -m bench.run --preset NAME, or "
          "through a paper protocol (--protocol NAME); '+RULE' entries apply to every BASE+RULE of their family; "
          "each entry's notes (stored with every run) say which choices were adapted or unverified")
    for f in FAMILIES.values():
        print(f"  {f.name}: {f.description}" + (f" (inherits {f.parent})" if f.parent else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
