"""ensure_world reuses a world only when its config matches; truth helpers judge decisions by the truth."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.simulate import load_config, preset
from omni_ml.simulate.cache import ensure_world, policy_value, purchase_outcomes, world_window


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_world(preset("small", n_customers=120, seed=3), tmp_path_factory.mktemp("w") / "world")


def test_reuses_same_config_and_resimulates_a_changed_one(tmp_path: Path) -> None:
    cfg = preset("small", n_customers=60)
    world = ensure_world(cfg, tmp_path / "w")
    stamp = (world / "events.parquet").stat().st_mtime_ns
    assert (ensure_world(cfg, world) / "events.parquet").stat().st_mtime_ns == stamp
    other = cfg.replace(seed=1)
    ensure_world(other, world)
    assert load_config(world) == other
    # an incomplete world is simulated again
    (world / "truth" / "future_events.parquet").unlink()
    ensure_world(other, world)
    assert (world / "truth" / "future_events.parquet").is_file()


def test_never_deletes_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"not empty and holds no simulated world.*Hint"):
        ensure_world(preset("small", n_customers=20), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_purchase_outcomes_match_future_purchases(tiny: Path) -> None:
    end, days = world_window(tiny)
    out = purchase_outcomes(tiny)
    future = pl.read_parquet(tiny / "truth" / "future_events.parquet").filter(pl.col("event_type") == "purchase")
    assert out.height == pl.read_parquet(tiny / "truth" / "propensity.parquet").height
    assert set(out.filter(pl.col("bought") == 1)["customer_id"]) == set(future["customer_id"])
    week = purchase_outcomes(tiny, 7)
    assert week["bought"].sum() <= out["bought"].sum()
    with pytest.raises(ConfigError, match="horizon_days"):
        purchase_outcomes(tiny, days + 1)


def test_policy_value_sums_true_uplift_minus_cost(tiny: Path) -> None:
    truth = pl.read_parquet(tiny / "truth" / "channel_response.parquet")
    ids = truth["customer_id"].unique().sort()
    pause = pl.DataFrame({"customer_id": ids, "best_channel": ["no_contact"] * ids.len()})
    assert policy_value(pause, tiny, 40.0)["value"] == 0.0
    mail = pause.with_columns(pl.lit("email").alias("best_channel"))
    email = truth.filter(pl.col("channel") == "email")
    expected = float(((email["p_if_contacted"] - email["p_if_not"]) * 40.0 - email["cost"]).sum())
    got = policy_value(mail, truth, 40.0)
    assert got["value"] == pytest.approx(expected)
    assert got["contacts"] == ids.len()
    assert got["contacts_without_true_consent"] == int((~email["consented"]).sum())
    with pytest.raises(SchemaError, match="repeat a customer"):
        policy_value(pl.concat([mail, mail]), truth, 40.0)
