"""The MLflow pyfunc checks the bundle's sha256 before unpickling it, like `omni-ml score` does (issue 22)."""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import pytest

from omni_ml.exceptions import ModelNotFoundError
from omni_ml.tracking import log_run
from tests.tracking.test_tracking import ConstantModel


class _Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _crafted(path: Path, marker: Path) -> None:
    joblib.dump(_Payload(marker), path)


def test_a_swapped_bundle_is_refused_by_the_pyfunc_before_it_runs_22(tmp_path: Path, sample_dir: Path) -> None:
    import mlflow

    run = log_run(
        ConstantModel(0.5),
        experiment="pyfunc_checksum",
        register_as="omni_checked",
        alias="champion",
        input_example={"histories_path": str(sample_dir), "as_of": "2025-03-01"},
    )
    assert run.registered_uri == "models:/omni_checked@champion"
    bundles = [p for p in tmp_path.rglob("campaign_model.joblib") if "artifacts" in p.parts]
    assert len(bundles) == 1, bundles
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(os.environ["MLFLOW_TRACKING_URI"])
    loaded = mlflow.pyfunc.load_model("models:/omni_checked@champion")  # the genuine bundle loads
    assert loaded.unwrap_python_model().campaign_model.value == pytest.approx(0.5)

    marker = tmp_path / "pwned"
    _crafted(bundles[0], marker)
    with pytest.raises(ModelNotFoundError, match=r"does not match the recorded .* so it is not unpickled"):
        mlflow.pyfunc.load_model("models:/omni_checked@champion")
    assert not marker.exists()
    joblib.load(bundles[0])  # the crafted file is live: loading it unchecked runs the command
    assert marker.exists()


def test_a_bundle_without_a_recorded_checksum_is_refused_22(tmp_path: Path) -> None:
    from mlflow.pyfunc import PythonModelContext

    from omni_ml._mlflow_model import CampaignPyfunc

    marker = tmp_path / "pwned"
    bundle = tmp_path / "campaign_model.joblib"
    _crafted(bundle, marker)
    context = PythonModelContext(artifacts={"campaign_model": str(bundle)}, model_config=None)
    with pytest.raises(ModelNotFoundError, match=r"no checksum file 'campaign_model\.joblib\.sha256'"):
        CampaignPyfunc().load_context(context)
    assert not marker.exists()
