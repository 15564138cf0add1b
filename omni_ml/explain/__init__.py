"""Why this score? Exact, fast SHAP reason codes in words (temporary init; replaced below)."""

from __future__ import annotations

from omni_ml.explain._treeshap import TreeShap

__all__ = ["TreeShap"]
