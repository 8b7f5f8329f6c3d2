"""What a command will run, before it runs: one JSON-able dict per run, and totals.

Needs no dataset files and no GPU. :func:`plan` gives, per run, its protocol(s), its
resolved config (dataset, n_labels, algorithm, network, steps, batch sizes, optimizer and
schedule, every hyperparameter with its default filled in, preset, protocol notes), whether
it is finished (its run id among a results directory's finished ones) and its estimated
GPU-hours (:mod:`bench.cost_estimate`: an estimate, see its source). :func:`network_totals`,
:func:`protocol_totals` and :func:`grand_total` sum them up; :func:`protocol_summary` does
it per protocol in one call. ``python -m bench.run --dry-run [--json]`` prints all of it.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .config import RunConfig
from .cost_estimate import SOURCE, gpu_hours
from .protocols import PROTOCOLS, ProtocolRun, expand


def plan_entry(cfg: RunConfig, finished: Iterable[str] = (), protocols: Sequence[str] = (),
               paper_row: bool = True) -> dict:
    """One run as a JSON-able dict (``kind`` "run"); see the module docstring."""
    full = cfg.resolved()
    run_id = cfg.run_id
    return {"kind": "run", "run_id": run_id, "protocol": protocols[0] if protocols else None,
            "protocols": list(protocols), "paper_row": paper_row, "finished": run_id in set(finished),
            "est_gpu_hours": gpu_hours(full), **full.to_dict()}


def plan(runs: Sequence[ProtocolRun | RunConfig], finished: Iterable[str] = ()) -> list[dict]:
    """:func:`plan_entry` of every run (protocol runs keep their protocols)."""
    done = set(finished)
    return [plan_entry(r.config, done, r.protocols, r.paper_row) if isinstance(r, ProtocolRun) else plan_entry(r, done)
            for r in runs]


def _totals(entries: list[dict]) -> dict:
    hours = sum(e["est_gpu_hours"] for e in entries)
    steps = sum(e["steps"] for e in entries)
    return {"runs": len(entries), "finished": sum(e["finished"] for e in entries), "steps": steps,
            "est_gpu_hours": hours, "est_gpu_hours_todo": sum(e["est_gpu_hours"] for e in entries if not e["finished"])}


def network_totals(entries: list[dict]) -> list[dict]:
    """Per network: runs, finished runs, total steps, estimated steps/s and GPU-hours (``kind`` "network")."""
    out = []
    for net in sorted({e["network"] for e in entries}):
        t = _totals([e for e in entries if e["network"] == net])
        t["est_steps_per_s"] = t["steps"] / (3600 * t["est_gpu_hours"]) if t["est_gpu_hours"] > 0 else float("inf")
        out.append({"kind": "network", "network": net, **t})
    return out


def protocol_totals(entries: list[dict]) -> list[dict]:
    """Per protocol (in :data:`~bench.protocols.PROTOCOLS` order): its runs (a run two protocols share counts
    in each), finished runs, GPU-hours."""
    present = {p for e in entries for p in e["protocols"]}
    names = [n for n in PROTOCOLS if n in present] + sorted(present - set(PROTOCOLS))
    return [{"kind": "protocol", "protocol": n, **_totals([e for e in entries if n in e["protocols"]])} for n in names]


def grand_total(entries: list[dict]) -> dict:
    """All runs once each (``kind`` "total"), with the estimate's source."""
    return {"kind": "total", **_totals(entries), "estimate": SOURCE}


def protocol_summary(names: list[str] | None = None, finished: Iterable[str] = (), **expand_args) -> list[dict]:
    """Run count and estimated GPU-hours of each protocol (all for None); ``expand_args`` as :func:`bench.protocols.expand`."""
    return protocol_totals(plan(expand(names, **expand_args), finished))


def format_summary(entries: list[dict]) -> str:
    """The totals as a text table (per network, per protocol, overall)."""
    lines = [f"{'network':<22} {'runs':>6} {'done':>6} {'steps':>14} {'est. steps/s':>13} {'est. GPU-h':>11}"]
    for t in network_totals(entries):
        lines.append(f"{t['network']:<22} {t['runs']:>6} {t['finished']:>6} {t['steps']:>14,} "
                     f"{t['est_steps_per_s']:>13.1f} {t['est_gpu_hours']:>11,.0f}")
    per_protocol = protocol_totals(entries)
    if per_protocol:
        lines.append(f"{'protocol':<22} {'runs':>6} {'done':>6} {'steps':>14} {'':>13} {'est. GPU-h':>11}")
        lines += [f"{t['protocol']:<22} {t['runs']:>6} {t['finished']:>6} {t['steps']:>14,} {'':>13} "
                  f"{t['est_gpu_hours']:>11,.0f}" for t in per_protocol]
    t = grand_total(entries)
    lines.append(f"{'total (each run once)':<22} {t['runs']:>6} {t['finished']:>6} {t['steps']:>14,} {'':>13} "
                 f"{t['est_gpu_hours']:>11,.0f}  ({t['est_gpu_hours_todo']:,.0f} to do)")
    lines.append(SOURCE)
    return "\n".join(lines)
