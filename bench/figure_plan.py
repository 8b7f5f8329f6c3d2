"""A figure's study as run configs, through the one planner, and which of them are missing.

Each :class:`~results.figures.base.StudyPart` becomes a ``bench.planner.PlanRequest``; the
figure's changes (another algorithm in the same settings, other label counts, a sweep's
hyperparameters) are applied to the planned configs and re-validated. A planned config the
figure leaves unchanged keeps its suite and so its run id: it is the suite's run, shared.
A changed one gets the suite ``figure:<name>`` and a protocol note saying what changed, so it
never joins a suite's comparisons in the report. Artifacts never change a run id.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from algorithms import ConfigError, get_algorithm
from results.figures.base import Figure, Study, StudyPart

from .cli_errors import UsageError
from .config import RunConfig
from .planner import PlanRequest, make_plan


@dataclass
class PlannedFigure:
    """A figure's study at one scale as run configs (each run once), and per run id what the
    figure changed in it ("" for a suite's own run)."""

    figure: Figure
    study: Study
    configs: list[RunConfig]
    changes: dict[str, str] = field(default_factory=dict)


def _swap(cfg: RunConfig, algorithm: str) -> RunConfig:
    """``cfg``'s settings with another algorithm; the hyperparameters both have are kept."""
    names = {f.name for f in dataclasses.fields(get_algorithm(algorithm).Hparams)}
    return dataclasses.replace(cfg, algorithm=algorithm, hparams={k: v for k, v in cfg.hparams.items() if k in names})


def _changed(cfg: RunConfig, part: StudyPart) -> list[tuple[RunConfig, str]]:
    """The configs a part makes of one planned config, each with a note of what it changed."""
    out = []
    for n in part.n_labels or (cfg.n_labels,):
        v, what = dataclasses.replace(cfg, n_labels=n), []
        if n != cfg.n_labels:
            what.append(f"{n} labels (the planned run has {cfg.n_labels})")
        if part.algorithm and part.algorithm != cfg.algorithm:
            v = _swap(v, part.algorithm)
            what.append(f"{part.algorithm} in {cfg.algorithm}'s settings")
        if part.hp:
            v = dataclasses.replace(v, hparams={**v.hparams, **part.hp})
            what.append(", ".join(f"{k}={val}" for k, val in part.hp.items()))
        out.append((v, "; ".join(what)))
    return out


def _check_labels(cfg: RunConfig) -> None:
    import datasets

    info = datasets.get_info(cfg.dataset)
    try:
        datasets.validate_request(info, cfg.n_labels, datasets.resolve_n_val(info, cfg.n_labels, cfg.val_protocol,
                                                                              cfg.n_val))
    except (datasets.SplitError, ValueError) as e:
        raise UsageError(str(e)) from None


def expand_part(figure: Figure, part: StudyPart, common: dict) -> list[tuple[RunConfig, str]]:
    """(config, what the figure changed) for every run of ``part``; ``common``: PlanRequest
    fields every part shares (results_dir, data_root, download, workers, gpus_per_worker, dry_run)."""
    try:
        req = PlanRequest(**{**dict(part.plan), **common})
    except TypeError as e:
        raise UsageError(f"figure {figure.name}: bad study part {dict(part.plan)}: {e}") from None
    out = []
    for planned in make_plan(req).configs:
        for v, what in _changed(planned, part):
            try:
                v = RunConfig.from_dict(v.to_dict())  # the changed config is checked like any other
            except ConfigError as e:
                raise UsageError(f"figure {figure.name}: {e}") from None
            if v.run_id != planned.run_id:
                _check_labels(v)
                v = dataclasses.replace(v, suite=figure.suite,
                                        protocol_notes=f"{v.protocol_notes}; figure {figure.name}: {what}")
            wants = part.artifacts if part.artifact_seeds is None or v.seed in part.artifact_seeds else ()
            out.append((dataclasses.replace(v, artifacts=tuple(wants)), what if v.suite == figure.suite else ""))
    return out


def plan_figure(figure: Figure, scale: str, common: dict) -> PlannedFigure:
    """The figure's study at ``scale`` as configs, each run once (artifact requests merged)."""
    study = figure.study(scale)
    by_id: dict[str, RunConfig] = {}
    changes: dict[str, str] = {}
    for part in study.parts:
        for cfg, what in expand_part(figure, part, common):
            merge(by_id, cfg)
            changes.setdefault(cfg.run_id, what)
    return PlannedFigure(figure, study, list(by_id.values()), changes)


def merge(by_id: dict[str, RunConfig], cfg: RunConfig) -> None:
    """Add ``cfg`` to ``by_id``; a run already there gets the union of both artifact requests."""
    old = by_id.get(cfg.run_id)
    if old is not None:
        cfg = dataclasses.replace(old, artifacts=tuple(dict.fromkeys(old.artifacts + cfg.artifacts)))
    by_id[cfg.run_id] = cfg


def share_artifacts(plans: list[PlannedFigure]) -> None:
    """Every figure's copy of a run asks for every artifact any figure asks of it, so that a run
    two figures share runs once."""
    union: dict[str, RunConfig] = {}
    for p in plans:
        for c in p.configs:
            merge(union, c)
    for p in plans:
        p.configs = [union[c.run_id] for c in p.configs]


@dataclass
class ResultsState:
    """What a results directory holds for the planned runs."""

    finished: set[str]
    ok: set[str]
    kinds: dict[str, set[str]]

    def missing(self, cfg: RunConfig) -> bool:
        """Not finished, or finished ok without an artifact it asks for (a diverged run has none)."""
        if cfg.run_id not in self.finished:
            return True
        return cfg.run_id in self.ok and not set(cfg.artifacts) <= self.kinds.get(cfg.run_id, set())


def results_state(results_dir: str, configs: list[RunConfig]) -> ResultsState:
    """Finished and ok runs among ``configs`` and the artifact kinds each one has."""
    from results import ResultStore
    from results.artifacts import kinds_of

    if not os.path.isdir(results_dir):
        return ResultsState(set(), set(), {})
    store = ResultStore(results_dir)
    wanted = {c.run_id for c in configs}
    finished = store.finished_run_ids() & wanted
    runs = store.load_runs(sorted(finished)) if finished else None
    ok = set(runs[runs["status"] == "ok"]["run_id"]) if runs is not None and len(runs) else set()
    arts = [c.run_id for c in configs if c.artifacts and c.run_id in ok]
    return ResultsState(finished, ok, kinds_of(results_dir, arts))


def describe_groups(configs: list[RunConfig], changes: dict[str, str]) -> list[str]:
    """One line per (dataset, labels, algorithm, change): the seeds, and which write artifacts."""
    groups: dict[tuple, list[RunConfig]] = {}
    for c in configs:
        groups.setdefault((c.dataset, c.n_labels, c.algorithm, changes.get(c.run_id, "")), []).append(c)
    lines = []
    for (dataset, n, algo, change), cs in groups.items():
        seeds = ", ".join(str(c.seed) for c in sorted(cs, key=lambda c: c.seed))
        arts = sorted({f"seed {c.seed}: {'/'.join(c.artifacts)}" for c in cs if c.artifacts})
        lines.append(f"{dataset}/{n} {algo}{f' [{change}]' if change else ''}: seed{'s' if len(cs) > 1 else ''} {seeds}"
                     + (f" (artifacts {'; '.join(arts)})" if arts else ""))
    return lines


def describe(cfg: RunConfig, change: str) -> str:
    """One line naming a run: dataset/labels, algorithm, seed, what the figure changed, artifacts."""
    extra = f" [{change}]" if change else ""
    arts = f" (artifacts: {', '.join(cfg.artifacts)})" if cfg.artifacts else ""
    return f"{cfg.run_id} {cfg.dataset}/{cfg.n_labels} {cfg.algorithm} seed={cfg.seed}{extra}{arts}"
