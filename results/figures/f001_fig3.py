"""001 Fig. 3 (landmarks): test images with their ground-truth, MT and L2I landmarks. Listed
until the landmark regression task exists (its predictions would be a per-run artifact)."""
from __future__ import annotations

from .base import Figure

FIGURE = Figure(
    name="001-fig3", paper="001 (Learning to Impute, journal)", number="Fig. 3",
    title="landmarks: success and failure cases",
    shows="Test images with the ground-truth, Mean Teacher and MT + L2I landmarks (best and worst cases)",
    needs="the landmark task (predicted landmarks of a few test images as an artifact)")
