"""001 Fig. 2 (landmarks): the hold-out loss before and after the label update, and the test
loss, over training. Listed until the landmark regression task exists."""
from __future__ import annotations

from .base import Figure

FIGURE = Figure(
    name="001-fig2", paper="001 (Learning to Impute, journal)", number="Fig. 2",
    title="landmarks: effect of the label update",
    shows="Hold-out loss before and after the meta update of the imputed labels, and the test loss, over training "
          "on facial landmarks (MT vs MT + L2I)",
    needs="the landmark task (a regression run with its hold-out losses)")
