"""The names a notebook gets from ``import omni_ml as om``, pinned: removing or renaming one is a decision."""

from __future__ import annotations

import omni_ml as om

PUBLIC = {
    "CampaignConfig", "CampaignModel", "ChannelModel", "FeatureConfig", "FeatureSet", "Histories", "LogisticBaseline",
    "OmniMLError", "PolicyConfig", "PropensityModel", "RecencyFrequencyBaseline", "TrainingSet", "__version__",
    "build_features", "consent_state", "cutoffs", "decide", "evaluate", "explain", "fit_propensity", "load_histories",
    "measure_campaign", "predict_propensity", "resolve_identities", "score", "training_cutoffs", "training_set",
}  # fmt: skip


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(om.__all__) == PUBLIC
    assert len(om.__all__) == len(PUBLIC)  # no duplicates
    for name in om.__all__:
        assert getattr(om, name) is not None, name
    assert callable(om.evaluate)
    assert callable(om.explain)


def test_only_the_base_error_is_top_level_the_others_live_in_omni_ml_exceptions() -> None:
    from omni_ml import exceptions

    for name in ("SchemaError", "LeakageError", "ConsentError", "ConfigError", "DataInsufficientError"):
        assert issubclass(getattr(exceptions, name), om.OmniMLError)
        assert not hasattr(om, name), name
    assert {"OmniMLError", "ModelNotFoundError"} <= set(exceptions.__all__)


def test_the_subpackages_are_named_apart_from_the_functions() -> None:
    import types

    import omni_ml.evaluation
    import omni_ml.explanation

    assert isinstance(om.evaluate, types.FunctionType)
    assert isinstance(om.explain, types.FunctionType)
    assert om.evaluate is omni_ml.evaluation.evaluate
    assert om.explain is omni_ml.explanation.explain
