"""One training path: tracked (MLflow) and untracked training run the same fit on the same histories."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_ml.campaign import CampaignConfig, CampaignModel
from omni_ml.config import from_mapping
from omni_ml.data import Histories, load_histories
from omni_ml.exceptions import DataInsufficientError
from omni_ml.tracking import ERROR_TAG, resolve_tracking_uri, train_campaign
from omni_ml.training import TrainingSet
from tests._identity_rows import identity_frames

UTC = dt.UTC
T0 = dt.datetime(2024, 6, 1, tzinfo=UTC)
AS_OF = dt.datetime(2025, 1, 1, tzinfo=UTC)
HORIZON = 28
#: training cutoffs of the tiny config below: 2024-10-09, 2024-11-06, 2024-12-04
CUTOFFS = [AS_OF - dt.timedelta(days=HORIZON + 28 * k) for k in (2, 1, 0)]
TINY = from_mapping(
    CampaignConfig,
    {"train": {"n_cutoffs": 3, "every_days": 28, "features": {"windows": [30]}}, "channel": None},
)


class _Stop(Exception):
    """Raised by the recording stand-in once the training rows are built (nothing after them is needed)."""


def _record_training_rows(sink: list[TrainingSet]) -> Any:
    from omni_ml import training

    real = training.training_set

    def recording(*args: Any, **kwargs: Any) -> TrainingSet:
        sink.append(real(*args, **kwargs))
        raise _Stop

    return mock.patch.object(training, "training_set", recording)


def _rows_by_path(hist: Histories, tracking_uri: str) -> dict[str, pl.DataFrame]:
    """The propensity training rows each path builds from ``hist`` (keys, features, label)."""
    paths = {
        "untracked": lambda: CampaignModel(TINY).fit(hist, AS_OF, horizon_days=HORIZON),
        "tracked": lambda: train_campaign(
            hist, AS_OF, HORIZON, config=TINY, tracking_uri=tracking_uri, experiment="paths"
        ),
    }
    out: dict[str, pl.DataFrame] = {}
    for path, train in paths.items():
        sink: list[TrainingSet] = []
        with _record_training_rows(sink), pytest.raises(_Stop):
            train()
        out[path] = sink[0].to_frame().sort("cutoff", "customer_id")
    return out


_seconds = st.integers(0, 210 * 86_400).map(lambda s: T0 + dt.timedelta(seconds=s))
_events = st.lists(
    st.tuples(st.sampled_from([None, "cookie:k1", "cookie:k2"]), _seconds, st.sampled_from(["purchase", "visit"])),
    min_size=2,
    max_size=12,
)


def _histories(rows: list[tuple[str | None, dt.datetime, str]], links: list[tuple[str, str, dt.datetime]]) -> Histories:
    ev, link_frame = identity_frames(rows, links)
    # a customer C known from the start, so every cutoff has at least one row
    first = pl.DataFrame(
        {"customer_id": ["C"], "identifier": [None], "timestamp": [T0], "channel": ["web"], "event_type": ["visit"]},
        schema_overrides={"identifier": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )
    return Histories.from_frames(pl.concat([first, ev], how="diagonal_relaxed"), identity_links=link_frame)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    _events,
    st.sampled_from(["cookie:k1", "cookie:k2"]),
    st.sampled_from(["crm:C", "cookie:k1"]),
    st.integers(0, 2),
    st.integers(0, 27 * 86_400),
)
def test_a_link_made_after_a_cutoff_never_changes_that_cutoffs_rows_in_either_path(
    tmp_path: Path,
    rows: list[tuple[str | None, dt.datetime, str]],
    a: str,
    b: str,
    k: int,
    offset: int,
) -> None:
    """Adding a link at or after cutoff k leaves the training rows of cutoffs <= k as they were, tracked or not."""
    if a == b:
        b = "crm:C"
    uri = f"sqlite:///{tmp_path / 'paths.db'}"
    link_at = CUTOFFS[k] + dt.timedelta(seconds=offset)
    without = _rows_by_path(_histories(rows, []), uri)
    with_link = _rows_by_path(_histories(rows, [(a, b, link_at)]), uri)
    for path in ("untracked", "tracked"):
        for cutoff in CUTOFFS[: k + 1]:
            before = without[path].filter(pl.col("cutoff") == cutoff)
            after = with_link[path].filter(pl.col("cutoff") == cutoff)
            assert after.equals(before), (path, cutoff)
    # and the two paths build the very same rows
    assert without["tracked"].equals(without["untracked"])
    assert with_link["tracked"].equals(with_link["untracked"])


def test_a_failing_fit_ends_its_run_failed_with_the_error_and_reraises(sample_dir: Path) -> None:
    import mlflow

    hist = load_histories(sample_dir)
    with pytest.raises(DataInsufficientError) as raised:  # the sample's few weeks hold no 3 x 28-day cutoffs
        train_campaign(hist, "2025-03-01", 28, config=TINY, experiment="failing", run_name="doomed")
    client = mlflow.MlflowClient(resolve_tracking_uri())
    exp = client.get_experiment_by_name("failing")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "doomed"
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG].startswith("DataInsufficientError: ")
    assert str(raised.value)[:200] in run.data.tags[ERROR_TAG]
    assert run.data.params["horizon_days"] == "28"  # what was asked for is logged before the fit
    assert run.data.params["train.n_cutoffs"] == "3"
    assert mlflow.active_run() is None


def test_cli_train_tracked_and_untracked_give_identical_metrics(small_world: Path, tmp_path: Path) -> None:
    """`omni-ml train` (MLflow) and `omni-ml train --no-tracking` fit the same model with the same back-test."""
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from omni_ml.cli import app
    from tests.conftest import CAMPAIGN_TEST_CONFIG

    config = tmp_path / "exp.yaml"
    small = {**CAMPAIGN_TEST_CONFIG, "channel": None}
    small["train"] = {**small["train"], "n_cutoffs": 4, "model": {**small["train"]["model"], "n_estimators": 40}}
    config.write_text(yaml.safe_dump({"campaign": small}))
    args = ["train", str(small_world), "--as-of", "2024-12-01", "--horizon", "28", "--config", str(config)]
    runner = CliRunner()
    tracked = runner.invoke(app, [*args, "--out", str(tmp_path / "tracked.joblib")])
    assert tracked.exit_code == 0, tracked.output
    untracked = runner.invoke(app, [*args, "--no-tracking", "--out", str(tmp_path / "untracked.joblib")])
    assert untracked.exit_code == 0, untracked.output

    a = CampaignModel.load(tmp_path / "tracked.joblib")
    b = CampaignModel.load(tmp_path / "untracked.joblib")
    assert a.metrics_ == b.metrics_
    assert a.report_.scores.equals(b.report_.scores)
    assert a.decile_edges_ == b.decile_edges_
    run_id = tracked.output.split("run_id: ")[1].split()[0]
    logged = mlflow.MlflowClient(resolve_tracking_uri()).get_run(run_id).data.metrics
    assert logged["auc"] == a.metrics_["auc"]
    assert logged["base_rate"] == a.metrics_["base_rate"]
    # the printed back-test is the same text too (MLflow's own log lines aside)

    def printed(output: str) -> str:
        return output[output.index("out-of-time back-test") :].split("saved campaign model")[0]

    assert printed(tracked.output) == printed(untracked.output)
