"""Why this recommendation? Exact, fast SHAP reason codes in words.

* :class:`TreeShap` -- exact path-dependent TreeSHAP for LightGBM (the numbers of ``pred_contrib`` /
  ``shap.TreeExplainer``), many times faster (see ``benchmarks/bench_explain.py``);
* :func:`explain` -- top-k reasons per customer, rendered from the FeatureSet, with signed contributions
  in log-odds (exact) and probability units (documented approximation);
* :func:`explain_difference` -- reasons for the difference of two outputs (channel c vs no contact);
* :func:`explain_channel` -- reasons for a ChannelModel's "contact on c rather than not" (the campaign's
  ``channel_reason_*``);
* :func:`global_importance`, :func:`plot_beeswarm`, :func:`plot_waterfall`, :func:`plot_importance` --
  global views that save to PNG headless.
"""

from __future__ import annotations

from omni_ml.explain._channel import explain_channel
from omni_ml.explain._plots import global_importance, plot_beeswarm, plot_importance, plot_waterfall
from omni_ml.explain._reasons import FeatureDescriber, explain, explain_difference, explainer_for, family_label
from omni_ml.explain._timing import timing_reasons
from omni_ml.explain._treeshap import TreeShap

__all__ = [
    "FeatureDescriber",
    "TreeShap",
    "explain",
    "explain_channel",
    "explain_difference",
    "explainer_for",
    "family_label",
    "global_importance",
    "plot_beeswarm",
    "plot_importance",
    "plot_waterfall",
    "timing_reasons",
]
