"""The names a notebook gets from ``import omni_ml as om``, pinned: removing or renaming one is a decision."""

from __future__ import annotations

import omni_ml as om

PUBLIC = {
    "CampaignConfig", "CampaignModel", "ChannelModel", "ConfigError", "ConsentError", "CustomerValueModel",
    "DataInsufficientError", "FeatureConfig", "FeatureSet", "Histories", "IdentityReport", "IdentityRules",
    "LeakageError", "LoadReport", "LogisticBaseline", "MeasureReport", "ModelNotFoundError", "OmniMLError",
    "OrderValueStats", "PolicyConfig", "PropensityModel", "RecencyFrequencyBaseline", "Report", "SchemaError",
    "ScoringSummary", "SimulationConfig", "TrainingSet", "ValueConfig", "__version__", "build_features",
    "consent_state", "cutoffs", "decide", "evaluate", "explain", "fit_channel_model", "fit_propensity",
    "load_histories", "measure_campaign", "off_policy_value", "predict_propensity", "purchase_labels",
    "resolve_identities", "score", "training_cutoffs", "training_set",
}  # fmt: skip


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(om.__all__) == PUBLIC
    assert len(om.__all__) == len(PUBLIC)  # no duplicates
    for name in om.__all__:
        assert getattr(om, name) is not None, name
    assert callable(om.evaluate)
    assert callable(om.explain)
