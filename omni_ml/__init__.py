"""omni_ml: an open toolkit for omnichannel personalisation research.

The names a notebook needs are re-exported here; ``__all__`` is pinned by a test.
Importing omni_ml has no side effects.
"""

from __future__ import annotations

from omni_ml.campaign import CampaignConfig, CampaignModel
from omni_ml.data import Histories, LoadReport, load_histories
from omni_ml.evaluate import Report, evaluate, fit_propensity, off_policy_value
from omni_ml.exceptions import (
    ConfigError,
    ConsentError,
    DataInsufficientError,
    LeakageError,
    ModelNotFoundError,
    OmniMLError,
    SchemaError,
)
from omni_ml.explain import explain
from omni_ml.features import FeatureConfig, FeatureSet, build_features
from omni_ml.identity import IdentityReport, IdentityRules, consent_state, resolve_identities
from omni_ml.labels import purchase_labels
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


def __getattr__(name: str) -> object:
    # The batch job and measurement are imported on first use: importing the package stays
    # lighter, and lower layers that import omni_ml.<module> never pull them in (import-linter).
    if name in ("ScoringSummary", "score"):
        import importlib

        return getattr(importlib.import_module("omni_ml.scoring"), name)
    if name in ("MeasureReport", "measure_campaign"):
        import importlib

        return getattr(importlib.import_module("omni_ml.measure"), name)
    msg = f"module 'omni_ml' has no attribute {name!r}"
    raise AttributeError(msg)
