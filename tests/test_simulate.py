"""Statistical properties of the simulated world (not exact numbers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from omni_ml.data import load_histories
from omni_ml.exceptions import ConfigError
from omni_ml.simulate import SimulationConfig, preset, simulate

TABLES = ("events", "contacts", "consents", "identity_links", "customers")
TRUTH = ("identity", "propensity", "channel_response", "future_events")


def _digest(world: Path) -> dict[str, str]:
    return {
        str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(world.rglob("*"))
        if p.is_file()
    }


def test_world_validates_against_the_histories_contract(small_world: Path) -> None:
    hist = load_histories(small_world, as_of=preset("small").end)
    assert hist.report is not None
    assert set(hist.report.tables) == set(TABLES)
    for table in TABLES:
        assert hist.report.tables[table].rows > 0
        assert hist.report.tables[table].duplicates_dropped == 0
    assert hist.report.tables["events"].future_rows == 0
    for name in TRUTH:
        assert (small_world / "truth" / f"{name}.parquet").is_file()
    assert (small_world / "truth" / "world.json").is_file()


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    cfg = preset("small", n_customers=300)
    a = _digest(simulate(cfg, tmp_path / "a"))
    b = _digest(simulate(cfg, tmp_path / "b"))
    c = _digest(simulate(cfg.replace(seed=1), tmp_path / "c"))
    assert a == b
    assert len(a) == len(TABLES) + len(TRUTH) + 1
    assert all(a[k] != c[k] for k in a if k != "truth/world.json" and "customers" not in k) or a != c
    assert a["events.parquet"] != c["events.parquet"]


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"identifier_only_share=1\.5 must be within \[0, 1\]"):
        SimulationConfig(identifier_only_share=1.5)
    with pytest.raises(ConfigError, match="unknown simulation preset 'huge'"):
        preset("huge")


def test_mean_propensity_matches_realised_rate(small_world: Path) -> None:
    prop = pl.read_parquet(small_world / "truth" / "propensity.parquet")
    fut = pl.read_parquet(small_world / "truth" / "future_events.parquet")
    buyers = fut.filter(pl.col("event_type") == "purchase")["customer_id"].unique()
    y = prop["customer_id"].is_in(buyers.implode()).to_numpy()
    p = prop["p_purchase"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / p.size
    assert abs(p.mean() - y.mean()) < 4 * se + 1e-3
    assert ((p >= 0) & (p <= 1)).all()
