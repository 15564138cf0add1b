"""Why this recommendation? Exact, fast SHAP reason codes in words.

* :class:`TreeShap` -- exact path-dependent TreeSHAP for LightGBM (the numbers of ``pred_contrib`` /
  ``shap.TreeExplainer``), many times faster (see ``benchmarks/bench_explain.py``);
* :func:`explain_reasons` -- the campaign's reasons: one per family of behaviour, against the baseline of
  the scoring moment (season and as-of constant features held), in percentage points, with stable codes
  (:func:`reason_codes`);
* :func:`explain_channel_reasons` -- why the chosen channel: the customer's own history with it, other
  behaviour, and the cost/consent rule of the choice;
* :func:`explain` -- top-k reasons per customer (one per feature or family, against the training mean),
  rendered from the FeatureSet, with signed contributions in log-odds (exact) and probability units
  (documented approximation);
* :func:`explain_difference` -- reasons for the difference of two outputs (channel c vs no contact);
* :func:`explain_channel` -- reasons for a ChannelModel's "contact on c rather than not" (the campaign's
  ``channel_reason_*``);
* :func:`global_importance`, :func:`plot_beeswarm`, :func:`plot_waterfall`, :func:`plot_importance` --
  global views that save to PNG headless.
"""

from __future__ import annotations

from omni_ml.explanation._channel import explain_channel
from omni_ml.explanation._channel_said import call_outcomes, explain_channel_reasons
from omni_ml.explanation._families import reason_codes
from omni_ml.explanation._plots import global_importance, plot_beeswarm, plot_importance, plot_waterfall
from omni_ml.explanation._reasons import FeatureDescriber, explain, explain_difference, explainer_for, family_label
from omni_ml.explanation._said import explain_reasons, reference_medians
from omni_ml.explanation._timing import timing_reasons
from omni_ml.explanation._treeshap import TreeShap

__all__ = [
    "FeatureDescriber",
    "TreeShap",
    "call_outcomes",
    "explain",
    "explain_channel",
    "explain_channel_reasons",
    "explain_difference",
    "explain_reasons",
    "explainer_for",
    "family_label",
    "global_importance",
    "plot_beeswarm",
    "plot_importance",
    "plot_waterfall",
    "reason_codes",
    "reference_medians",
    "timing_reasons",
]
