"""The one planner: from a typed request to validated run configs, before Ray or any write.

``bench.run`` builds a :class:`PlanRequest` from its command line; ``bench.tune`` and
``bench.sensitivity`` build one directly. :func:`plan_runs` expands the suite, applies the
preset, a finished search's best values and ``--hp`` overrides (in that order), and checks
names, label counts, networks and dataset files; bad input raises :class:`UsageError` with a
one-line message.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from algorithms import ConfigError, get_algorithm
from algorithms.hparams import current_names, renamed_keys
from algorithms.networks import check_network, list_networks

from .cli_errors import UsageError
from .config import RunConfig, RunEnv
from .suites import SUITES, dense_eval_every, expand

DEFAULT_RESULTS = "bench-results"


@dataclass(frozen=True)
class PlanRequest:
    """What to run: a suite and the overrides of ``bench.run``'s flags (None: the suite's).

    ``hp``: hyperparameters set on every selected algorithm that has them (typed values, or
    strings as parsed by :func:`parse_hp_items`); ``config_from``: a finished search's id.
    """

    suite: str = "quick"
    algorithms: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    labels: tuple[int, ...] | None = None
    seeds: int | None = None
    split_seed: int | None = None
    preset: str | None = None
    config_from: str | None = None
    hp: Mapping[str, Any] = field(default_factory=dict)
    network: str | None = None
    steps: int | None = None
    val_protocol: str = "scarce"
    workers: int = 1
    gpus_per_worker: float = 0.0
    results_dir: str = DEFAULT_RESULTS
    data_root: str | None = None
    download: bool = False
    #: paper tables to run (``bench.protocols``; the ``full`` suite runs them all), and whether
    #: their cells without a preset run with the dataset's recipe instead of being refused
    protocols: tuple[str, ...] | None = None
    allow_missing_presets: bool = False
    #: a plan only: dataset files are not needed
    dry_run: bool = False
    #: every run's network precision and compilation (``RunConfig.precision`` / ``compile``)
    precision: str = "fp32"
    compile: bool = False
    #: every run's network in channels-last memory format (``RunConfig.channels_last``)
    channels_last: bool = False


@dataclass
class Plan:
    """The planned runs, where they read and write, and (for paper protocols) each run's
    protocol memberships (``bench.protocols`` runs, in the order of ``configs``)."""

    configs: list[RunConfig]
    env: RunEnv
    protocol_runs: list | None = None


def parse_value(text: str) -> Any:
    """'0.5' -> 0.5, '3' -> 3, 'true' -> True, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_hp_items(items: list[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> {KEY: typed VALUE}; UsageError for an item without '='."""
    values = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--hp expects KEY=VALUE, got {item!r}")
        values[key] = parse_value(raw)
    return values


def _check_request(req: PlanRequest) -> None:
    import datasets

    from . import presets

    if req.suite not in SUITES:
        raise UsageError(f"unknown suite {req.suite!r} (valid: {', '.join(SUITES)})")
    for algo in req.algorithms or ():
        try:
            get_algorithm(algo)  # also composes BASE+RULE and says why a pair is refused
        except ConfigError as e:
            raise UsageError(str(e)) from None
    for d in req.datasets or ():
        if d not in datasets.list_datasets():
            raise UsageError(f"unknown dataset {d!r} (valid: {', '.join(datasets.list_datasets())})")
    if req.preset is not None and req.preset not in presets.preset_names():
        raise UsageError(f"unknown preset {req.preset!r} (valid: {', '.join(presets.preset_names())})")
    if req.network is not None and req.network not in list_networks():
        raise UsageError(f"unknown network {req.network!r} (valid: {', '.join(list_networks())})")
    if req.steps is not None and req.steps <= 0:
        raise UsageError(f"--steps must be positive, got {req.steps}")
    if req.seeds is not None and req.seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {req.seeds}")
    if req.split_seed is not None and req.split_seed < 0:
        raise UsageError(f"--split-seed must be non-negative, got {req.split_seed}")
    if req.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {req.workers}")
    if req.gpus_per_worker < 0:
        raise UsageError("--gpus-per-worker must be >= 0")
    for n in req.labels or ():
        if n <= 0:
            raise UsageError(f"--labels must be positive, got {n}")


def _protocol_mode(req: PlanRequest) -> bool:
    """Paper protocols run for ``protocols`` and for the ``full`` suite (the papers' tables)."""
    if req.protocols and req.suite not in ("quick", "full"):
        raise UsageError(f"--protocol runs paper tables of the full suite; it does not combine with --suite {req.suite}")
    return bool(req.protocols) or req.suite == "full"


def _protocol_runs(req: PlanRequest) -> list:
    """The protocols' runs (``bench.protocols``) with the request's overrides applied and recorded."""
    from . import protocols

    if req.preset is not None:
        raise UsageError("--preset does not combine with paper protocols: each protocol names its preset family "
                         "(see --list)")
    runs = protocols.expand(list(req.protocols) if req.protocols else None, seeds=req.seeds, split_seed=req.split_seed,
                            workers=req.workers, val_protocol=req.val_protocol,
                            allow_missing_presets=req.allow_missing_presets,
                            algorithms=list(req.algorithms) if req.algorithms else None,
                            datasets=list(req.datasets) if req.datasets else None,
                            labels=list(req.labels) if req.labels else None)
    return [dataclasses.replace(r, config=protocols.with_overrides(r.config, steps=req.steps, network=req.network))
            for r in runs]


def _configs(req: PlanRequest) -> tuple[list[RunConfig], list | None]:
    from . import presets

    runs = None
    if _protocol_mode(req):
        runs = _protocol_runs(req)
        configs = [r.config for r in runs]
    else:
        configs = expand(SUITES[req.suite], algorithms=list(req.algorithms) if req.algorithms else None,
                         datasets=list(req.datasets) if req.datasets else None,
                         labels=list(req.labels) if req.labels else None, seeds=req.seeds, split_seed=req.split_seed,
                         steps=req.steps, workers=req.workers, network=req.network, val_protocol=req.val_protocol)
    if req.preset:
        configs = [presets.apply(c, req.preset) for c in configs]
        if req.network or req.steps:  # explicit flags win over the preset
            configs = [dataclasses.replace(c, **{k: v for k, v in (("network", req.network), ("steps", req.steps),
                                                                   ("eval_every", min(c.eval_every, req.steps or c.eval_every)))
                                                 if v is not None}) for c in configs]
    if req.config_from:
        configs = apply_search(configs, req.config_from, req.results_dir)
    if req.hp:
        configs = apply_hp(configs, dict(req.hp))
    if req.precision != "fp32" or req.compile:
        configs = [dataclasses.replace(c, precision=req.precision, compile=req.compile) for c in configs]
    if req.channels_last:
        configs = [dataclasses.replace(c, channels_last=True) for c in configs]
    if SUITES[req.suite].dense_evals:  # presets and --steps change budgets: keep 20 evaluations in the last half
        configs = [dataclasses.replace(c, eval_every=dense_eval_every(c.steps, c.eval_every, c.eval_last_k))
                   for c in configs]
        if runs is not None:
            runs = [dataclasses.replace(r, config=c) for r, c in zip(runs, configs)]
    for cfg in configs:
        cfg.typed_hparams()
    return configs, runs


def _check_data(configs: list[RunConfig], req: PlanRequest) -> None:
    import datasets

    for dataset, algorithm in dict.fromkeys((c.dataset, c.algorithm) for c in configs):
        refused = get_algorithm(algorithm).refuse_task(datasets.get_info(dataset).task)
        if refused:  # e.g. a classification-only meta rule on a landmark set
            raise UsageError(refused)
    checked: set = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.n_labels, cfg.network)
        if key in checked:
            continue
        checked.add(key)
        info = datasets.get_info(cfg.dataset)
        try:
            n_val = datasets.resolve_n_val(info, cfg.n_labels, cfg.val_protocol, cfg.n_val)
            datasets.validate_request(info, cfg.n_labels, n_val)
            check_network(cfg.network, info.input_shape)
        except (datasets.SplitError, ValueError) as e:
            raise UsageError(str(e)) from None
    for d in sorted({c.dataset for c in configs}) if not req.dry_run else ():  # plans need no files
        try:
            datasets.check_available(d, req.data_root, req.download)
        except datasets.DatasetUnavailable as e:
            raise UsageError(str(e)) from None


def make_plan(req: PlanRequest) -> Plan:
    """The plan of ``req``; UsageError on bad input (nothing started, nothing written)."""
    _check_request(req)
    try:
        configs, runs = _configs(req)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if runs is not None:  # --hp / --config-from may have changed the configs after expansion
        runs = [dataclasses.replace(r, config=c) for r, c in zip(runs, configs)]
    _check_data(configs, req)
    env = RunEnv(results_dir=results_location(req.results_dir),
                 data_root=os.path.abspath(req.data_root) if req.data_root else None,
                 download=req.download, gpus_per_worker=req.gpus_per_worker)
    return Plan(configs, env, runs)


def results_location(results_dir: str) -> str:
    """``--results-dir`` as every process reads it: an absolute path, or a filesystem URI
    (``results.fs``); UsageError (one line) for one that cannot be used."""
    from results.fs import normalize

    try:
        return normalize(results_dir)
    except ValueError as e:
        raise UsageError(str(e)) from None


def plan_runs(req: PlanRequest) -> tuple[list[RunConfig], RunEnv]:
    """The run configs and environment of ``req`` (:func:`make_plan` without the protocol runs)."""
    plan = make_plan(req)
    return plan.configs, plan.env


def apply_hp(configs: list[RunConfig], values: dict[str, Any]) -> list[RunConfig]:
    """``values`` on every config whose algorithm has the key (old key names accepted with a
    deprecation warning); UsageError if no selected algorithm has one of them."""
    out, used = [], set()
    for c in configs:
        hp_cls = get_algorithm(c.algorithm).Hparams
        names = {f.name for f in dataclasses.fields(hp_cls)} | set(renamed_keys(hp_cls))
        own = {k: v for k, v in values.items() if k in names}
        used |= set(own)
        out.append(dataclasses.replace(c, hparams={**c.hparams, **current_names(hp_cls, own, f"{c.algorithm} hyperparameter")}))
    for key in values:
        if key not in used:
            raise UsageError(f"--hp {key}: no selected algorithm has this hyperparameter "
                             f"(algorithms: {', '.join(sorted({c.algorithm for c in configs}))})")
    return out


def apply_search(configs: list[RunConfig], search_id: str, results_dir: str) -> list[RunConfig]:
    """Configs of the search's algorithm with its best hyperparameters (python -m bench.tune)."""
    from results.trials import SearchStore

    row = SearchStore(results_dir).search(search_id)
    if row is None:
        raise UsageError(f"--config-from: no finished search {search_id!r} under {os.path.abspath(results_dir)}")
    params = json.loads(row["best_params_json"])
    if not any(c.algorithm == row["algorithm"] for c in configs):
        raise UsageError(f"--config-from: search {search_id} tuned {row['algorithm']}, which this command does not run")
    note = (f"; hyperparameters {json.dumps(params, sort_keys=True)} from search {search_id} ({row['dataset']}/"
            f"{row['n_labels']}, {row['steps']} steps, {row['trials']} trials, validation error "
            f"{100 * row['best_val_error']:.2f}%)")
    return [dataclasses.replace(c, hparams={**c.hparams, **params}, protocol_notes=c.protocol_notes + note,
                                preset=f"{c.preset}+search:{search_id}" if c.preset else f"search:{search_id}")
            if c.algorithm == row["algorithm"] else c for c in configs]
