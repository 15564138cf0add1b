"""omni_ml: an open toolkit for omnichannel personalisation research.

The names a notebook needs are re-exported here; ``__all__`` is pinned by a test.
Importing omni_ml has no side effects.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names below are imported on first use (see __getattr__)
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.data import Histories, LoadReport, load_histories
    from omni_ml.evaluation import Report, evaluate, fit_propensity, off_policy_value
    from omni_ml.exceptions import (
        ConfigError,
        ConsentError,
        DataInsufficientError,
        LeakageError,
        ModelNotFoundError,
        OmniMLError,
        SchemaError,
    )
    from omni_ml.explanation import explain
    from omni_ml.features import FeatureConfig, FeatureSet, build_features
    from omni_ml.identity import IdentityReport, IdentityRules, consent_state, resolve_identities
    from omni_ml.labels import purchase_labels
    from omni_ml.measure import MeasureReport, measure_campaign
    from omni_ml.models import (
        ChannelModel,
        LogisticBaseline,
        PropensityModel,
        RecencyFrequencyBaseline,
        fit_channel_model,
        predict_propensity,
    )
    from omni_ml.models.value import CustomerValueModel, OrderValueStats, ValueConfig
    from omni_ml.policy import PolicyConfig, decide
    from omni_ml.scoring import ScoringSummary, score
    from omni_ml.simulate import SimulationConfig
    from omni_ml.training import TrainingSet, cutoffs, training_cutoffs, training_set

__version__ = "0.1.0"

__all__ = [
    "CampaignConfig",
    "CampaignModel",
    "ChannelModel",
    "ConfigError",
    "ConsentError",
    "CustomerValueModel",
    "DataInsufficientError",
    "FeatureConfig",
    "FeatureSet",
    "Histories",
    "IdentityReport",
    "IdentityRules",
    "LeakageError",
    "LoadReport",
    "LogisticBaseline",
    "MeasureReport",
    "ModelNotFoundError",
    "OmniMLError",
    "OrderValueStats",
    "PolicyConfig",
    "PropensityModel",
    "RecencyFrequencyBaseline",
    "Report",
    "SchemaError",
    "ScoringSummary",
    "SimulationConfig",
    "TrainingSet",
    "ValueConfig",
    "__version__",
    "build_features",
    "consent_state",
    "cutoffs",
    "decide",
    "evaluate",
    "explain",
    "fit_channel_model",
    "fit_propensity",
    "load_histories",
    "measure_campaign",
    "off_policy_value",
    "predict_propensity",
    "purchase_labels",
    "resolve_identities",
    "score",
    "training_cutoffs",
    "training_set",
]


# Where each re-exported name lives. Names are imported on first use (PEP 562), so that importing one
# part of the toolkit (e.g. ``omni_ml.simulate`` in the simulator's worker processes) does not pull in
# the modelling stack (LightGBM, scikit-learn, MLflow, SHAP); lower layers that import omni_ml.<module>
# never pull in the upper ones either (import-linter).
_SOURCES: dict[str, tuple[str, ...]] = {
    "omni_ml.campaign": ("CampaignConfig", "CampaignModel"),
    "omni_ml.data": ("Histories", "LoadReport", "load_histories"),
    "omni_ml.evaluation": ("Report", "evaluate", "fit_propensity", "off_policy_value"),
    "omni_ml.exceptions": (
        "ConfigError",
        "ConsentError",
        "DataInsufficientError",
        "LeakageError",
        "ModelNotFoundError",
        "OmniMLError",
        "SchemaError",
    ),
    "omni_ml.explanation": ("explain",),
    "omni_ml.features": ("FeatureConfig", "FeatureSet", "build_features"),
    "omni_ml.identity": ("IdentityReport", "IdentityRules", "consent_state", "resolve_identities"),
    "omni_ml.labels": ("purchase_labels",),
    "omni_ml.measure": ("MeasureReport", "measure_campaign"),
    "omni_ml.models": (
        "ChannelModel",
        "LogisticBaseline",
        "PropensityModel",
        "RecencyFrequencyBaseline",
        "fit_channel_model",
        "predict_propensity",
    ),
    "omni_ml.models.value": ("CustomerValueModel", "OrderValueStats", "ValueConfig"),
    "omni_ml.policy": ("PolicyConfig", "decide"),
    "omni_ml.scoring": ("ScoringSummary", "score"),
    "omni_ml.simulate": ("SimulationConfig",),
    "omni_ml.training": ("TrainingSet", "cutoffs", "training_cutoffs", "training_set"),
}
_LAZY = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'omni_ml' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
