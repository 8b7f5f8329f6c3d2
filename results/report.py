"""python -m results.report: a report of a results directory beside the papers' numbers.

Writes ``OUT/report.md`` with PNG figures beside it and ``OUT/report.html`` (the same report
in one self-contained file): settings and protocol deviations, what is missing, results per
setting, paired comparisons (rule vs base, method vs supervised) with intervals, cost at equal
steps and at equal training time, and our numbers beside the papers'. Reads only the Parquet
files; a corrupt or foreign file is named on stderr in one line and left out.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import pandas as pd

from .compare import by_run, comparisons, usable, with_settings
from .papers import PAPER_TITLES, PaperNumbersError, load_paper_numbers
from .report_doc import Document, Heading, Image, Para, Table, to_html, to_markdown
from .report_figures import slug, time_figure, train_test_figure
from .report_load import load_results
from .report_papers import against_papers, offline_notes
from .report_sections import (comparisons_section, cost_section, missing_section, overview, results_section,
                              settings_section)

PROG = "results.report"


class ReportError(ValueError):
    """Nothing to report (one-line message)."""


def _num(x: float, spec: str = ".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def papers_section(runs: pd.DataFrame, papers: pd.DataFrame | None) -> list:
    blocks = [Heading(1, "Against the papers")]
    if papers is None:
        return blocks + [Para("No paper numbers file was readable; see the message above.")]
    matched, not_run = against_papers(runs, papers)
    blocks.append(Para("Every paper row whose dataset, label count and method we ran (the method mapped by the "
                       "declared table in `results/papers.py`), our mean ± std over seeds beside the paper's value "
                       "(± its std where printed) and ours − paper in percentage points. Deviations say where our "
                       "run is not the paper's protocol (network, budget, validation split, recorded notes): a "
                       "difference under deviations measures the deviation as much as the method."))
    if len(matched):
        rows = []
        for r in matched.itertuples(index=False):
            paper = _num(r.paper_value) + (f" ± {_num(r.paper_std)}" if not math.isnan(r.paper_std) else "")
            rows.append([f"{r.paper} {r.table}", r.dataset, str(r.n_labels), f"{r.paper_method} → {r.algorithm}",
                         r.paper_network or "-", paper, f"{_num(r.mean)} ± {_num(r.std)} ({r.n})", f"{r.diff:+.2f}",
                         f"{r.steps} steps, {r.network}, val {r.val_protocol}",
                         "; ".join(x for x in (r.deviations, r.note, r.paper_notes) if x)])
        blocks.append(Table(["paper table", "dataset", "labels", "method (paper → ours)", "paper network",
                             "paper %", "ours % (n)", "ours − paper", "our run", "deviations and notes"], rows,
                            "llrllrrrll"))
    else:
        blocks.append(Para("No setting here matches a paper row (dataset, label count and method)."))
    blocks += [Para(n) for n in offline_notes(runs)]
    if len(not_run):
        g = not_run.assign(n_labels=not_run["n_labels"].map(lambda v: "-" if pd.isna(v) else str(int(v))))
        rows = [[f"{p} {t}", d or "-", n or "-", m, ", ".join(grp["n_labels"]), reason]
                for (p, t, d, n, m, reason), grp in g.groupby(["paper", "table", "dataset", "network", "method", "reason"],
                                                              sort=False)]
        blocks += [Heading(2, f"Paper rows not run ({len(not_run)} of {len(papers)})"),
                   Para("Papers: " + "; ".join(f"{k} = {v}" for k, v in PAPER_TITLES.items()) + "."),
                   Table(["paper table", "dataset", "network", "method", "labels", "why not"], rows, "llllll")]
    return blocks


def _figures(runs: pd.DataFrame, evals: dict, out_dir: str) -> dict[str, list]:
    figs: dict[str, list] = {}
    u = usable(runs)
    for setting, g in u.groupby("setting", sort=True):
        name = slug(setting)
        blocks = []
        if time_figure(g, evals, setting, os.path.join(out_dir, f"time-{name}.png")):
            blocks.append(Image(f"time-{name}.png", f"test error vs training time, {setting}"))
        if train_test_figure(g, evals, setting, os.path.join(out_dir, f"curves-{name}.png")):
            blocks.append(Image(f"curves-{name}.png", f"train and test error vs step, {setting}"))
        figs[setting] = blocks
    return figs


def build_report(results_dir: str, out_dir: str, *, paper_numbers: str | None = None, html: bool = True,
                 n_boot: int = 10_000, warn=print) -> list[str]:
    """Write the report; return the paths written. ReportError when there is nothing to report."""
    if not os.path.isdir(results_dir):
        raise ReportError(f"results directory {os.path.abspath(results_dir)} does not exist")
    loaded = load_results(results_dir)
    for p in loaded.unprinted:  # the store prints its own line for the files it skips
        warn(p)
    if loaded.runs.empty:
        raise ReportError(f"no readable runs under {os.path.abspath(results_dir)}")
    try:
        papers = load_paper_numbers(paper_numbers)
    except PaperNumbersError as e:
        warn(str(e))
        papers = None
    os.makedirs(out_dir, exist_ok=True)
    runs = with_settings(loaded.runs)
    evals = by_run(loaded.evals)
    test = comparisons(runs, "test_error", n_boot=n_boot)
    val = comparisons(runs, "val_error", n_boot=n_boot)
    timed = comparisons(runs, "equal_time:test", evals=loaded.evals, n_boot=n_boot)
    doc = Document(f"meta-ssl-bench report: {os.path.basename(os.path.abspath(results_dir))}")
    doc.add(Para(f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python -m results.report`."))
    doc.add(*overview(runs, loaded.problems, os.path.abspath(results_dir)))
    doc.add(*settings_section(runs))
    doc.add(*missing_section(runs))
    doc.add(*results_section(runs, evals))
    doc.add(*comparisons_section(test, val))
    doc.add(*cost_section(runs, test, timed, _figures(runs, evals, out_dir)))
    doc.add(*papers_section(runs, papers))
    paths = [os.path.join(out_dir, "report.md")]
    with open(paths[0], "w") as f:
        f.write(to_markdown(doc))
    if html:
        paths.append(os.path.join(out_dir, "report.html"))
        with open(paths[1], "w") as f:
            f.write(to_html(doc, out_dir))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    p.add_argument("--results-dir", default="bench-results", help="results directory of bench.run (default: "
                   "bench-results)")
    p.add_argument("--out", default="report", help="folder for report.md, report.html and the figures (default: report)")
    p.add_argument("--paper-numbers", help="CSV of the papers' numbers (default: the copy shipped as "
                   "results/paper_numbers.csv)")
    p.add_argument("--no-html", action="store_true", help="write report.md and the figures only")
    p.add_argument("--bootstrap", type=int, default=10_000, metavar="N",
                   help="Monte-Carlo bootstrap resamples when a pair has more than 6 seeds (default 10000; up to 6 "
                        "seeds every resample is enumerated)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bootstrap < 100:
        print(f"{PROG}: error: --bootstrap must be at least 100, got {args.bootstrap}", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"{PROG}: error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return 2
    try:
        paths = build_report(args.results_dir, args.out, paper_numbers=args.paper_numbers, html=not args.no_html,
                             n_boot=args.bootstrap, warn=lambda m: print(f"{PROG}: warning: {m}", file=sys.stderr))
    except ReportError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
