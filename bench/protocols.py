"""Paper protocols: each is one paper table, and expands to exactly that table's runs.

A :class:`Protocol` names the table (paper and table number), its datasets and label counts,
its methods (registered algorithms or ``BASE+RULE`` compositions), the cells a method's row
leaves empty in the paper (``cells``), and the preset family (:mod:`bench.presets`) that holds
every method's settings. :func:`expand` turns protocols into run configs: datasets x label
counts x methods x seeds, each with its preset applied. A composition whose base is not a
row of the table gets its base run too (``paper_row`` False), so every rule is compared with
its base under the same settings. A run without a preset entry is refused
(:class:`~bench.presets.MissingPreset`) unless ``allow_missing_presets``, which runs it with
the dataset's recipe and the protocol's network and records that in its ``preset`` field
and ``protocol_notes``. Identical runs of two protocols (the same config, hence the same
run id) are planned once; :func:`expand` lists every protocol a run belongs to.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from algorithms import ConfigError, list_algorithms, list_compositions

from . import presets
from .config import RunConfig

SUITE = "full"  # every protocol run belongs to the full suite, whichever command plans it


@dataclass(frozen=True)
class Protocol:
    """One paper table. ``labels``: dataset -> label counts of the table; ``cells``: for a
    method whose row is partial, the dataset -> label counts it has (others run every cell);
    ``network``: the table's architecture (presets may pick a named variant of it, e.g.
    ``cnn13_noise_dropout`` for a baseline whose paper adds noise and dropout); ``preset``: the
    preset family; ``seeds``: runs per cell."""

    paper: str
    table: str
    labels: dict[str, tuple[int, ...]]
    network: str
    methods: tuple[str, ...]
    preset: str
    notes: str = ""
    cells: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    seeds: int = 5

    def run_methods(self) -> list[tuple[str, bool]]:
        """(method, is a row of the table): the rows, then bases of compositions that are not rows."""
        rows = [(m, True) for m in self.methods]
        added = []
        for m in self.methods:
            base = m.partition("+")[0]
            if "+" in m and base not in self.methods and base not in added:
                added.append(base)
        return rows + [(b, False) for b in added]

    def cells_of(self, method: str) -> dict[str, tuple[int, ...]]:
        """Dataset -> label counts ``method`` runs on (an added base: its compositions' cells)."""
        if method in self.methods:
            return self.cells.get(method, self.labels)
        union: dict[str, set[int]] = {}
        for m in self.methods:
            if m.partition("+")[0] == method and "+" in m:
                for d, ns in self.cells_of(m).items():
                    union.setdefault(d, set()).update(ns)
        return {d: tuple(n for n in self.labels[d] if n in union[d]) for d in self.labels if d in union}


_WRN_BASELINES = ("pseudo_label", "pi_model", "vat", "supervised_mixup")
_C10_ONLY = {"cifar10": (250, 500, 1000)}
_C10_ALL = {"cifar10": (250, 500, 1000, 2000, 4000)}
PROTOCOLS: dict[str, Protocol] = {
    "meta_semi_table1": Protocol(
        "002 Meta-Semi", "Table 1", {"cifar10": (1000, 2000, 4000), "cifar100": (4000, 10000)}, "cnn13",
        ("supervised", "supervised_mixup", "pi_model", "temporal_ensembling", "mean_teacher", "vat", "ict",
         "meta_semi", "meta_semi_l2rw"), "paper_cnn13",
        "not run: SNTG (not implemented), MT + Fast SWA (mean_teacher with fast_swa; 002 gives no settings), "
        "Meta-Semi + ICT (meta_semi with ict_weight > 0; 002 gives no weight); the Learning to Reweight row is "
        "meta_semi_l2rw, L2RW's weights in Meta-Semi's pipeline as 002 App. D ran it (its CIFAR-10 2000 cell is "
        "empty in the paper)",
        cells={"temporal_ensembling": {"cifar10": (1000, 2000, 4000), "cifar100": (10000,)},
               "vat": {"cifar10": (1000, 2000, 4000)},
               "meta_semi_l2rw": {"cifar10": (1000, 4000), "cifar100": (4000, 10000)}}),
    "meta_semi_table2": Protocol(
        "002 Meta-Semi", "Table 2", {"cifar10": (250, 500, 1000, 2000, 4000), "cifar100": (10000,)}, "wrn28_2",
        ("mean_teacher", "vat", "mixmatch", "meta_semi"), "paper",
        "WRN-28 is WRN-28-2 (002 App. D); 002's VAT row repeats Oliver et al.'s numbers",
        cells={"mean_teacher": _C10_ALL, "vat": _C10_ALL}),
    "meta_semi_table3": Protocol("002 Meta-Semi", "Table 3", {"stl10": (1000,)}, "wrn28_2", ("mixmatch", "meta_semi"),
                                 "paper", "class-balanced labels instead of the predefined folds; not run: SWWAE, "
                                          "CC-GAN (literature rows)"),
    "meta_semi_table4": Protocol(
        "002 Meta-Semi", "Table 4", {"svhn": (500, 1000)}, "cnn13",
        ("vat", "pi_model", "temporal_ensembling", "mean_teacher", "ict", "meta_semi"), "paper_cnn13",
        "not run: SNTG (not implemented), Meta-Semi + ICT (002 gives no weight)", cells={"vat": {"svhn": (1000,)}}),
    "l2i_table2": Protocol(
        "001 L2I (journal)", "Table 2", {"cifar10": (250, 500, 1000), "cifar100": (500, 1000, 2000)}, "wrn28_2",
        _WRN_BASELINES + ("mean_teacher", "mixmatch", "fixmatch", "mean_teacher+l2i_o", "mixmatch+l2i_o",
                          "fixmatch+l2i_o"), "l2i_wrn",
        "Pi / PL / MixUp / VAT rows are CIFAR-10 only and copied from their papers by 001; each L2I row is the "
        "model-output variant with the approximate update (see the l2i_wrn '+l2i_o' preset)",
        cells={m: _C10_ONLY for m in _WRN_BASELINES}),
    "l2i_table10": Protocol(
        "001 L2I (journal)", "Table 10", {"cifar10": (250, 500, 1000), "cifar100": (500, 1000, 2000)}, "wrn28_2",
        ("fixmatch", "fixmatch+l2i_o", "fixmatch+l2i_l"), "l2i_wrn",
        "FM-L2I (O) and (L): model output vs learnable labels; FM and FM-L2I (O) are the runs of l2i_table2"),
    "l2i_conf_table1": Protocol(
        "000 L2I (conference)", "Table 1", {"cifar10": (250, 500, 1000, 2000, 4000),
                                           "cifar100": (1000, 2000, 3000, 4000, 5000)}, "cnn13",
        ("supervised", "pseudo_label", "pseudo_label+l2i_l", "pseudo_label+l2i_o"), "l2i_conf_cnn13",
        "option 1 = learnable labels (l2i_l), option 2 = model output (l2i_o); 000 App. A.2 Exp. 2 settings"),
    "l2i_conf_table2": Protocol(
        "000 L2I (conference)", "Table 2", {"cifar10": (250, 500, 1000, 2000, 4000),
                                           "cifar100": (1000, 2000, 3000, 4000, 5000)}, "wrn28_2",
        _WRN_BASELINES + ("mean_teacher", "mixmatch", "mean_teacher+l2i_l", "mean_teacher+l2i_o", "mixmatch+l2i_l",
                          "mixmatch+l2i_o"), "l2i_conf_wrn",
        "Pi / PL / MixUp / VAT rows are CIFAR-10 only and copied from their papers by 000 (their 'paper' presets)",
        cells={m: _C10_ALL for m in _WRN_BASELINES}),
    "l2i_table1": Protocol(
        "001 L2I (journal)", "Table 1", {"aflw": (91, 182, 455)}, "tcdcn",
        ("supervised", "pseudo_label", "pseudo_label+l2i_o", "mean_teacher", "mean_teacher+l2i_o"), "l2i_aflw",
        "AFLW landmark regression, metric: mean error over the inter-ocular distance; 1% / 2% / 5% of the 9,110 "
        "training images left after validation; each L2I row is the model-output variant with the approximate "
        "update (001 Table 7); not run: SL on the whole training set (7.71, a reference row)"),
    "l2i_table9": Protocol(
        "001 L2I (journal)", "Table 9", {"aflw": (91, 182, 455)}, "tcdcn",
        ("mean_teacher", "mean_teacher+l2i_o", "mean_teacher+l2i_l"), "l2i_aflw",
        "MT-L2I (O) and (L): model output vs learnable labels on AFLW; MT and MT-L2I (O) are the runs of l2i_table1"),
    "meta_grad_table1": Protocol(
        "003 Meta-Gradient SSL", "Table 1", {"svhn": (1000,), "cifar10": (4000,), "cifar100": (10000,)}, "cnn13",
        ("pi_model", "temporal_ensembling", "mean_teacher", "vat", "pseudo_label+meta_grad"), "meta_grad_cnn13",
        "003's Conv-Large is the 13-layer CNN; the baselines are 003's literature rows (their papers' settings, "
        "shared with 002's tables); not run: MT+SNTG, VAT+Ent, VAT+Ent+SNTG, VAT+VAAD, MA-DNN, Co-training, MT+fastSWA, "
        "TNAR-VAE, ADA-Net, ADA-Net+fastSWA, DualStudent (not implemented) and the Fully-Supervised row (all labels); "
        "Pseudo-Label with the method's settings runs as its base",
        cells={"mean_teacher": {"svhn": (1000,), "cifar10": (4000,)}, "vat": {"svhn": (1000,), "cifar10": (4000,)}}),
}


class UnknownProtocol(ConfigError):
    """A protocol name that is not in :data:`PROTOCOLS`."""


def check_names(names: list[str] | None) -> list[str]:
    """The protocols to run (every one for None); UnknownProtocol names the bad one in one line."""
    if names is None:
        return list(PROTOCOLS)
    for n in names:
        if n not in PROTOCOLS:
            raise UnknownProtocol(f"unknown protocol {n!r} (valid: {', '.join(PROTOCOLS)})")
    return list(dict.fromkeys(names))


def protocols_of(method: str) -> list[str]:
    """Names of the protocols in :data:`PROTOCOLS` that list ``method`` as a row."""
    return [name for name, p in PROTOCOLS.items() if method in p.methods]


def protocol_listing() -> str:
    """One line per protocol, then one per method with the protocols it belongs to."""
    lines = ["full-suite protocols (paper table: datasets/labels, network, preset: methods; [cells] of a partial row; "
             "'(base)': not a row, run as the base of a composition):"]
    def cells(labels: dict[str, tuple[int, ...]]) -> str:
        return "; ".join(f"{d} {'/'.join(map(str, n))}" for d, n in labels.items())

    for name, p in PROTOCOLS.items():
        data = cells(p.labels)
        methods = [(m if row else f"{m} (base)") + ("" if p.cells_of(m) == p.labels else f" [{cells(p.cells_of(m))}]")
                   for m, row in p.run_methods()]
        lines.append(f"  {name}: {p.paper} {p.table}: {data}, {p.network}, preset {p.preset}: " + ", ".join(methods))
    methods = sorted({m for p in PROTOCOLS.values() for m in p.methods})
    registered = set(list_algorithms()) | set(list_compositions())
    lines.append("methods -> protocols (* = not registered yet, not run by the full suite):")
    width = max(map(len, methods)) + 1
    lines += [f"  {(m if m in registered else m + '*').ljust(width)} {', '.join(protocols_of(m))}" for m in methods]
    return "\n".join(lines)


@dataclass(frozen=True)
class ProtocolRun:
    """One planned run: its config, the protocols it belongs to, whether it is a row of one."""

    config: RunConfig
    protocols: tuple[str, ...]
    paper_row: bool


def protocol_config(name: str, method: str, dataset: str, n_labels: int, seed: int, *, split_seed: int | None = None,
                    workers: int = 1, val_protocol: str = "scarce", allow_missing_presets: bool = False) -> RunConfig:
    """The config of one cell of protocol ``name``; MissingPreset if it has no preset (and that is not allowed)."""
    from .suites import RECIPES  # suites imports this module for the full suite's description

    p = PROTOCOLS[name]
    res = presets.resolve(p.preset, method, dataset)
    if not res.complete and not allow_missing_presets:
        raise presets.MissingPreset(f"protocol {name}: {res.missing_message()}; add it to the presets or pass "
                                    "--allow-missing-presets")
    r = RECIPES[dataset]
    notes = "paper protocol" if res.complete else (
        f"paper protocol with missing presets allowed: recipe {dataset} with network {p.network} where none applies")
    data = presets.applied_to(dict(
        dataset=dataset, algorithm=method, network=p.network, n_labels=n_labels, steps=r.steps, seed=seed,
        split_seed=seed if split_seed is None else split_seed, eval_every=r.eval_every,
        batch_labeled=r.batch_labeled, batch_unlabeled=r.batch_unlabeled, val_protocol=val_protocol,
        ema_decay=r.ema_decay, optim=r.optim, hparams={}, workers=workers, suite=SUITE, protocol_notes=notes), res)
    # at least 40 evaluations, so that the reported median of the last 20 covers the end of training only
    data["eval_every"] = max(1, min(r.eval_every, data["steps"] // 40))
    return RunConfig.from_dict(data)


def expand(names: list[str] | None = None, *, seeds: int | None = None, split_seed: int | None = None,
           workers: int = 1, val_protocol: str = "scarce", allow_missing_presets: bool = False,
           algorithms: list[str] | None = None, datasets: list[str] | None = None,
           labels: list[int] | None = None) -> list[ProtocolRun]:
    """The runs of protocols ``names`` (all for None), each planned once.

    ``seeds`` overrides each protocol's seed count; ``algorithms`` / ``datasets`` / ``labels``
    keep only the matching cells (ConfigError if none is left). Raises UnknownProtocol and
    MissingPreset (one line each) before anything is built further.
    """
    chosen = check_names(names)
    runs: dict[str, ProtocolRun] = {}
    for name in chosen:
        p = PROTOCOLS[name]
        for method, row in p.run_methods():
            if algorithms is not None and method not in algorithms:
                continue
            for dataset, counts in p.cells_of(method).items():
                if datasets is not None and dataset not in datasets:
                    continue
                for n in counts:
                    if labels is not None and n not in labels:
                        continue
                    first = protocol_config(name, method, dataset, n, 0, split_seed=split_seed, workers=workers,
                                            val_protocol=val_protocol, allow_missing_presets=allow_missing_presets)
                    for seed in range(p.seeds if seeds is None else seeds):
                        # seeds change nothing that is validated: one checked config per cell
                        cfg = dataclasses.replace(first, seed=seed, split_seed=seed if split_seed is None else split_seed)
                        old = runs.get(cfg.run_id)
                        runs[cfg.run_id] = ProtocolRun(cfg, (old.protocols if old else ()) + (name,),
                                                       row or (old is not None and old.paper_row))
    if not runs:
        raise ConfigError(f"no run of protocol(s) {', '.join(chosen)} matches the selected algorithms / datasets / labels")
    return list(runs.values())


def with_overrides(cfg: RunConfig, steps: int | None = None, network: str | None = None) -> RunConfig:
    """``cfg`` with a command line's --steps / --network, each recorded as a protocol deviation."""
    notes = cfg.protocol_notes
    changes: dict = {}
    if steps is not None and steps != cfg.steps:
        changes.update(steps=steps, eval_every=min(cfg.eval_every, steps))
        notes += f"; budget overridden to {steps} steps (the protocol's: {cfg.steps})"
    if network is not None and network != cfg.network:
        changes["network"] = network
        notes += f"; network overridden to {network} (the protocol's: {cfg.network})"
    return dataclasses.replace(cfg, **changes, protocol_notes=notes) if changes else cfg


__all__ = ["PROTOCOLS", "Protocol", "ProtocolRun", "UnknownProtocol", "check_names", "expand", "protocol_config",
           "protocol_listing", "protocols_of", "with_overrides"]
