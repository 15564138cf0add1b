"""Simulator outcome events (issue 20): mail-code redemptions and call outcomes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import omni_ml.simulate.events as sim_events
from omni_ml.data import EVENT_TYPES, load_histories
from omni_ml.simulate import preset, simulate
from omni_ml.simulate.outcomes import (
    MAIL_CODE_DAYS,
    OUTCOME_EVENT_TYPES,
    REDEEM_IF_ANYWAY,
    REDEEM_IF_DRIVEN,
    _redeem_kernel,
)

CALL_OUTCOMES = ["no_answer", "reached", "interested"]


@pytest.fixture(scope="module")
def events(small_world: Path) -> pl.DataFrame:
    return pl.read_parquet(small_world / "events.parquet")


@pytest.fixture(scope="module")
def contacts(small_world: Path) -> pl.DataFrame:
    return pl.read_parquet(small_world / "contacts.parquet")


def test_outcome_event_types_are_in_the_contract() -> None:
    assert set(OUTCOME_EVENT_TYPES) <= set(EVENT_TYPES)


def test_every_call_has_exactly_one_outcome_minutes_later(events: pl.DataFrame, contacts: pl.DataFrame) -> None:
    calls = contacts.filter(pl.col("channel") == "call_center").select("customer_id", "campaign_id", "timestamp")
    outcomes = events.filter(pl.col("event_type").is_in(CALL_OUTCOMES))
    assert outcomes["channel"].unique().to_list() == ["call_center"]
    assert outcomes["customer_id"].null_count() == 0
    assert outcomes.height == calls.height > 100
    joined = calls.join(
        outcomes.select("customer_id", "campaign_id", pl.col("timestamp").alias("at"), "event_type"),
        on=["customer_id", "campaign_id"],
        how="left",
    )
    assert joined.height == calls.height  # one outcome per call, none orphaned
    lag = (joined["at"] - joined["timestamp"]).dt.total_seconds()
    assert lag.min() >= 60
    assert lag.max() <= 15 * 60
    answered = joined["event_type"].is_in(["reached", "interested"]).mean()
    assert 0.15 < answered < 0.35  # about a quarter, the commonly quoted outbound connect rate


def test_interested_calls_come_from_truly_responsive_people(small_world: Path, events: pl.DataFrame) -> None:
    truth = pl.read_parquet(small_world / "truth" / "channel_response.parquet")
    uplift = truth.filter(pl.col("channel") == "call_center").select(
        "customer_id", (pl.col("p_if_contacted") - pl.col("p_if_not")).alias("uplift")
    )
    answered = (
        events.filter(pl.col("event_type").is_in(["reached", "interested"]))
        .group_by("customer_id")
        .agg((pl.col("event_type") == "interested").any().alias("interested"))
        .join(uplift, on="customer_id")
    )
    means = dict(answered.group_by("interested").agg(pl.col("uplift").mean()).iter_rows())
    assert means[True] > 2 * means[False]


def test_redemptions_use_a_valid_unused_mail_code_at_a_purchase(
    small_world: Path, events: pl.DataFrame, contacts: pl.DataFrame
) -> None:
    redeem = events.filter(pl.col("event_type") == "redeem")
    assert redeem.height > 20
    assert redeem["channel"].unique().to_list() == ["direct_mail"]
    assert redeem["customer_id"].null_count() == 0
    # each redemption sits on a purchase of the same person at the same instant (a purchase that carries
    # only an identifier is that identifier's true person, or one of them for a shop's shared card)
    identity = pl.read_parquet(small_world / "truth" / "identity.parquet").select(
        "identifier", pl.col("customer_id").alias("true_id")
    )
    purchases = (
        events.filter(pl.col("event_type") == "purchase")
        .join(identity, on="identifier", how="left")
        .select(pl.coalesce("customer_id", "true_id").alias("customer_id"), "timestamp")
    )
    assert redeem.join(purchases, on=["customer_id", "timestamp"], how="semi").height == redeem.height
    # ... uses the code of a mail piece that customer received in the MAIL_CODE_DAYS before
    mail = contacts.filter(pl.col("channel") == "direct_mail").select(
        "customer_id", "campaign_id", pl.col("timestamp").alias("sent")
    )
    matched = redeem.join(mail, on=["customer_id", "campaign_id"], how="inner").filter(
        (pl.col("sent") < pl.col("timestamp"))
        & (pl.col("timestamp") - pl.col("sent") <= dt.timedelta(days=MAIL_CODE_DAYS + 1))
    )
    assert matched.select("customer_id", "campaign_id", "timestamp").unique().height == redeem.height
    # ... and each code is redeemed at most once
    assert redeem.select("customer_id", "campaign_id").is_duplicated().sum() == 0


def test_redeem_probability_mixes_driven_and_anyway_shares() -> None:
    """One person, a mail on day 10, a purchase on day 12: the draw decides against the mixed probability."""

    def redeem(u: float, effect: float, purchase_day: int = 12, lam: float = 1e-9) -> int:
        out = _redeem_kernel(
            np.array([0]), np.array([purchase_day]), np.array([u]), np.array([0, 1]), np.array([10]),
            np.array([effect]), np.array([True]), np.array([lam]), np.ones(100), 0.35, 0.67, MAIL_CODE_DAYS, 14,
            REDEEM_IF_DRIVEN, REDEEM_IF_ANYWAY,
        )  # fmt: skip
        return int(out[0])

    assert redeem(REDEEM_IF_DRIVEN - 0.01, effect=1.0) == 0  # the mail supplied all the intent
    assert redeem(REDEEM_IF_DRIVEN + 0.01, effect=1.0) == -1
    assert redeem(REDEEM_IF_ANYWAY - 0.01, effect=0.0, lam=0.01) == 0  # the purchase would have happened anyway
    assert redeem(REDEEM_IF_ANYWAY + 0.01, effect=0.0, lam=0.01) == -1
    assert redeem(0.0, effect=1.0, purchase_day=10 + MAIL_CODE_DAYS + 1) == -1  # the code expired
    assert redeem(0.0, effect=1.0, purchase_day=10) == -1  # not before the mail arrived


def test_a_code_is_redeemed_once() -> None:
    out = _redeem_kernel(
        np.array([0, 0]), np.array([12, 13]), np.zeros(2), np.array([0, 1]), np.array([10]), np.array([1.0]),
        np.array([True]), np.array([1e-9]), np.ones(100), 0.35, 0.67, MAIL_CODE_DAYS, 14, REDEEM_IF_DRIVEN,
        REDEEM_IF_ANYWAY,
    )  # fmt: skip
    assert out.tolist() == [0, -1]


def test_outcome_events_leave_every_other_row_and_the_truth_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Own random streams: the world without outcome events is the world with them, minus those rows."""
    cfg = preset("small", n_customers=150, seed=4)
    with_outcomes = simulate(cfg, tmp_path / "with")
    empty = sim_events._rows(np.empty(0, np.int64), np.empty(0, np.int64), 0, 0)
    monkeypatch.setattr(sim_events, "_outcome_events", lambda *args, **kw: empty)
    without = simulate(cfg, tmp_path / "without")
    for name in ("events", "truth/future_events"):
        a = pl.read_parquet(with_outcomes / f"{name}.parquet")
        b = pl.read_parquet(without / f"{name}.parquet")
        assert a.filter(pl.col("event_type").is_in(OUTCOME_EVENT_TYPES)).height > 0 or name != "events"
        assert a.filter(~pl.col("event_type").is_in(OUTCOME_EVENT_TYPES)).equals(b)
    for name in ("contacts", "consents", "identity_links", "customers", "truth/identity", "truth/propensity",
                 "truth/channel_response"):  # fmt: skip
        assert (with_outcomes / f"{name}.parquet").read_bytes() == (without / f"{name}.parquet").read_bytes(), name


def test_outcome_events_validate(small_world: Path) -> None:
    report = load_histories(small_world).report
    assert report is not None
    notes = [n for t in report.tables.values() for n in t.notes]
    assert not any("outside the toolkit's vocabulary" in n for n in notes)


def test_ensure_world_replaces_a_world_from_before_outcome_events(tmp_path: Path) -> None:
    import json

    from omni_ml.simulate.cache import ensure_world

    cfg = preset("small", n_customers=60, seed=2)
    world = ensure_world(cfg, tmp_path / "w")
    meta = world / "truth" / "world.json"
    old = json.loads(meta.read_text())
    del old["event_types"]  # as written before the outcome events existed
    meta.write_text(json.dumps(old))
    ensure_world(cfg, world)
    assert json.loads(meta.read_text())["event_types"] == list(EVENT_TYPES)
