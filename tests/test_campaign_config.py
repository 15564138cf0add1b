"""Typed campaign configuration: parsed once, misspelt keys rejected at every level, fit() leaves config alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from omni_ml.campaign import CampaignConfig, CampaignModel, CampaignModelLike, ExperimentConfig, load_experiment
from omni_ml.config import from_mapping
from omni_ml.exceptions import ConfigError
from omni_ml.features import FeatureConfig
from omni_ml.models.channel import ChannelConfig
from omni_ml.policy import PolicyConfig
from omni_ml.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["campaign_default.yaml", "propensity_baseline.yaml"])
def test_the_shipped_experiment_files_parse_into_typed_settings(name: str) -> None:
    cfg = load_experiment(REPO / "experiments" / name)
    assert cfg.experiment == name.removesuffix(".yaml")
    assert isinstance(cfg.campaign.train, TrainConfig)
    assert isinstance(cfg.campaign.policy, PolicyConfig)
    assert cfg.campaign.channel is None or isinstance(cfg.campaign.channel, ChannelConfig)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"experimnet": "x"}, r"exp.yaml: unknown key\(s\) 'experimnet' \(did you mean 'experiment'\?\)"),
        ({"campain": {}}, r"unknown key\(s\) 'campain' \(did you mean 'campaign'\?\) for ExperimentConfig"),
        ({"campaign": {"trian": {}}}, r"campaign: unknown key\(s\) 'trian' \(did you mean 'train'\?\)"),
        ({"campaign": {"train": {"n_cutofs": 3}}}, r"campaign.train: unknown key\(s\) 'n_cutofs' .*'n_cutoffs'"),
        (
            {"campaign": {"train": {"features": {"windos": [30]}}}},
            r"campaign.train.features: unknown key\(s\) 'windos' \(did you mean 'windows'\?\) for FeatureConfig",
        ),
        (
            {"campaign": {"train": {"model": {"n_estimator": 5}}}},
            r"campaign.train.model: unknown key\(s\) 'n_estimator' \(did you mean 'n_estimators'\?\) "
            r"for PropensityModel",
        ),
        (
            {"campaign": {"channel": {"window_dys": 7}}},
            r"campaign.channel: unknown key\(s\) 'window_dys'.*'window_days'",
        ),
        ({"campaign": {"policy": {"cooldown_dys": 1}}}, r"campaign.policy: unknown key\(s\) 'cooldown_dys'"),
        ({"campaign": {"value_model": {"n_estimatrs": 5}}}, r"value_model: unknown key\(s\) 'n_estimatrs'"),
        ({"campaign": {"train": 3}}, r"campaign.train: expected a TrainConfig or a mapping of its fields, got int"),
    ],
)
def test_a_misspelt_key_at_any_level_is_an_error_naming_the_closest_key(
    tmp_path: Path, data: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_experiment(_write(tmp_path, data))


def test_cli_train_refuses_a_misspelt_top_level_key_with_exit_2(sample_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from omni_ml.cli import app

    path = _write(tmp_path, {"experiment": "x", "campaing": {"channel": None}})
    args = ["train", str(sample_dir), "--as-of", "2025-03-01", "--horizon", "28", "--config", str(path)]
    result = CliRunner().invoke(app, [*args, "--no-tracking", "--out", str(tmp_path / "m.joblib")])
    assert result.exit_code == 2
    assert "did you mean 'campaign'?" in result.output
    assert not (tmp_path / "m.joblib").exists()


def test_nested_mappings_are_converted_once_at_construction() -> None:
    cfg = CampaignConfig(train={"n_cutoffs": 4, "features": {"windows": [30]}}, channel={"window_days": 5})
    assert isinstance(cfg.train, TrainConfig)
    assert cfg.train.features == FeatureConfig(windows=(30,))
    assert isinstance(cfg.channel, ChannelConfig)
    assert cfg.channel.window_days == 5
    assert CampaignConfig(channel=None).channel is None
    assert CampaignConfig().channel == ChannelConfig()
    assert cfg.resolved() == (cfg.train, cfg.channel, cfg.policy)
    same = from_mapping(ExperimentConfig, {"campaign": {"train": {"n_cutoffs": 4, "features": {"windows": [30]}}}})
    assert same.campaign.train == cfg.train


def test_fit_with_a_config_uses_it_without_overwriting_the_models_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from omni_ml import training

    class Stop(Exception):
        pass

    seen: list[Any] = []

    def stop(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("config"))
        raise Stop

    monkeypatch.setattr(training, "training_set", stop)
    from omni_ml.data import load_histories

    mine = CampaignConfig(channel=None)
    other = CampaignConfig(train={"n_cutoffs": 2, "features": {"windows": [14]}}, channel=None)
    model = CampaignModel(mine)
    with pytest.raises(Stop):
        model.fit(load_histories(REPO / "data" / "sample"), "2025-03-01", horizon_days=7, config=other)
    # the fit used `other` (its 2 cutoffs span 7 days, a short history: no calendar features, issue 27)
    assert seen == [FeatureConfig(windows=(14,), exclude=("time_of_year",))]
    assert model.config is mine


def test_the_campaign_model_satisfies_the_protocol_used_at_the_seams() -> None:
    assert isinstance(CampaignModel(), CampaignModelLike)
    assert not isinstance(object(), CampaignModelLike)
