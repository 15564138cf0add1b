"""A team tracking server: PostgreSQL backend store + ``mlflow server``, the whole train -> score -> measure path.

``scripts/team_server.py`` starts PostgreSQL from the system's packages (``.ci/run`` installs them when missing)
on 127.0.0.1 and ``mlflow server`` on top of it; the test trains and registers through the server, scores by
alias, measures the campaign against its simulated continuation and reads everything back through MlflowClient.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]


def _team_server_module():  # noqa: ANN202 - a script module loaded by path
    spec = importlib.util.spec_from_file_location("team_server", REPO / "scripts" / "team_server.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["team_server"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def team_server() -> Iterator[object]:
    ts = _team_server_module()
    root = Path(tempfile.mkdtemp(prefix="omni_team_"))  # not under pytest's 0700 tmp: postgres must reach it
    server = ts.TeamServer(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.server
def test_postgres_backed_server_round_trip_train_register_score_measure(
    team_server: object, small_world: Path, tmp_path: Path
) -> None:
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from omni_ml.cli import app
    from omni_ml.simulate import continue_world
    from tests.conftest import CAMPAIGN_TEST_CONFIG

    uri = team_server.tracking_uri  # type: ignore[attr-defined]
    assert team_server.backend_store_uri.startswith("postgresql://")  # type: ignore[attr-defined]
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"experiment": "team", "campaign": CAMPAIGN_TEST_CONFIG}))
    runner = CliRunner()
    trained = runner.invoke(
        app,
        ["train", str(small_world), "--as-of", "2024-12-01", "--horizon", "28", "--config", str(config),
         "--register-as", "omni_team", "--alias", "champion", "--tracking-uri", uri],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    run_id = re.search(r"run_id: (\w+)", trained.output).group(1)  # type: ignore[union-attr]

    out = tmp_path / "campaign.parquet"
    scored = runner.invoke(
        app,
        ["score", str(small_world), "--model", "models:/omni_team@champion", "--as-of", "2025-01-01",
         "--out", str(out), "--control-fraction", "0.4", "--seed", "3", "--reasons", "0", "--tracking-uri", uri],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    campaign = pl.read_parquet(out)
    assert campaign["run_id"].unique().to_list() == [run_id]

    people = pl.read_parquet(small_world / "customers.parquet")["customer_id"].implode()
    addressable = campaign.filter(pl.col("customer_id").is_in(people))
    future = tmp_path / "future"
    future.mkdir()
    continue_world(
        small_world, addressable.select("customer_id", pl.col("best_channel").alias("channel"))
    ).write_parquet(future / "events.parquet")
    measured = runner.invoke(
        app, ["measure", str(out), str(future), "--window", "7", "--n-boot", "0", "--tracking-uri", uri]
    )
    assert measured.exit_code == 0, measured.output

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("omni_team", "champion")
    assert version.run_id == run_id
    run = client.get_run(run_id)
    assert 0.5 < run.data.metrics["auc"] <= 1.0
    assert run.data.metrics["measure.overall.n_treated"] > 0  # measure logged to the model's run on the server
    assert {a.path for a in client.list_artifacts(run_id)} >= {"plots", "tables"}
