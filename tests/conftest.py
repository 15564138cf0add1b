"""Shared fixtures. Simulator worlds are session-scoped; MLflow always points at a temporary store."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write to the developer's mlflow.db: every test gets its own SQLite store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small-preset simulated world (seed 0), simulated once per session; see omni_ml.simulate."""
    from omni_ml.simulate import preset, simulate

    return simulate(preset("small", seed=0), tmp_path_factory.mktemp("small_world"))
