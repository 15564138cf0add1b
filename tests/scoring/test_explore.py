"""Exploration in the campaign file (issue 20): who explores, what they may get, exact assignment probabilities."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from omni_ml.cli import app
from omni_ml.data import load_histories
from omni_ml.exceptions import ConfigError
from omni_ml.identity import consent_state, resolve_identities
from omni_ml.scoring import finish_chunk, score

AS_OF = "2025-01-01"
CHANNELS = ("email", "sms", "direct_mail")
SCHEMA = pl.Schema(
    {
        "customer_id": pl.String(),
        "best_channel": pl.String(),
        "recommended_channel": pl.String(),
        "control_group": pl.Boolean(),
        "assignment_probability": pl.Float64(),
        **{f"score_{c}": pl.Float64() for c in CHANNELS},
        "rule": pl.String(),
        "model_uri": pl.String(),
        "model_version": pl.String(),
        "run_id": pl.String(),
    }
)
_LINEAGE = {"model_uri": None, "model_version": None, "run_id": None}


def _decisions(n: int, *, best: str, rule: str, scores: tuple[float | None, ...]) -> pl.DataFrame:
    """``n`` customers with the same policy decision and the same allowed channels."""
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "best_channel": [best] * n,
            **{f"score_{c}": pl.Series([s] * n, dtype=pl.Float64) for c, s in zip(CHANNELS, scores, strict=True)},
            "rule": [rule] * n,
        }
    )


@settings(max_examples=15, deadline=None)
@given(
    control=st.sampled_from([0.0, 0.1, 0.3]),
    explore=st.sampled_from([0.05, 0.2, 0.5]),
    seed=st.integers(0, 2**31),
    scores=st.sampled_from([(1.0, 0.5, None), (-1.0, -2.0, -0.5), (None, 0.3, None), (2.0, 1.0, 0.1)]),
)
def test_importance_weights_of_every_option_average_to_one(
    control: float, explore: float, seed: int, scores: tuple[float | None, ...]
) -> None:
    """E[1(a = x) / p(x)] = 1 for every option x: the logged probabilities are the design's, exactly."""
    allowed = [c for c, s in zip(CHANNELS, scores, strict=True) if s is not None]
    values = [s for s in scores if s is not None]
    best = allowed[int(np.argmax(values))] if max(values) > 0 else "no_contact"
    rule = "best_value" if best != "no_contact" else "no_positive_value"
    n = 40_000
    out = finish_chunk(
        _decisions(n, best=best, rule=rule, scores=scores),
        schema=SCHEMA,
        control_fraction=control,
        seed=seed,
        lineage=_LINEAGE,
        explore_fraction=explore,
    )
    assert set(out["best_channel"]) <= {*allowed, "no_contact"}
    for option in (*allowed, "no_contact"):
        hit = out.filter(pl.col("best_channel") == option)
        assert hit.height > 0, option
        assert hit["assignment_probability"].n_unique() == 1  # one probability per (design, option)
        p = hit["assignment_probability"][0]
        weight = hit.height / p / n  # IPS estimate of 1
        assert abs(weight - 1.0) < 5 * np.sqrt((1 - p) / (p * n)), (option, p, hit.height)
    explored = out.filter(pl.col("rule") == "explore")
    assert not explored["control_group"].any()
    target = (1 - control) * explore
    assert abs(explored.height / n - target) < 5 * np.sqrt(target * (1 - target) / n)
    policy = out.filter(~pl.col("control_group") & (pl.col("rule") != "explore"))
    assert policy["best_channel"].equals(policy["recommended_channel"])


def test_a_customer_paused_by_a_rule_is_never_explored_and_logs_probability_one() -> None:
    for rule in ("cooldown", "pressure_cap", "service_incident", "no_consent", "category_suppressed"):
        out = finish_chunk(
            _decisions(5_000, best="no_contact", rule=rule, scores=(1.0, 0.5, 0.2)),
            schema=SCHEMA,
            control_fraction=0.2,
            seed=1,
            lineage=_LINEAGE,
            explore_fraction=0.9,
        )
        assert (out["best_channel"] == "no_contact").all()
        assert (out["rule"] == rule).all()
        assert (out["assignment_probability"] == 1.0).all()


def test_without_exploration_the_file_logs_the_design_of_control_and_policy() -> None:
    out = finish_chunk(
        _decisions(10_000, best="sms", rule="best_value", scores=(0.1, 0.5, None)),
        schema=SCHEMA,
        control_fraction=0.25,
        seed=3,
        lineage=_LINEAGE,
    )
    assert (out["rule"] != "explore").all()
    sent = out.filter(pl.col("best_channel") == "sms")
    held = out.filter(pl.col("best_channel") == "no_contact")
    assert (sent["assignment_probability"] == 0.75).all()
    assert (held["assignment_probability"] == 0.25).all()
    assert (held["rule"] == "control_group").all()


def test_exploration_is_independent_of_the_control_group_and_nested_in_its_fraction() -> None:
    frame = _decisions(50_000, best="email", rule="best_value", scores=(1.0, 0.5, 0.2))
    runs = {
        f: finish_chunk(frame, schema=SCHEMA, control_fraction=0.2, seed=9, lineage=_LINEAGE, explore_fraction=f)
        for f in (0.1, 0.3)
    }
    small, large = (set(r.filter(pl.col("rule") == "explore")["customer_id"]) for r in runs.values())
    assert small <= large  # raising F only adds explorers
    control = set(runs[0.1].filter(pl.col("control_group"))["customer_id"])
    assert control == set(runs[0.3].filter(pl.col("control_group"))["customer_id"])
    assert abs(len(control) / 50_000 - 0.2) < 0.01  # the control group does not depend on F
    other_seed = finish_chunk(
        frame, schema=SCHEMA, control_fraction=0.2, seed=10, lineage=_LINEAGE, explore_fraction=0.3
    )
    moved = set(other_seed.filter(pl.col("rule") == "explore")["customer_id"])
    overlap = len(moved & large) / 50_000
    assert abs(overlap - (0.8 * 0.3) ** 2) < 0.01  # a new campaign seed draws new explorers


def test_explored_campaign_file_respects_consent_and_rules(explored: Path, small_world: Path) -> None:
    frame = pl.read_parquet(explored)
    assert frame["assignment_probability"].is_between(0.0, 1.0, closed="right").all()
    rules = frame["rule"].value_counts()
    assert "explore" in set(rules["rule"])
    hist = resolve_identities(load_histories(small_world), as_of=AS_OF)
    consent = consent_state(hist, dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    contacted = frame.filter(pl.col("best_channel") != "no_contact").join(consent, on="customer_id", how="left")
    for row in contacted.iter_rows(named=True):
        assert row[f"consent_{row['best_channel']}"] is True
        assert row[f"score_{row['best_channel']}"] is not None
    rest = frame.filter(~pl.col("rule").is_in(["best_value", "no_positive_value", "explore", "control_group"]))
    assert (rest["best_channel"] == "no_contact").all()  # exploration never contacts someone a rule paused
    assert (rest.filter(~pl.col("control_group"))["assignment_probability"] == 1.0).all()


def test_score_and_cli_refuse_an_exploration_share_outside_0_1(
    small_world: Path, campaign_model_path: Path, tmp_path: Path
) -> None:
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ConfigError, match=r"explore \(--explore\) must be in \[0, 1\)"):
            score(small_world, model=campaign_model_path, as_of=AS_OF, out=tmp_path / "c.parquet", explore=bad)
    result = CliRunner().invoke(
        app,
        [
            "score",
            str(small_world),
            "--model",
            str(campaign_model_path),
            "--as-of",
            AS_OF,
            "--out",
            str(tmp_path / "c.parquet"),
            "--explore",
            "1",
        ],
    )
    assert result.exit_code == 2
    assert "--explore" in result.output
    assert not (tmp_path / "c.parquet").exists()


def test_cli_prints_the_explored_count(small_world: Path, campaign_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    args = ["score", str(small_world), "--model", str(campaign_model_path), "--as-of", AS_OF, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--reasons", "0", "--explore", "0.2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    n = int((pl.read_parquet(out)["rule"] == "explore").sum())
    assert n > 0
    assert f"exploration: {n:,} customers" in result.output


@pytest.mark.spark
def test_spark_writes_the_same_explored_file(small_world: Path, campaign_model_path: Path, tmp_path: Path) -> None:
    from omni_ml.scoring.spark import local_session

    spark = local_session(cores=1)
    args = {"model": campaign_model_path, "as_of": AS_OF, "reasons": 0, "chunks": 2, "progress": False}
    try:
        score(small_world, out=tmp_path / "spark.parquet", engine="spark", explore=0.25, seed=2, **args)  # type: ignore[arg-type]
    finally:
        spark.stop()
    score(small_world, out=tmp_path / "local.parquet", explore=0.25, seed=2, **args)  # type: ignore[arg-type]
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("spark.parquet", "local.parquet")]
    assert digest[0] == digest[1]
    assert (pl.read_parquet(tmp_path / "local.parquet")["rule"] == "explore").any()
