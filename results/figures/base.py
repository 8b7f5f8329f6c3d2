"""What a figure of the registry is: a study at two scales, a plot from Parquet, a caption.

A :class:`Figure` declares the runs it needs as a :class:`Study` per scale (``cpu``: offline
data, minutes on 2 cores; ``paper``: the paper's dataset and protocol, for a GPU cluster)
and a plot function that reads only the results directory (runs, evals and artifacts
tables, through :class:`FigureData`) and returns a :class:`Drawing`. ``bench.figure`` plans
and runs the study, then :func:`write_drawing` writes the PNG (caption in its metadata), the
PDF and a ``.md`` with the caption beside them.

A study is plain data: each :class:`StudyPart` holds the keyword arguments of
``bench.planner.PlanRequest`` (so this package never imports ``bench``) and what the figure
changes in the planned runs. A planned run the figure leaves unchanged keeps its suite, so it
is the same run (same id) as the suite's and is shared with it; a changed one is recorded
under the suite ``figure:<name>`` so that it never joins a suite's comparisons.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pandas as pd

SCALES = ("cpu", "paper")
DPI = 150


@dataclass(frozen=True)
class StudyPart:
    """One planner request of a study and what the figure changes in its runs.

    ``plan``: keyword arguments of ``bench.planner.PlanRequest`` (suite, algorithms, datasets,
    labels, seeds, preset, protocols, val_protocol, ...); ``algorithm``: run this algorithm in
    the planned runs' settings instead (the hyperparameters it shares are kept), e.g. the
    labeled-only baseline at a method's budget; ``n_labels``: the planned runs at these label
    counts instead (a protocol cell at other label counts); ``hp``: hyperparameters set last
    (a sweep's value); ``artifacts``: what the runs of ``artifact_seeds`` (None: every seed)
    write besides their rows (``results.artifacts``).
    """

    plan: Mapping[str, Any]
    algorithm: str | None = None
    n_labels: tuple[int, ...] = ()
    hp: Mapping[str, Any] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()
    artifact_seeds: tuple[int, ...] | None = (0,)


@dataclass(frozen=True)
class Study:
    """The runs of one figure at one scale, and how that version differs from the paper's."""

    parts: tuple[StudyPart, ...]
    deviations: str


@dataclass
class Drawing:
    """A drawn figure: the matplotlib figure, caption notes the data decided (e.g. a seed that
    failed), and tables to write beside it (name -> DataFrame; ``.md`` and ``.csv``)."""

    fig: Any
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class FigureData:
    """What a plot may read: the planned runs (``planned``: one dict per run, the resolved
    config plus ``run_id``), their rows under ``results_dir`` (``runs``: every status; ``evals``:
    of the ok runs), and their artifacts (:meth:`artifacts`)."""

    results_dir: str
    scale: str
    planned: list[dict]
    runs: pd.DataFrame
    evals: pd.DataFrame

    def ok(self) -> pd.DataFrame:
        """The runs with status ok."""
        return self.runs[self.runs["status"] == "ok"] if len(self.runs) else self.runs

    def artifacts(self, kind: str) -> dict[str, pd.DataFrame]:
        """{run id: rows of artifact ``kind``} of the study's runs that have them."""
        from ..artifacts import load_artifacts

        ids = [p["run_id"] for p in self.planned if kind in p.get("artifacts", ())]
        return {k: v for k, v in load_artifacts(self.results_dir, ids, kind).items() if len(v)}

    def lowest_seed_runs(self, run_ids) -> dict[str, str]:
        """{algorithm: the run id of its lowest planned seed among ``run_ids``} (the run a figure
        shows when it can show one seed only)."""
        out: dict[str, str] = {}
        for p in sorted(self.planned, key=lambda p: p["seed"]):
            if p["run_id"] in run_ids and p["algorithm"] not in out:
                out[p["algorithm"]] = p["run_id"]
        return out


class NothingToDraw(ValueError):
    """The results hold none of the runs a figure draws (one-line message)."""


@dataclass(frozen=True)
class Figure:
    """One figure of one paper: its study per scale, its plot, and how to describe it.

    ``name``: the command-line name (``000-fig1``); ``paper``/``number``: where it is in the
    papers; ``shows``: one line for ``--list``; ``needs``: non-empty when this version cannot
    run it (the reason), e.g. a task that does not exist yet.
    """

    name: str
    paper: str
    number: str
    title: str
    shows: str
    studies: Mapping[str, Callable[[], Study]] = field(default_factory=dict)
    plot: Callable[[FigureData], Drawing] | None = None
    needs: str = ""

    @property
    def suite(self) -> str:
        """The suite of the runs this figure changes (never a suite's own name)."""
        return f"figure:{self.name}"

    def study(self, scale: str) -> Study:
        if scale not in self.studies:
            raise KeyError(f"figure {self.name} has no {scale} scale (it has: {', '.join(self.studies) or 'none'})")
        return self.studies[scale]()


def write_drawing(drawing: Drawing, stem: str, title: str, caption: str) -> list[str]:
    """``stem``.png (caption in its ``Description`` text chunk), ``stem``.pdf (in its
    ``Subject``), ``stem``.md (caption, image, tables) and ``stem``-<table>.csv; returns the paths."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(stem)) or ".", exist_ok=True)
    png, pdf, md = f"{stem}.png", f"{stem}.pdf", f"{stem}.md"
    drawing.fig.savefig(pdf, metadata={"Title": title, "Subject": caption, "Creator": "meta-ssl-bench"})
    buf = io.BytesIO()
    drawing.fig.savefig(buf, format="png", dpi=DPI)
    plt.close(drawing.fig)
    _write_png(buf, png, {"Title": title, "Description": caption, "Software": "meta-ssl-bench"})
    paths = [png, pdf, md]
    lines = [f"# {title}", "", f"![{title}]({os.path.basename(png)})", "", caption, ""]
    for name, table in drawing.tables.items():
        csv = f"{stem}-{name}.csv"
        table.to_csv(csv, index=False)
        paths.append(csv)
        lines += [f"## {name}", "", markdown_table(table), ""]
    with open(md, "w") as f:
        f.write("\n".join(lines))
    return paths


def _write_png(buf: io.BytesIO, path: str, text: dict[str, str]) -> None:
    """The PNG in ``buf`` as a 256-colour palette image (a few times smaller, the same to the eye
    for line art) with ``text`` as its tEXt chunks, written whole (temporary file, then rename)."""
    from PIL import Image, PngImagePlugin

    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    tmp = f"{path}.tmp-{os.getpid()}"
    image.save(tmp, format="PNG", optimize=True, pnginfo=info)
    os.replace(tmp, path)


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table of ``df`` (values as they print)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
