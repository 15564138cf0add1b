"""Issue 24: send-time rhythms in the simulator and send-time recommendations (omni_ml.timing)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, ConsentError, SchemaError
from omni_ml.explanation import timing_reasons
from omni_ml.policy import PolicyConfig
from omni_ml.simulate import best_send_times, continue_world, preset, timed_campaign_value
from omni_ml.simulate.config import CHANNELS
from omni_ml.simulate.population import draw_population
from omni_ml.simulate.rhythm import DEFAULT_SEND_HOUR, draw_rhythm
from omni_ml.timing import SendTimeModel, TimingConfig, weekday_hour_counts

CFG = preset("small")
END = dt.datetime(CFG.end.year, CFG.end.month, CFG.end.day, tzinfo=dt.UTC)
AS_OF = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)  # a Monday


def _read(world: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(world / f"{name}.parquet")


# ----------------------------------------------------------------------------- the simulator's rhythms


def test_send_time_truth_has_one_row_per_customer_and_channel_24(small_world: Path) -> None:
    truth = _read(small_world, "truth/send_time")
    customers = _read(small_world, "customers")
    assert truth.columns == ["customer_id", "channel", "best_hour", "best_weekday"]
    assert truth.height == customers.height * len(CHANNELS)
    hours = truth.filter(pl.col("channel") != "direct_mail")["best_hour"]
    assert hours.null_count() == 0
    assert hours.min() >= 0
    assert hours.max() <= 23
    assert truth.filter(pl.col("channel") == "direct_mail")["best_hour"].null_count() == customers.height
    assert set(truth["best_weekday"].unique().to_list()) == set(range(1, 8))
    curve = json.loads((small_world / "truth" / "world.json").read_text())["send_time"]
    assert curve["default_send_hour_utc"] == DEFAULT_SEND_HOUR
    assert curve["kappa_hour"] == CFG.send_hour_kappa
    assert "multiplier" in curve


def test_visits_follow_the_persons_best_hour_24(small_world: Path) -> None:
    """The rhythm is visible: the modal hour of a frequent visitor's web visits is near their best hour."""
    ident = _read(small_world, "truth/identity").filter(~pl.col("shared")).select("identifier", "customer_id")
    ev = _read(small_world, "events").filter((pl.col("event_type") == "visit") & (pl.col("channel") == "web"))
    ev = ev.join(ident, on="identifier", how="left").with_columns(
        pl.coalesce("customer_id", "customer_id_right").alias("person")
    )
    modes = (
        ev.drop_nulls("person")
        .group_by("person")
        .agg(pl.len().alias("n"), pl.col("timestamp").dt.hour().mode().first().alias("mode"))
        .filter(pl.col("n") >= 12)
    )
    truth = _read(small_world, "truth/send_time").filter(pl.col("channel") == "email")
    joined = modes.join(truth, left_on="person", right_on="customer_id")
    d = (joined["mode"].cast(pl.Int64) - joined["best_hour"].cast(pl.Int64)).abs()
    near = (np.minimum(d, 24 - d) <= 2).mean()
    assert joined.height > 50
    assert near > 0.6  # uniform hours would give 5/24


def test_the_default_send_time_keeps_the_average_effect_24() -> None:
    """No free value: the population's mean multiplier at 09:00 UTC is 1 on every weekday and channel."""
    cfg = preset("small", n_customers=40_000, chunk_size=40_000)
    pop = draw_population(cfg, 0, 0, cfg.n_customers)
    rhythm = draw_rhythm(cfg, 0, pop)
    who = np.arange(pop.n)
    sec = np.full(pop.n, int(DEFAULT_SEND_HOUR * 3600))
    for c in range(len(CHANNELS)):
        means = [float(rhythm.multiplier(who, np.full(pop.n, c), sec, w).mean()) for w in range(7)]
        assert np.mean(means) == pytest.approx(1.0, abs=0.03)
    best = rhythm.multiplier(who, np.zeros(pop.n, dtype=np.int64), (rhythm.best_hour[:, 0] * 3600).astype(int), 0)
    assert best.mean() > 1.3  # sending at each person's best hour is worth more than the default
    flat = draw_rhythm(cfg.replace(send_hour_kappa=0.0, send_weekday_kappa=0.0), 0, pop)
    assert np.all(flat.multiplier(who, np.zeros(pop.n, dtype=np.int64), sec * 0 + 3600, 3) == 1.0)


def test_continue_world_honours_send_times_24(small_world: Path, tmp_path: Path) -> None:
    resp = _read(small_world, "truth/channel_response").filter((pl.col("channel") == "email") & pl.col("consented"))
    campaign = resp.head(40).select(
        "customer_id",
        "channel",
        pl.lit(CFG.end + dt.timedelta(days=2)).alias("send_on"),
        pl.lit(19).alias("send_hour"),
        pl.lit("Europe/Copenhagen").alias("send_time_zone"),
    )
    continue_world(small_world, campaign, tmp_path / "c")
    sent = pl.read_parquet(tmp_path / "c" / "contacts.parquet")
    assert sent.height == 40  # no spontaneous withdrawal among these in two days (checked at send time)
    assert (sent["timestamp"] == END + dt.timedelta(days=2, hours=18)).all()  # 19:00 CET is 18:00 UTC
    with pytest.raises(SchemaError, match=r"campaign.send_on: 40 of 40 rows are sent outside the world's future"):
        continue_world(small_world, campaign.with_columns(pl.lit(CFG.end - dt.timedelta(days=1)).alias("send_on")))
    with pytest.raises(SchemaError, match=r"campaign.send_hour: 40 of 40 rows are outside 0-23"):
        continue_world(small_world, campaign.with_columns(pl.lit(24).alias("send_hour")))
    with pytest.raises(SchemaError, match=r"send_time_zone: 40 of 40 rows name an unknown time zone .*Mars/Olympus"):
        continue_world(small_world, campaign.with_columns(pl.lit("Mars/Olympus").alias("send_time_zone")))


def test_the_true_best_time_beats_the_default_for_every_person_24(small_world: Path) -> None:
    resp = _read(small_world, "truth/channel_response").filter((pl.col("channel") == "sms") & pl.col("consented"))
    base = resp.head(150).select("customer_id", "channel")
    best = best_send_times(small_world, base, period_days=7, days=14)
    assert best.height == base.height
    assert best["send_hour"].null_count() == 0
    default = base.with_columns(pl.lit(CFG.end).alias("send_on"), pl.lit(9).alias("send_hour"))
    value = timed_campaign_value(small_world, {"default": default, "best": best.drop("send_time_zone")}, days=14)
    value = value.filter(pl.col("customer_id").is_in(base["customer_id"].implode()))
    assert (value["p_best"] >= value["p_default"] - 1e-9).all()
    assert (value["p_default"] >= value["p_none"] - 1e-9).all()
    assert float((value["p_best"] - value["p_default"]).sum()) > 0
    with pytest.raises(ConfigError, match="days=40 must be within 1..future_days=30"):
        timed_campaign_value(small_world, {"default": default}, days=40)


# ----------------------------------------------------------------------------- recommendations


def _events(rows: list[tuple[str, dt.datetime, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "timestamp": [r[1] for r in rows],
            "channel": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
        }
    )


def _evening_world(zone: str | None = None) -> Histories:
    """'a' visits on Tuesday evenings; 'b' buys every 30 days and bought 2 days ago; 'c' browses now; 'd' nothing."""
    rows = []
    for week in range(1, 9):
        tuesday = AS_OF - dt.timedelta(days=6 + 7 * week)
        rows += [("a", tuesday.replace(hour=19, minute=m), "web", "visit") for m in (5, 30)]
    rows += [("b", AS_OF - dt.timedelta(days=2 + 30 * k, hours=-12), "store", "purchase") for k in range(5)]
    rows += [("c", AS_OF - dt.timedelta(hours=h), "web", "visit") for h in (5, 20, 30)]
    customers = pl.DataFrame({"customer_id": ["a", "b", "c", "d"], "age_band": ["young", "old", "young", "old"]})
    if zone is not None:
        customers = customers.with_columns(pl.lit(zone).alias("time_zone"))
    return Histories.from_frames(_events(rows), customers=customers)


def _decisions(ids: list[str], channel: str = "email") -> pl.DataFrame:
    return pl.DataFrame({"customer_id": ids, "best_channel": [channel] * len(ids)})


def test_recommendations_follow_the_customers_own_rhythm_24() -> None:
    hist = _evening_world()
    model = SendTimeModel(config=TimingConfig(cycle_weight=0.0, browsing_weight=0.0)).fit(hist, AS_OF)
    rec = model.recommend(hist, AS_OF, _decisions(["a"]))
    row = rec.row(0, named=True)
    assert row["send_hour"] == 19
    assert row["send_weekday"] == 2
    assert row["send_time_zone"] == "UTC"
    assert row["send_on"] == dt.date(2025, 3, 4)  # the Tuesday of the period
    assert row["send_time_source"] == "own"
    text = timing_reasons(rec, pl.Series(["email"]))[0]
    assert text is not None
    assert text.startswith("usually opens e-mail on Tuesday evenings")


def test_cold_start_gets_the_segments_time_never_null_24() -> None:
    hist = _evening_world()
    model = SendTimeModel(config=TimingConfig(segment_by="age_band")).fit(hist, AS_OF)
    rec = model.recommend(hist, AS_OF, _decisions(["d", "zz"]))  # 'zz' is not even a known customer
    assert rec["send_hour"].null_count() == 0
    assert rec["send_weekday"].null_count() == 0
    assert rec["send_on"].null_count() == 0
    seg = np.asarray(model.segment_hour_[("old", "__all__")])
    assert rec["send_hour"][0] == int(np.argmax(seg)) or rec["send_time_source"][0] == "segment"
    assert rec["send_time_source"].to_list() == ["segment", "population"]
    assert all(t is not None for t in timing_reasons(rec, pl.Series(["email", "email"])))


def test_time_zone_of_the_customer_is_used_and_named_24() -> None:
    hist = _evening_world(zone="America/New_York")
    model = SendTimeModel(config=TimingConfig(cycle_weight=0.0, browsing_weight=0.0)).fit(hist, AS_OF)
    row = model.recommend(hist, AS_OF, _decisions(["a"])).row(0, named=True)
    assert row["send_time_zone"] == "America/New_York"
    assert row["send_hour"] == 14  # 19:05 UTC in winter is 14:05 in New York
    bad = Histories.from_frames(
        _events([("a", AS_OF - dt.timedelta(days=1), "web", "visit")]),
        customers=pl.DataFrame({"customer_id": ["a"], "time_zone": ["Mars/Olympus"]}),
    )
    with pytest.raises(SchemaError, match=r"customers.time_zone: 1 of 1 rows name an unknown time zone"):
        SendTimeModel().fit(bad, AS_OF)


def test_send_on_waits_for_a_cycle_and_goes_today_when_browsing_24() -> None:
    hist = _evening_world()
    flat_week = TimingConfig(segment_by=None, weekday_event_types=())  # no weekday evidence: the hazard decides
    model = SendTimeModel(config=flat_week).fit(hist, AS_OF)
    rec = model.recommend(hist, AS_OF, _decisions(["b", "c"]))
    b, c = rec.row(0, named=True), rec.row(1, named=True)
    assert b["send_on"] > AS_OF.date() + dt.timedelta(days=3)  # bought 2 days ago, buys every 30 days
    assert b["send_on_driver"] == "purchase_cycle"
    assert c["send_on"] == AS_OF.date()
    assert c["send_on_driver"] == "browsing"


def test_cool_down_ending_on_day_3_gives_day_3_or_later_24() -> None:
    hist = _evening_world()
    contacts = pl.DataFrame({"customer_id": ["c"], "timestamp": [AS_OF - dt.timedelta(days=1)], "channel": ["email"]})
    hist = Histories.from_frames(
        hist.events.collect(),
        customers=hist.customers.collect() if hist.customers is not None else None,
        contacts=contacts,
    )
    policy = PolicyConfig(cooldown_days=3.5)
    model = SendTimeModel(config=TimingConfig(segment_by=None)).fit(hist, AS_OF)
    row = model.recommend(hist, AS_OF, _decisions(["c"]), policy=policy).row(0, named=True)
    # last contact at day -1 00:00; the cool-down of 3.5 days ends on day 2 at noon: day 2 from the send hour on
    assert row["send_on"] >= AS_OF.date() + dt.timedelta(days=2)
    instant = dt.datetime.combine(row["send_on"], dt.time(row["send_hour"]), tzinfo=dt.UTC)
    assert (instant - (AS_OF - dt.timedelta(days=1))).total_seconds() / 86_400 > 3.5
    cool = model.recommend(hist, AS_OF, _decisions(["c"]), policy=PolicyConfig(cooldown_days=30.0))
    assert cool["send_on"][0] is None
    assert cool["send_time_rule"][0] == "no_allowed_day"


def test_a_decision_without_consent_is_refused_24() -> None:
    hist = _evening_world()
    model = SendTimeModel().fit(hist, AS_OF)
    consent = pl.DataFrame({"customer_id": ["a"], "consent_email": [False]})
    with pytest.raises(ConsentError):
        model.recommend(hist, AS_OF, _decisions(["a"]), consent=consent)
    with pytest.raises(ConfigError, match="not fitted"):
        SendTimeModel().recommend(hist, AS_OF, _decisions(["a"]))
    with pytest.raises(ConfigError, match="wait_discount must be within"):
        TimingConfig(wait_discount=0.0)


@settings(max_examples=25, deadline=None)
@given(
    offsets=st.lists(st.tuples(st.integers(0, 3), st.floats(0.01, 40.0)), min_size=0, max_size=12),
    cap7=st.integers(1, 4),
    cap30=st.integers(1, 9),
    cooldown=st.floats(0.0, 9.0),
    period=st.integers(1, 10),
    zone=st.sampled_from(["UTC", "Europe/Copenhagen", "Asia/Tokyo", "America/Los_Angeles"]),
)
def test_timing_never_breaks_pressure_cool_down_or_consent_24(
    offsets: list[tuple[int, float]], cap7: int, cap30: int, cooldown: float, period: int, zone: str
) -> None:
    """Property: at every recommended send instant the caps and the cool-down hold; else no day is allowed."""
    ids = ["p0", "p1", "p2", "p3"]
    events = _events(
        [(i, AS_OF - dt.timedelta(days=d, hours=h), "web", "visit") for i in ids for d, h in ((1, 3), (8, 5))]
    )
    contacts = pl.DataFrame(
        {
            "customer_id": [ids[k] for k, _ in offsets],
            "timestamp": [AS_OF - dt.timedelta(days=days) for _, days in offsets],
            "channel": ["email"] * len(offsets),
        },
        schema={"customer_id": pl.String, "timestamp": pl.Datetime("us", "UTC"), "channel": pl.String},
    )
    customers = pl.DataFrame({"customer_id": ids, "time_zone": [zone] * 4})
    hist = Histories.from_frames(events, customers=customers, contacts=contacts)
    policy = PolicyConfig(max_contacts_7d=cap7, max_contacts_30d=cap30, cooldown_days=cooldown)
    model = SendTimeModel(config=TimingConfig(period_days=period)).fit(hist, AS_OF)
    decisions = pl.DataFrame({"customer_id": ids, "best_channel": ["email", "email", "no_contact", "email"]})
    consent = pl.DataFrame({"customer_id": ids, "consent_email": [True] * 4})
    rec = model.recommend(hist, AS_OF, decisions, policy=policy, consent=consent)
    assert rec["send_hour"].null_count() == 0
    assert rec["send_weekday"].null_count() == 0
    import zoneinfo

    tz = zoneinfo.ZoneInfo(zone)
    kept = hist.contacts.collect() if hist.contacts is not None else contacts  # exact duplicates are dropped
    sent = kept["timestamp"].to_list()
    who = kept["customer_id"].to_list()

    def allowed(customer: str, instant: dt.datetime) -> bool:
        back = [(instant - t).total_seconds() / 86_400 for t, c in zip(sent, who, strict=True) if c == customer]
        return (
            instant >= AS_OF
            and sum(b <= 7 for b in back) < cap7
            and sum(b <= 30 for b in back) < cap30
            and all(b > cooldown for b in back)
        )

    start = AS_OF.astimezone(tz).date()
    for row in rec.iter_rows(named=True):
        if row["customer_id"] == "p2":
            assert row["send_on"] is None
            assert row["send_time_rule"] == "no_contact"
            continue
        hour = row["send_hour"]
        if row["send_on"] is None:
            assert row["send_time_rule"] == "no_allowed_day"
            for d in range(period):
                day = start + dt.timedelta(days=d)
                assert not allowed(row["customer_id"], dt.datetime.combine(day, dt.time(hour), tzinfo=tz))
            continue
        instant = dt.datetime.combine(row["send_on"], dt.time(hour), tzinfo=tz)
        assert allowed(row["customer_id"], instant)
        assert start <= row["send_on"] < start + dt.timedelta(days=period)


def test_model_beats_the_population_mode_for_customers_with_history_24(small_world: Path) -> None:
    """Hit rate within one hour of the true best hour, >= 5 engagement events: model vs population mode."""
    from omni_ml.data import load_histories
    from omni_ml.identity import resolve_identities

    hist = resolve_identities(load_histories(small_world)).collect()
    model = SendTimeModel().fit(hist, END)
    truth = _read(small_world, "truth/send_time").filter(pl.col("channel") == "email")
    decisions = truth.select("customer_id", pl.lit("email").alias("best_channel"))
    rec = model.recommend(hist, END, decisions).join(truth, on="customer_id")
    assert rec["send_hour"].null_count() == 0
    pop = int(np.argmax(model.population_hour_["__all__"]))

    def hit(hours: pl.Series, best: pl.Series) -> float:
        d = (hours.cast(pl.Int64) - best.cast(pl.Int64)).abs()
        return float((np.minimum(d, 24 - d) <= 1).mean())

    rich = rec.filter(pl.col("send_time_events") >= 5)
    assert rich.height > 200
    assert hit(rich["send_hour"], rich["best_hour"]) > hit(pl.Series([pop] * rich.height), rich["best_hour"]) + 0.3
    # the best weekday: persons are spread uniformly over the week, so any single day hits about 1/7
    assert model.weekday_kappa_ > 0.5
    assert 0.0 < model.weekday_share_ <= 1.0
    weekday_hit = float((rich["send_weekday"] == rich["best_weekday"]).mean())
    pop_weekday = int(np.argmax(model.population_weekday_["__all__"])) + 1
    assert weekday_hit > 2 * float((rich["best_weekday"] == pop_weekday).mean()) + 0.2


def test_a_rows_send_time_does_not_depend_on_its_batch_24(small_world: Path) -> None:
    """Chunked and Spark scoring recommend per chunk: the halves give exactly the rows of the whole."""
    from omni_ml.data import load_histories
    from omni_ml.identity import resolve_identities

    hist = resolve_identities(load_histories(small_world)).collect()
    model = SendTimeModel().fit(hist, END)
    ids = _read(small_world, "customers")["customer_id"].head(1500)
    decisions = pl.DataFrame({"customer_id": ids, "best_channel": [CHANNELS[i % 5] for i in range(ids.len())]})
    whole = model.recommend(hist, END, decisions)
    halves = pl.concat([model.recommend(hist, END, part) for part in (decisions.head(1100), decisions.tail(400))])
    assert whole.equals(halves)
    assert whole["send_hour"].n_unique() > 3


def _buyer_world() -> Histories:
    """'a' browses on Tuesday evenings; earlier, on more Saturdays, they visited and bought the next day."""
    rows = []
    for week in range(1, 9):
        tuesday = AS_OF - dt.timedelta(days=6 + 7 * week)
        rows.append(("a", tuesday.replace(hour=19), "web", "visit"))
    for week in range(9, 21):  # earlier weeks: no purchase follows a Tuesday
        saturday = AS_OF - dt.timedelta(days=2 + 7 * week)
        rows += [("a", saturday.replace(hour=h), "web", "visit") for h in (10, 15)]
        rows.append(("a", saturday + dt.timedelta(days=1, hours=11), "store", "purchase"))
    return Histories.from_frames(_events(rows))


def test_visits_of_buying_episodes_leave_the_weekday_24() -> None:
    """Visits followed by a purchase within ``weekday_purchase_gap_days`` do not count for the weekday."""
    hist = _buyer_world()
    counts = weekday_hour_counts(hist, AS_OF).filter(pl.col("event_type") == "visit")
    assert counts.filter("for_weekday")["local_weekday"].unique().to_list() == [2]  # the Tuesdays only
    assert counts.filter(~pl.col("for_weekday"))["local_weekday"].unique().to_list() == [6]
    rec = SendTimeModel().fit(hist, AS_OF).recommend(hist, AS_OF, _decisions(["a"]))
    assert rec["send_weekday"][0] == 2
    assert rec["send_on"][0] == dt.date(2025, 3, 4)  # the Tuesday of the period
    every_visit = TimingConfig(weekday_purchase_gap_days=0.0)
    rec = SendTimeModel(config=every_visit).fit(hist, AS_OF).recommend(hist, AS_OF, _decisions(["a"]))
    assert rec["send_weekday"][0] == 6  # the buying Saturdays outnumber the Tuesdays


def test_campaign_table_carries_the_send_time_columns_24(campaign_model_path: Path, small_world: Path) -> None:
    from omni_ml.campaign import CampaignModel
    from omni_ml.data import load_histories
    from omni_ml.identity import resolve_identities

    model = CampaignModel.load(campaign_model_path)
    as_of = dt.datetime(2024, 12, 15, tzinfo=dt.UTC)
    hist = resolve_identities(load_histories(small_world), as_of=as_of).collect()
    table = model.score(hist, as_of, reasons=0)
    assert table.schema["send_on"] == pl.Date
    assert table.schema["send_hour"] == pl.Int8
    for column in ("send_weekday", "send_hour", "send_time_zone", "send_time_reason"):
        assert table[column].null_count() == 0, column  # cold start included: never null
    contacted = table["best_channel"] != "no_contact"
    assert contacted.any()
    assert (table["send_on"].is_null() == ~contacted).all()
    on = table.filter(contacted)["send_on"]
    assert on.min() >= as_of.date()
    assert on.max() < as_of.date() + dt.timedelta(days=7)
    assert table["send_hour"].is_between(0, 23).all()
    assert table["send_weekday"].is_between(1, 7).all()
