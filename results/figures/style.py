"""One look for every figure: a method has the same colour and name everywhere; sizes fit a
paper column (3.4 in) or the full width (7 in) at 8-pt type."""
from __future__ import annotations

import contextlib
import zlib

import numpy as np
import pandas as pd

COLUMN_IN, FULL_IN = 3.4, 7.0

#: colour of each method, in every figure (Okabe-Ito, colour-blind safe, then a few more)
PALETTE: dict[str, str] = {
    "supervised": "#555555",
    "pseudo_label": "#0072B2",
    "pseudo_label+l2i_o": "#E69F00",
    "pseudo_label+l2i_l": "#009E73",
    "meta_semi": "#D55E00",
    "pseudo_label+meta_semi": "#CC79A7",
    "ict": "#56B4E9",
    "mixmatch": "#882255",
    "pseudo_label+meta_grad": "#AA4499",
    "mean_teacher": "#117733",
    "mean_teacher+l2i_o": "#DDAA33",
}
#: the papers' names of the methods
LABELS: dict[str, str] = {
    "supervised": "SL (labeled only)",
    "pseudo_label": "PL",
    "pseudo_label+l2i_o": "PL + L2I (model output)",
    "pseudo_label+l2i_l": "PL + L2I (learnable labels)",
    "meta_semi": "Meta-Semi",
    "pseudo_label+meta_semi": "PL + Meta-Semi rule",
    "ict": "ICT",
    "mixmatch": "MixMatch",
    "pseudo_label+meta_grad": "PL + Meta-Gradient",
    "mean_teacher": "MT",
    "mean_teacher+l2i_o": "MT + L2I (model output)",
}
#: two classes (two circles) and the labeled points on top of them, as paper 000 Fig. 1
CLASS_COLORS = ("#4C72B0", "#DD8452")
LABELED_COLORS = ("#2CA02C", "#E377C2")


def color(algorithm: str) -> str:
    """The method's colour (a stable tab20 colour for methods outside :data:`PALETTE`)."""
    if algorithm in PALETTE:
        return PALETTE[algorithm]
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["tab20"](zlib.crc32(algorithm.encode()) % 20)
    return f"#{int(255 * r):02x}{int(255 * g):02x}{int(255 * b):02x}"


def label(algorithm: str) -> str:
    """The method's name as its paper writes it (the registry name for others)."""
    return LABELS.get(algorithm, algorithm)


@contextlib.contextmanager
def paper_style():
    """matplotlib settings for a paper column: 8-pt text, thin lines, light grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rc = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
          "ytick.labelsize": 7, "lines.linewidth": 1.3, "lines.markersize": 4, "axes.grid": True, "grid.alpha": 0.3,
          "grid.linewidth": 0.5, "legend.frameon": False, "savefig.bbox": "tight", "savefig.pad_inches": 0.03}
    with plt.rc_context(rc):
        yield plt


def mean_std(values: pd.Series | np.ndarray) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), n) of the finite values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def pm(values, scale: float = 100.0, digits: int = 1) -> str:
    """'m ± s' of ``values`` x ``scale`` (e.g. errors in %), or 'm' for one value, '-' for none."""
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    return f"{scale * m:.{digits}f}" if n == 1 else f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"
