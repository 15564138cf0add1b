"""Tracking against the embedded SQLite default and a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import polars as pl
import pytest

from omni_ml.exceptions import ModelNotFoundError
from omni_ml.tracking import compare_runs, dataset_fingerprint, load_campaign_model, log_run, resolve_tracking_uri


class ConstantModel:
    """A picklable stand-in with the CampaignModel scoring interface."""

    def __init__(self, value: float) -> None:
        self.value = value

    def score(self, hist, as_of, reasons=3):  # noqa: ANN001, ANN201
        ids = hist.events.select("customer_id").drop_nulls().unique().sort("customer_id").collect()
        return ids.with_columns(pl.lit(as_of).alias("as_of"), pl.lit(self.value).alias("propensity"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tracking server with a SQLite backend, started and stopped by the fixture."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start (exit code {proc.poll()})")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _log(uri: str | None, sample_dir: Path, value: float, alias: str = "champion") -> object:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, value])
    return log_run(
        ConstantModel(value),
        metrics={"auc": value, "cutoff_2025-01-01/auc": value - 0.01, "nan_metric": float("nan")},
        params={"horizon_days": 30, "propensity": {"num_leaves": 31}},
        datasets={"training": pl.DataFrame({"customer_id": ["a", "b"], "cutoff": ["2025-01-01"] * 2, "x": [1, 2]})},
        figures={"lift": fig},
        tables={"lift_by_decile": pl.DataFrame({"decile": [1, 2], "lift": [2.0, 1.0]})},
        texts={"features.md": "| feature | description |"},
        experiment="omni_test",
        register_as="omni_test_model",
        alias=alias,
        tracking_uri=uri,
        input_example={"histories_path": str(sample_dir), "as_of": "2025-03-01"},
    )


@pytest.mark.server
@pytest.mark.parametrize("backend", ["embedded", "server"])
def test_run_logs_params_metrics_artifacts_and_alias_loads(
    backend: str, request: pytest.FixtureRequest, sample_dir: Path
) -> None:
    import mlflow

    uri = request.getfixturevalue("mlflow_server") if backend == "server" else None
    first = _log(uri, sample_dir, 0.7)
    second = _log(uri, sample_dir, 0.8)
    assert second.registered_uri == "models:/omni_test_model@champion"
    assert int(second.version) == int(first.version) + 1

    client = mlflow.MlflowClient(resolve_tracking_uri(uri))
    run = client.get_run(second.run_id)
    assert run.data.params["horizon_days"] == "30"
    assert run.data.params["propensity.num_leaves"] == "31"
    assert run.data.metrics["auc"] == pytest.approx(0.8)
    assert "nan_metric" not in run.data.metrics
    assert run.data.tags["omni_ml.version"]
    artifacts = {a.path for a in client.list_artifacts(second.run_id, "plots")}
    assert "plots/lift.png" in artifacts
    assert run.inputs.dataset_inputs[0].dataset.name == "training_set"

    loaded = load_campaign_model("models:/omni_test_model@champion", tracking_uri=uri)
    assert loaded.model_version == second.version
    assert loaded.run_id == second.run_id
    assert loaded.model.value == pytest.approx(0.8)

    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    mlflow.set_registry_uri(resolve_tracking_uri(uri))
    pyfunc = mlflow.pyfunc.load_model("models:/omni_test_model@champion")
    out = pyfunc.predict(pd.DataFrame({"histories_path": [str(sample_dir)], "as_of": ["2025-03-01"]}))
    assert set(out["customer_id"]) == {"C001", "C002"}
    assert (out["propensity"] == 0.8).all()

    runs = compare_runs("omni_test", tracking_uri=uri)
    assert runs["run_id"].to_list()[:2] == [second.run_id, first.run_id]
    assert runs["metrics.auc"].to_list()[:2] == pytest.approx([0.8, 0.7])


def test_missing_alias_names_existing_aliases(sample_dir: Path) -> None:
    _log(None, sample_dir, 0.5, alias="staging")
    with pytest.raises(ModelNotFoundError, match=r"alias.*champion.*Hint: 'omni_test_model' has aliases \['staging'\]"):
        load_campaign_model("models:/omni_test_model@champion")


def test_registry_uri_without_a_store_is_a_clear_error_and_creates_no_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A scheduled job started in the wrong directory must not leave an empty mlflow.db there."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"tracking store .* does not exist.*Hint: pass --tracking-uri"):
        load_campaign_model("models:/omni@champion")
    assert list(tmp_path.iterdir()) == []


def test_missing_local_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file. Hint: pass models:/NAME@ALIAS"):
        load_campaign_model(str(tmp_path / "nope.joblib"))


def test_default_tracking_uri_is_sqlite_in_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"


def test_artifacts_of_a_sqlite_store_go_beside_it_not_into_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample_dir: Path
) -> None:
    """MLflow's default for a SQLite store is ./mlruns of whatever directory the job started in."""
    import mlflow

    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    tracked = _log(uri, sample_dir, 0.6)
    run = mlflow.MlflowClient(uri).get_run(tracked.run_id)
    assert run.info.artifact_uri.startswith((store / "mlartifacts").as_uri() + "/")
    assert not (elsewhere / "mlruns").exists()
    monkeypatch.chdir(tmp_path)  # another working directory later still finds the model
    assert load_campaign_model("models:/omni_test_model@champion", tracking_uri=uri).model.value == pytest.approx(0.6)


def test_fingerprint_changes_with_content_and_not_with_identity() -> None:
    a = pl.DataFrame({"customer_id": ["a", "b"], "cutoff": ["2025-01-01", "2025-02-01"], "x": [1.0, 2.0]})
    same = pl.DataFrame({"customer_id": ["a", "b"], "cutoff": ["2025-01-01", "2025-02-01"], "x": [1.0, 2.0]})
    changed = a.with_columns(pl.col("x") * 2)
    assert dataset_fingerprint(a) == dataset_fingerprint(same)
    assert dataset_fingerprint(a)["content_hash"] != dataset_fingerprint(changed)["content_hash"]
    assert dataset_fingerprint(a)["start"] == "2025-01-01"
    assert dataset_fingerprint(a)["customers"] == 2


def test_cli_train_logs_a_real_campaign_run_and_score_loads_it_by_alias(
    small_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 9 end to end: `omni-ml train --config --register-as --alias`, then `omni-ml score --model models:/...`."""
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from omni_ml.cli import app
    from tests.conftest import CAMPAIGN_TEST_CONFIG

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"experiment": "yaml_experiment", "campaign": CAMPAIGN_TEST_CONFIG}))
    runner = CliRunner()
    args = ["train", str(small_world), "--as-of", "2024-12-01", "--horizon", "28", "--config", str(config)]
    result = runner.invoke(app, [*args, "--register-as", "omni", "--alias", "champion"])
    assert result.exit_code == 0, result.output
    run_id = re.search(r"run_id: (\w+)", result.output).group(1)  # type: ignore[union-attr]
    assert "model_uri: models:/omni@champion" in result.output

    client = mlflow.MlflowClient(resolve_tracking_uri(), registry_uri=resolve_tracking_uri())
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "yaml_experiment"
    assert run.data.params["horizon_days"] == "28"
    assert run.data.params["train.n_cutoffs"] == "5"
    assert 0.5 < run.data.metrics["auc"] <= 1.0
    assert any(k.startswith("cutoff_") and k.endswith("/auc") for k in run.data.metrics)
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/backtest_lift.png", "plots/backtest_calibration.png", "plots/shap_beeswarm.png"} <= plots
    assert "plots/reasons_waterfall.png" in plots  # issue 23: one customer's reasons in pp
    tables = {a.path for a in client.list_artifacts(run_id, "tables")}
    assert {"tables/features.csv", "tables/channel_policy_offpolicy.csv", "tables/reason_codes.csv"} <= tables
    # The channel policy's off-policy values on held-out decisions, with intervals, for it and the baselines.
    for policy in ("learned", "random", "always_email"):
        m = run.data.metrics
        assert m[f"offpolicy_{policy}_dr_lo"] <= m[f"offpolicy_{policy}_dr"] <= m[f"offpolicy_{policy}_dr_hi"]
    assert run.data.metrics["offpolicy_n_holdout_units"] > 0
    assert run.inputs.dataset_inputs, "the training data fingerprint is logged as an MLflow dataset"

    # Issue 26, MLflow as its users expect: quiet CLI, datasets linked to the model, series, registry metadata.
    assert "Creating initial MLflow database tables" not in capfd.readouterr().err  # MLflow's INFO lines silenced
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert {"training_set", "backtest_set"} <= set(inputs)
    training_tags = {t.key: t.value for t in inputs["training_set"].tags}
    assert training_tags["mlflow.data.context"] == "training"
    assert int(training_tags["cutoffs"]) == 5
    assert int(training_tags["rows"]) > 0
    assert run.inputs.model_inputs or run.outputs.model_outputs  # the logged model is linked to the run's datasets
    curve = client.get_metric_history(run_id, "learning_curve/train_binary_logloss")
    valid_curve = client.get_metric_history(run_id, "learning_curve/early_stopping_binary_logloss")
    assert len(curve) > 1
    assert len(valid_curve) == len(curve)
    assert [m.step for m in curve] == list(range(1, len(curve) + 1))
    assert curve[-1].value < curve[0].value  # the booster learns on its training part
    by_cutoff = client.get_metric_history(run_id, "backtest_by_cutoff/auc")
    per_cutoff_keys = sorted(k for k in run.data.metrics if k.startswith("cutoff_") and k.endswith("/auc"))
    assert sorted(m.step for m in by_cutoff) == list(range(len(per_cutoff_keys)))
    assert sorted(m.value for m in by_cutoff) == pytest.approx(sorted(run.data.metrics[k] for k in per_cutoff_keys))
    assert not [v for v in run.data.params.values() if re.search(r"\d\.\d{9,}", v)], "float noise in params"
    version = client.get_model_version_by_alias("omni", "champion")
    assert version.run_id == run_id
    assert "as of 2024-12-01" in version.description
    assert version.tags["backtest_auc"] == f"{run.data.metrics['auc']:.4f}"
    assert version.tags["horizon_days"] == "28"
    assert "campaign model" in client.get_registered_model("omni").description
    mlflow.set_tracking_uri(resolve_tracking_uri())  # reset after the test by the conftest fixture
    mlflow.set_registry_uri(resolve_tracking_uri())
    signature = mlflow.models.get_model_info("models:/omni@champion").signature
    assert {"customer_id", "propensity", "best_channel", "reason_1"} <= set(signature.outputs.input_names())

    out = tmp_path / "campaign.parquet"
    scored = runner.invoke(
        app, ["score", str(small_world), "--model", "models:/omni@champion", "--as-of", "2025-01-01", "--out", str(out)]
    )
    assert scored.exit_code == 0, scored.output
    campaign = pl.read_parquet(out)
    assert campaign["run_id"].unique().to_list() == [run_id]
    assert campaign["model_version"].unique().to_list() == ["1"]

    bad = runner.invoke(app, [*args, "--alias", "champion"])
    assert bad.exit_code == 2
    assert "--alias needs --register-as" in bad.output
