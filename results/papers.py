"""The four papers' numbers (``paper_numbers.csv``) and how their method names map to ours.

``paper_numbers.csv`` holds every numeric result table of the four papers, one value a row,
as printed (000 = Learning to Impute, ICLR 2020 submission; 001 = Learning to Impute, journal;
002 = Meta-Semi; 003 = Semi-Supervised Learning with Meta-Gradient). Columns:

=========== ==================================================================================
paper       000, 001, 002 or 003
table       "Table N", "Figure N" or "Text" (a number stated in the prose)
dataset     cifar10, cifar100, svhn, stl10, imagenet, aflw, imdb; empty when not stated
network     as the paper names it (cnn13, conv_large, wrn28_2, wrn28, resnet26_shakeshake, ...);
            empty when the table does not say
n_labels    number of labeled examples (or a percentage, see label_unit); empty for fully supervised
label_unit  count or percent
method      the paper's row label, verbatim (SL, PL, MT + option1, Meta-Semi + ICT, Ours, ...)
metric      error_pct (classification error, %), top1/top5_error_pct, nme_pct (landmark error, %),
            num_hyperparameters
value       the printed value
std         the printed standard deviation, empty when none is printed
notes       what else the paper states about this number (setting, variant, quirk of the text)
=========== ==================================================================================

Known quirks, transcribed as printed: 003 Table 4 vs 5 disagree for SVHN meta-only (3.68 vs
3.86); 001 Table 2 vs 8 for MT-L2I on CIFAR-10 with 1,000 labels (14.76 vs 15.76); one cell of
002 Table 1's Learning-to-Reweight row is garbled in the source (its notes say how it was read).

:data:`PAPER_METHODS` is the one declared table from the papers' names to this project's
algorithms (with the hyperparameter values a row implies); :data:`PAPER_NETWORKS` does the same
for networks.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pandas as pd

PAPER_NUMBERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_numbers.csv")
PAPER_COLUMNS = ["paper", "table", "dataset", "network", "n_labels", "label_unit", "method", "metric", "value",
                 "std", "notes"]
PAPER_TITLES = {"000": "Learning to Impute (ICLR 2020 submission)", "001": "Learning to Impute (journal)",
                "002": "Meta-Semi", "003": "SSL with Meta-Gradient"}
#: the papers' network names -> ours ("wrn28": 002 App. D trains WRN-28-2; "conv_large": 003's Conv-Large is the
#: 13-layer CNN of Laine & Aila)
PAPER_NETWORKS = {"cnn13": "cnn13", "conv_large": "cnn13", "wrn28_2": "wrn28_2", "wrn28": "wrn28_2",
                  "resnet26_shakeshake": "resnet26_shake", "resnet18": "resnet18", "tcdcn": "tcdcn"}
#: the papers' metrics comparable with our headline columns -> the runs' ``metric`` they compare with (a
#: classification error with ``error``, a landmark error over the inter-ocular distance with ``nme_iod``; both
#: stored as fractions, printed in %); other metrics are listed, never compared
COMPARABLE_METRICS = {"error_pct": "error", "nme_pct": "nme_iod"}


@dataclass(frozen=True)
class PaperMethod:
    """A paper's row label and what runs it here: ``algorithm`` with hyperparameters meeting
    ``conditions`` ((hp name, op, value), op one of ==, !=, >), for rows whose notes contain
    ``notes_contain`` (empty: every row). ``note`` says what is only approximately the same."""

    paper: str
    method: str
    algorithm: str
    conditions: tuple[tuple[str, str, object], ...] = ()
    notes_contain: str = ""
    note: str = ""


_MT = (("fast_swa", "==", False),)
_SWA = (("fast_swa", "==", True),)
_L2I_OURS = "which L2I variant (O/L, exact/approx) this table reports is not stated; compared with l2i_o"
PAPER_METHODS: tuple[PaperMethod, ...] = (
    # 000: option 1 = missing labels as learnable parameters (l2i_l), option 2 = the model's output (l2i_o)
    *(PaperMethod("000", m, "supervised") for m in ("SL",)),
    *(PaperMethod("000", m, "pseudo_label") for m in ("PL", "PseudoLabel")),
    *(PaperMethod("000", m, "pseudo_label+l2i_l") for m in ("PL+option1", "Ours: PL + option1")),
    *(PaperMethod("000", m, "pseudo_label+l2i_o") for m in ("PL+option2", "Ours: PL + option2")),
    PaperMethod("000", "Pi model", "pi_model"), PaperMethod("000", "MixUp", "supervised_mixup"),
    PaperMethod("000", "VAT", "vat"), PaperMethod("000", "MT", "mean_teacher", _MT),
    *(PaperMethod("000", m, "mean_teacher+l2i_l") for m in ("MT + option1", "Ours: MT + option1")),
    *(PaperMethod("000", m, "mean_teacher+l2i_o") for m in ("MT + option2", "Ours: MT + option2")),
    PaperMethod("000", "MM", "mixmatch"), PaperMethod("000", "MM + option1", "mixmatch+l2i_l"),
    PaperMethod("000", "MM + option2", "mixmatch+l2i_o"),
    # 001
    PaperMethod("001", "SL", "supervised"), PaperMethod("001", "PL", "pseudo_label"),
    PaperMethod("001", "PL-L2I (Ours)", "pseudo_label+l2i_o", note=_L2I_OURS),
    PaperMethod("001", "Pi model", "pi_model"), PaperMethod("001", "MixUp", "supervised_mixup"),
    PaperMethod("001", "VAT", "vat"), PaperMethod("001", "MT", "mean_teacher", _MT),
    PaperMethod("001", "MT-L2I (Ours)", "mean_teacher+l2i_o", note=_L2I_OURS),
    PaperMethod("001", "MM", "mixmatch"), PaperMethod("001", "MM-L2I (Ours)", "mixmatch+l2i_o", note=_L2I_OURS),
    PaperMethod("001", "FM", "fixmatch"), PaperMethod("001", "FM-L2I (Ours)", "fixmatch+l2i_o", note=_L2I_OURS),
    PaperMethod("001", "FM-L2I", "fixmatch+l2i_o", note="001 Table 5 (hold-out batch size study)"),
    PaperMethod("001", "FM-L2I (joint)", "fixmatch+l2i_o", (("holdout", "==", "joint"),)),
    PaperMethod("001", "FM-L2I (separate)", "fixmatch+l2i_o", (("holdout", "==", "separate"),)),
    PaperMethod("001", "MT-L2I (exact)", "mean_teacher+l2i_o", (("meta_method", "==", "exact"),)),
    PaperMethod("001", "MT-L2I (approx)", "mean_teacher+l2i_o", (("meta_method", "==", "approx"),)),
    PaperMethod("001", "MT-L2I (O)", "mean_teacher+l2i_o"), PaperMethod("001", "MT-L2I (L)", "mean_teacher+l2i_l"),
    PaperMethod("001", "FM-L2I (O)", "fixmatch+l2i_o"), PaperMethod("001", "FM-L2I (L)", "fixmatch+l2i_l"),
    # 002
    PaperMethod("002", "Supervised", "supervised"), PaperMethod("002", "Supervised + MixUp", "supervised_mixup"),
    PaperMethod("002", "Pi-model", "pi_model"), PaperMethod("002", "Temp-ensemble", "temporal_ensembling"),
    PaperMethod("002", "Mean Teacher", "mean_teacher", _MT), PaperMethod("002", "VAT", "vat"),
    PaperMethod("002", "Learning to Reweight", "meta_semi_l2rw",
                note="L2RW's weights on Meta-Semi's EMA pseudo-labels with MixUp, as 002 App. D ran it"),
    PaperMethod("002", "MT + Fast SWA", "mean_teacher", _SWA,
                note="our error is the EMA model's; the fast-SWA average is evaluated as model 'swa'"),
    PaperMethod("002", "ICT", "ict"), PaperMethod("002", "MixMatch", "mixmatch"),
    PaperMethod("002", "Meta-Semi", "meta_semi", (("ict_weight", "==", 0.0),)),
    PaperMethod("002", "Meta-Semi + ICT", "meta_semi", (("ict_weight", ">", 0.0),)),
    # 003: "Ours" = Meta-Gradient SSL on pseudo-labels; Table 4's numbered rows are its ablations
    PaperMethod("003", "Pi-Model", "pi_model"), PaperMethod("003", "TE", "temporal_ensembling"),
    PaperMethod("003", "MT", "mean_teacher", _MT), PaperMethod("003", "VAT", "vat"),
    PaperMethod("003", "MT+fastSWA", "mean_teacher", _SWA,
                note="our error is the EMA model's; the fast-SWA average is evaluated as model 'swa'"),
    PaperMethod("003", "fastSWA", "mean_teacher", _SWA,
                note="our error is the EMA model's; the fast-SWA average is evaluated as model 'swa'"),
    PaperMethod("003", "Labeled-Only", "supervised"),
    PaperMethod("003", "Ours", "pseudo_label+meta_grad", (("use_mixup", "==", False),), notes_contain="w/o mixup"),
    PaperMethod("003", "Ours", "pseudo_label+meta_grad", (("use_mixup", "==", True), ("meta_method", "!=", "none"))),
    PaperMethod("003", "No. 1", "pseudo_label+meta_grad", (("use_mixup", "==", False), ("meta_method", "==", "none"))),
    PaperMethod("003", "No. 2", "pseudo_label+meta_grad", (("use_mixup", "==", False), ("meta_method", "!=", "none"))),
    PaperMethod("003", "No. 3", "pseudo_label+meta_grad", (("use_mixup", "==", True), ("meta_method", "==", "none"))),
    PaperMethod("003", "No. 4", "pseudo_label+meta_grad", (("use_mixup", "==", True), ("meta_method", "!=", "none"))),
)
_HOLDOUT_IN_NOTES = re.compile(r"(?:hold-out|meta-validation) batch (\d+)")


class PaperNumbersError(ValueError):
    """The paper-numbers file is missing or malformed (one-line message)."""


def load_paper_numbers(path: str | None = None) -> pd.DataFrame:
    """The papers' table as strings (``n_labels``, ``value``, ``std`` as floats, NaN where empty)."""
    path = path or PAPER_NUMBERS
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PaperNumbersError(f"cannot read paper numbers {path}: {' '.join(str(e).split())}") from None
    if list(df.columns) != PAPER_COLUMNS:
        raise PaperNumbersError(f"{path}: columns must be {','.join(PAPER_COLUMNS)}, got {','.join(df.columns)}")
    for c in ("n_labels", "value", "std"):
        df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce")
    return df


def methods_for(row: pd.Series | dict) -> list[PaperMethod]:
    """The declared mappings that apply to one paper row (most specific first)."""
    found = [m for m in PAPER_METHODS if m.paper == row["paper"] and m.method == row["method"]
             and (not m.notes_contain or m.notes_contain in str(row["notes"]))]
    specific = [m for m in found if m.notes_contain]
    return specific or found


def conditions_for(mapping: PaperMethod, row: pd.Series | dict) -> tuple[tuple[str, str, object], ...]:
    """The mapping's hyperparameter conditions plus those the row's notes state (a hold-out batch size)."""
    extra = _HOLDOUT_IN_NOTES.search(str(row["notes"]))
    return mapping.conditions + ((("holdout_batch", "==", int(extra.group(1))),) if extra else ())


def meets(run: pd.Series | dict, conditions: tuple[tuple[str, str, object], ...]) -> bool:
    """Whether a runs-table row's hp_* values meet every condition (a missing hp fails)."""
    for name, op, value in conditions:
        got = run.get(f"hp_{name}")
        if got is None or (isinstance(got, float) and got != got):
            return False
        if isinstance(value, bool):
            got = str(got).lower() in ("true", "1") if not isinstance(got, bool) else got
        elif isinstance(value, (int, float)):
            try:
                got = float(got)
            except (TypeError, ValueError):
                return False
        ok = {"==": got == value, "!=": got != value, ">": got > value}[op]
        if not ok:
            return False
    return True


def our_network(paper_network: str) -> str | None:
    """Our network for the paper's name (None when the paper does not state one or we lack it)."""
    return PAPER_NETWORKS.get(paper_network) if paper_network else None
