"""Shared fixtures. Simulator worlds are session-scoped; MLflow always points at a temporary store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from omni_ml.data import Histories

# CI (`.ci/run` sets HYPOTHESIS_PROFILE=ci) runs the same property-test examples on every run, so a
# landing never depends on a lucky draw; `make test` on a workstation keeps exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
# Anonymous ids are keyed hashes (omni_ml._privacy): the suite, and the commands it runs in
# subprocesses, use a fixed test key that protects nothing.
os.environ.setdefault("OMNI_ML_PSEUDONYM_KEY", "omni-ml-test-suite-key-not-a-secret")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Never write to the developer's mlflow.db: every test gets its own SQLite store.

    A test that sets MLflow's process-wide URIs (``mlflow.set_tracking_uri``, e.g. to a test server)
    must not leak them into the next test: they take precedence over the environment variable.
    """
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None resets it (MLflow 3 source)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small-preset simulated world (seed 0), simulated once per session; see omni_ml.simulate."""
    from omni_ml.simulate import preset, simulate

    return simulate(preset("small", seed=0), tmp_path_factory.mktemp("small_world"))


@pytest.fixture(scope="session")
def small_histories(small_world: Path) -> Histories:
    """The small world's histories, identity-resolved with default rules and collected in memory."""
    from omni_ml.data import load_histories
    from omni_ml.identity import resolve_identities

    return resolve_identities(load_histories(small_world)).collect()


# Small and fast on purpose: the scoring and campaign tests check behaviour, not model quality.
CAMPAIGN_TEST_CONFIG = {
    "train": {
        "n_cutoffs": 5,
        "every_days": 28,
        # 5 cutoffs span 112 days: keep the calendar features and the calibration map that the reason and
        # monitoring tests exercise (the automatic short-history choice is tested in test_training_history.py)
        "short_history": False,
        "model": {"n_estimators": 120, "learning_rate": 0.1, "early_stopping_rounds": 20, "num_leaves": 15},
    },
    "channel": {"n_estimators": 60, "lookback_days": 49, "pause_ratio": 0.5},
    # Contact whenever the rules allow, whatever the estimated value: the strictest test of consent.
    "policy": {"min_value": -1000.0},
    "channel_backtest_days": 14,
}
CAMPAIGN_TRAIN_AS_OF = "2024-12-01"


@pytest.fixture(scope="session")
def campaign_model_path(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CampaignModel (propensity + channel model) fitted once per session on the small world, saved."""
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.config import from_mapping
    from omni_ml.data import load_histories

    config = from_mapping(CampaignConfig, CAMPAIGN_TEST_CONFIG)
    model = CampaignModel(config).fit(load_histories(small_world), CAMPAIGN_TRAIN_AS_OF, horizon_days=28)
    return model.save(tmp_path_factory.mktemp("campaign_model") / "campaign_model.joblib")


@pytest.fixture(scope="session")
def explored(small_world: Path, campaign_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world's campaign file scored with a 10% control group and half of the rest explored (two chunks)."""
    from omni_ml.scoring import score

    out = tmp_path_factory.mktemp("explored") / "campaign.parquet"
    score(
        small_world,
        model=campaign_model_path,
        as_of="2025-01-01",
        out=out,
        reasons=0,
        chunks=2,
        progress=False,
        control_fraction=0.1,
        explore=0.5,
        seed=7,
    )
    return out
