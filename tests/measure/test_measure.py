"""Tests of omni_ml.measure: interval coverage, like-with-like comparison, errors, feedback round trip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from omni_ml.data import Histories, load_histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError
from omni_ml.measure import (
    append_contacts,
    diff_in_means,
    feedback_contacts,
    measure_campaign,
    write_report,
)

AS_OF = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
CHANNELS = ("email", "sms")


def _ab_world(
    seed: int,
    *,
    n: int = 4000,
    control: float = 0.3,
    p0: float = 0.10,
    lift: float = 0.06,
    imbalance: float = 0.0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A campaign file and events with a KNOWN effect: treated customers convert with p0 + lift.

    Half the customers are recommended a contact (email or sms); the rest ``no_contact``. Revenue per
    purchase is lognormal with mean ~ 50. ``imbalance`` adds pre-period purchases to the treated only.
    """
    rng = np.random.default_rng(seed)
    ids = [f"C{i:06d}" for i in range(n)]
    rec = np.where(rng.random(n) < 0.5, "no_contact", np.where(rng.random(n) < 0.6, CHANNELS[0], CHANNELS[1]))
    held = rng.random(n) < control
    best = np.where(held, "no_contact", rec)
    treated = (rec != "no_contact") & ~held
    decile = rng.integers(1, 11, n).astype(np.int8)
    campaign = pl.DataFrame(
        {
            "customer_id": ids,
            "as_of": [AS_OF] * n,
            "propensity_decile": decile,
            "best_channel": best,
            "recommended_channel": rec,
            "control_group": held,
            "run_id": [None] * n,
        },
        schema_overrides={"run_id": pl.String},
    )
    buys = rng.random(n) < p0 + lift * treated
    amount = rng.lognormal(np.log(50) - 0.125, 0.5, n)
    when = AS_OF + dt.timedelta(days=1)
    pre_n = rng.poisson(1.0 + imbalance * treated)
    pre_ids = np.repeat(np.arange(n), pre_n)
    events = pl.concat(
        [
            pl.DataFrame(
                {
                    "customer_id": [ids[i] for i in np.flatnonzero(buys)],
                    "timestamp": [when] * int(buys.sum()),
                    "amount": amount[buys],
                }
            ),
            pl.DataFrame(
                {
                    "customer_id": [ids[i] for i in pre_ids],
                    "timestamp": [AS_OF - dt.timedelta(days=float(d)) for d in rng.uniform(1, 300, pre_ids.size)],
                    "amount": rng.lognormal(3.5, 0.5, pre_ids.size),
                }
            ),
            # a purchase after the window never counts
            pl.DataFrame({"customer_id": ids[:50], "timestamp": [AS_OF + dt.timedelta(days=30)] * 50, "amount": 1.0}),
        ]
    ).with_columns(pl.lit("purchase").alias("event_type"), pl.lit("web").alias("channel"))
    return campaign, events


# ----------------------------------------------------------------------------- statistics


def test_welch_interval_covers_a_known_effect_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    p0, lift, covered_conv, covered_rev, reps = 0.1, 0.03, 0, 0, 400
    for _ in range(reps):
        t = (rng.random(1500) < p0 + lift).astype(float)
        c = (rng.random(600) < p0).astype(float)
        r = diff_in_means(t, c, n_boot=0)
        covered_conv += r["ci_low"] <= lift <= r["ci_high"]
        # revenue: skewed, unequal variances (treated spend more per order)
        tr = rng.exponential(60.0, 1500) * (rng.random(1500) < 0.3)
        cr = rng.exponential(40.0, 600) * (rng.random(600) < 0.3)
        r = diff_in_means(tr, cr, n_boot=0)
        covered_rev += r["ci_low"] <= 0.3 * 20.0 <= r["ci_high"]
    # binomial(400, 0.95): 0.92..0.98 is > 3 standard errors wide on both sides
    assert 0.92 <= covered_conv / reps <= 0.98
    assert 0.92 <= covered_rev / reps <= 0.98


def test_bootstrap_interval_covers_and_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    covered, reps = 0, 120
    for k in range(reps):
        t = (rng.random(800) < 0.25).astype(float)
        c = (rng.random(400) < 0.2).astype(float)
        r = diff_in_means(t, c, n_boot=300, seed=k)
        covered += r["boot_low"] <= 0.05 <= r["boot_high"]
        assert r["boot_low"] < r["diff"] < r["boot_high"]
    assert covered / reps >= 0.88
    a = diff_in_means(t, c, n_boot=200, seed=3, name="x")
    assert a == diff_in_means(t, c, n_boot=200, seed=3, name="x")
    assert a["boot_low"] != diff_in_means(t, c, n_boot=200, seed=4, name="x")["boot_low"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=2, max_size=30),
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=2, max_size=30),
)
@example([0.0, 0.0], [0.0, 8.840652920039942e-156])  # a subnormal variance once divided by zero (found in CI)
def test_swapping_groups_negates_the_difference_and_interval(t: list[float], c: list[float]) -> None:
    a = diff_in_means(np.array(t), np.array(c), n_boot=0)
    b = diff_in_means(np.array(c), np.array(t), n_boot=0)
    assert a["diff"] == pytest.approx(-b["diff"], abs=1e-9)
    assert a["ci_low"] == pytest.approx(-b["ci_high"], abs=1e-6)
    assert a["ci_low"] <= a["diff"] + 1e-9 <= a["ci_high"] + 2e-9


# ----------------------------------------------------------------------------- measure_campaign


def test_measure_recovers_a_known_effect_on_synthetic_ab_data() -> None:
    campaign, events = _ab_world(0)
    report = measure_campaign(campaign, Histories.from_frames(events), window_days=7, n_boot=200)
    o = report.overall
    eligible = campaign.filter(pl.col("recommended_channel") != "no_contact")
    assert o["n_treated"] + o["n_control"] == eligible.height
    assert o["n_control"] == int(eligible["control_group"].sum())
    assert o["conversion_ci_low"] <= 0.06 <= o["conversion_ci_high"]
    assert o["conversion_boot_low"] <= 0.06 <= o["conversion_boot_high"]
    assert o["conversion_p_value"] < 0.01
    # expected revenue effect = lift x E[amount] = 0.06 x 50
    assert o["revenue_ci_low"] <= 3.0 <= o["revenue_ci_high"]
    assert o["incremental_conversions"] == pytest.approx(o["conversion_diff"] * o["n_treated"])
    costs = {"email": 0.02, "sms": 0.08}
    n_by = eligible.filter(~pl.col("control_group"))["recommended_channel"].value_counts()
    expected_cost = sum(costs[ch] * k for ch, k in n_by.iter_rows())
    assert o["contact_cost"] == pytest.approx(expected_cost)
    assert o["incremental_revenue_per_cost"] == pytest.approx(o["incremental_revenue"] / expected_cost)
    segments = report.table.select("segment_type", "segment").rows()
    assert ("channel", "email") in segments
    assert ("channel", "sms") in segments
    assert [s for t, s in segments if t == "decile"] == [str(k) for k in range(1, 11)]
    per_channel = report.table.filter(pl.col("segment_type") == "channel")
    assert per_channel["n_treated"].sum() == o["n_treated"]
    # the SMD is (mean_t - mean_c) / sqrt((var_t + var_c) / 2) of the pre-period covariate
    cust = report.customers
    t = cust.filter(pl.col("group") == "treated")["pre_purchases"].to_numpy()
    c = cust.filter(pl.col("group") == "control")["pre_purchases"].to_numpy()
    smd = (t.mean() - c.mean()) / np.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2)
    row = report.balance.filter((pl.col("segment_type") == "overall") & (pl.col("covariate") == "pre_purchases"))
    assert row["smd"].item() == pytest.approx(smd)
    assert row["flagged"].item() == (abs(smd) > 0.1)
    assert row["smd_2se"].item() == pytest.approx(2 * np.sqrt(1 / t.size + 1 / c.size))


def test_customers_not_recommended_a_contact_are_not_compared() -> None:
    campaign, events = _ab_world(1, n=1500)
    report = measure_campaign(campaign, Histories.from_frames(events), window_days=7, n_boot=0)
    not_eligible = campaign.filter(pl.col("recommended_channel") == "no_contact")["customer_id"]
    assert not report.customers["customer_id"].is_in(not_eligible.implode()).any()
    # the purchase 30 days later is outside the 7-day window
    assert report.customers.filter(pl.col("customer_id") == "C000000")["revenue"].item() < 1000


def test_measure_is_deterministic() -> None:
    campaign, events = _ab_world(2, n=1500)
    a = measure_campaign(campaign, Histories.from_frames(events), window_days=7, n_boot=100, seed=5)
    b = measure_campaign(
        campaign.sample(fraction=1.0, shuffle=True, seed=1),
        Histories.from_frames(events),
        window_days=7,
        n_boot=100,
        seed=5,
    )
    assert a.table.equals(b.table)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_measure_gives_the_same_bytes_whatever_the_order_of_the_event_rows(seed: int) -> None:
    """Revenue and pre-period revenue are sums of float amounts: the order rows arrive in must not show."""
    campaign, events = _ab_world(3, n=300)
    rng = np.random.default_rng(seed)
    many = events.filter(pl.col("customer_id").is_in(events["customer_id"].unique().sort()[:20].implode()))
    extra = pl.concat([many] * 7).with_columns(  # many purchases per customer, amounts of every size
        pl.Series("amount", rng.choice([0.01, 0.1, 0.2, 0.3, 1e3, 12.34, 99.99], 7 * many.height))
    )
    rows = pl.concat([events, extra])
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=seed % 1000)
    a = measure_campaign(campaign, Histories.from_frames(rows), window_days=7, n_boot=20, seed=5)
    b = measure_campaign(campaign, Histories.from_frames(shuffled), window_days=7, n_boot=20, seed=5)
    assert a.customers.equals(b.customers)
    assert a.table.equals(b.table)


def test_balance_check_flags_a_non_random_control_group() -> None:
    campaign, events = _ab_world(3, n=3000, imbalance=1.0)
    report = measure_campaign(campaign, Histories.from_frames(events), window_days=7, n_boot=0)
    overall = report.balance.filter(pl.col("segment_type") == "overall")
    flagged = dict(zip(overall["covariate"], overall["flagged"], strict=True))
    assert flagged["pre_purchases"]
    assert flagged["pre_revenue"]
    assert "BALANCE WARNING" in report.to_text()


def test_missing_or_empty_control_group_is_a_clear_error() -> None:
    campaign, events = _ab_world(4, n=500)
    hist = Histories.from_frames(events)
    with pytest.raises(DataInsufficientError, match=r"no control_group column \(500 rows\).*--control-fraction"):
        measure_campaign(campaign.drop("control_group"), hist, window_days=7)
    with pytest.raises(DataInsufficientError, match=r"control group is empty.*--control-fraction 0\.1"):
        measure_campaign(campaign.with_columns(pl.lit(False).alias("control_group")), hist, window_days=7)
    # held-out customers who would not have been contacted anyway do not make a control group
    only_paused = campaign.with_columns(
        (pl.col("control_group") & (pl.col("recommended_channel") == "no_contact")).alias("control_group")
    )
    with pytest.raises(DataInsufficientError, match="control group is empty"):
        measure_campaign(only_paused, hist, window_days=7)
    with pytest.raises(ConfigError, match="window_days must be a positive integer"):
        measure_campaign(campaign, hist, window_days=0)
    with pytest.raises(SchemaError, match="repeat a customer_id"):
        measure_campaign(pl.concat([campaign, campaign.head(1)]), hist, window_days=7)


def test_metrics_are_logged_to_the_models_run(tmp_path: Path) -> None:
    import mlflow

    from omni_ml.tracking import resolve_tracking_uri, use_experiment

    campaign, events = _ab_world(5, n=800)
    use_experiment("omni_ml", resolve_tracking_uri())  # artifacts beside the test's store, not in ./mlruns
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", 0.7)
    lineage = campaign.with_columns(pl.lit(run.info.run_id).alias("run_id"))
    report = measure_campaign(lineage, Histories.from_frames(events), window_days=7, n_boot=0, log_mlflow=True)
    assert report.run_id == run.info.run_id
    logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged["auc"] == 0.7
    assert logged["measure.overall.conversion_diff"] == pytest.approx(report.overall["conversion_diff"])
    assert "measure.channel.email.n_treated" in logged
    # without lineage: a new run
    other = measure_campaign(campaign, Histories.from_frames(events), window_days=7, n_boot=0, log_mlflow=True)
    assert other.run_id not in (None, run.info.run_id)


def test_cli_measure_writes_the_report_and_exits_2_without_control(tmp_path: Path) -> None:
    from omni_ml.cli import app

    campaign, events = _ab_world(6, n=800)
    world = tmp_path / "world"
    world.mkdir()
    events.write_parquet(world / "events.parquet")
    campaign.write_parquet(tmp_path / "campaign.parquet")
    out = tmp_path / "report.csv"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "measure",
            str(tmp_path / "campaign.parquet"),
            str(world),
            "--window",
            "7",
            "--out",
            str(out),
            "--n-boot",
            "50",
            "--no-mlflow",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "treated vs" in result.output
    table = pl.read_csv(out)
    assert table.filter(pl.col("segment_type") == "overall").height == 1
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert pl.read_csv(tmp_path / "report_balance.csv").height == 9
    campaign.drop("control_group").write_parquet(tmp_path / "nocontrol.parquet")
    result = runner.invoke(
        app, ["measure", str(tmp_path / "nocontrol.parquet"), str(world), "--window", "7", "--no-mlflow"]
    )
    assert result.exit_code == 2
    assert "control-fraction" in result.output


def test_write_report_refuses_an_unknown_format(tmp_path: Path) -> None:
    campaign, events = _ab_world(7, n=400)
    report = measure_campaign(campaign, Histories.from_frames(events), window_days=7, n_boot=0)
    with pytest.raises(ConfigError, match=r"must end in \.csv or \.parquet"):
        write_report(report, tmp_path / "report.xlsx")


# ----------------------------------------------------------------------------- feedback round trip


def test_feedback_round_trip_appends_contacts_that_load_back(tmp_path: Path) -> None:
    campaign, events = _ab_world(8, n=600)
    world = tmp_path / "world"
    world.mkdir()
    events.write_parquet(world / "events.parquet")
    old = pl.DataFrame(
        {
            "customer_id": ["C000001"],
            "timestamp": [AS_OF - dt.timedelta(days=40)],
            "channel": ["email"],
            "campaign_id": ["old"],
            "cost": [0.02],
            "assignment_probability": [0.5],
        }
    )
    old.write_parquet(world / "contacts.parquet")
    sent = feedback_contacts(campaign, campaign_id="spring", control_fraction=0.3)
    planned = campaign.filter(pl.col("best_channel") != "no_contact")
    assert sent.height == planned.height
    assert set(sent["customer_id"]) == set(planned["customer_id"])
    assert not sent["customer_id"].is_in(campaign.filter("control_group")["customer_id"].implode()).any()
    assert (sent["assignment_probability"] == 0.7).all()
    append_contacts(world, sent)
    hist = load_histories(world)
    assert hist.contacts is not None
    contacts = hist.contacts.collect()
    assert contacts.height == 1 + sent.height
    spring = contacts.filter(pl.col("campaign_id") == "spring")
    assert (spring["timestamp"] == AS_OF).all()
    assert spring.join(planned, on="customer_id").filter(pl.col("channel") != pl.col("best_channel")).height == 0
    with pytest.raises(SchemaError, match="campaign_id 'spring' is already in"):
        append_contacts(world, sent)
    assert pl.read_parquet(world / "contacts.parquet").height == 1 + sent.height


def test_a_log_of_sends_replaces_the_plan_and_must_match_it() -> None:
    campaign, _ = _ab_world(9, n=300)
    planned = campaign.filter(pl.col("best_channel") != "no_contact")
    first = planned.head(3)
    sends = first.select("customer_id", pl.col("best_channel").alias("channel"), pl.lit(2.5).alias("cost"))
    rows = feedback_contacts(campaign, campaign_id="c", sends=sends)
    assert rows["customer_id"].to_list() == sorted(first["customer_id"].to_list())
    assert (rows["cost"] == 2.5).all()
    share = float(campaign["control_group"].mean())  # type: ignore[arg-type]
    assert rows["assignment_probability"][0] == pytest.approx(1 - share)
    held = campaign.filter("control_group").head(1)
    bad = held.select("customer_id", pl.lit("email").alias("channel"))
    with pytest.raises(SchemaError, match=r"held out: control group"):
        feedback_contacts(campaign, campaign_id="c", sends=bad)
    with pytest.raises(SchemaError, match="is not in the campaign file"):
        feedback_contacts(
            campaign, campaign_id="c", sends=pl.DataFrame({"customer_id": ["nobody"], "channel": ["sms"]})
        )


@pytest.fixture(scope="module")
def simulated_campaign(
    small_world: Path, campaign_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The small world's campaign file (40% control) and its future through continue_world."""
    from omni_ml.scoring import score
    from omni_ml.simulate import continue_world

    out = tmp_path_factory.mktemp("measure") / "campaign.parquet"
    score(small_world, model=campaign_model_path, as_of="2025-01-01", out=out, reasons=0, control_fraction=0.4, seed=3)
    people = pl.read_parquet(small_world / "customers.parquet")["customer_id"].implode()
    campaign = pl.read_parquet(out).filter(pl.col("customer_id").is_in(people))  # anon- ids cannot be addressed
    future = continue_world(small_world, campaign.select("customer_id", pl.col("best_channel").alias("channel")))
    return campaign, future


def test_measure_recovers_the_simulators_true_effect_through_continue_world(
    small_world: Path, simulated_campaign: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    campaign, future = simulated_campaign
    # the campaign file reports a customer value (expected revenue over the horizon)
    assert campaign["customer_value"].null_count() == 0
    assert (campaign["customer_value"] >= 0).all()
    assert spearman_positive(campaign["propensity"], campaign["customer_value"])
    report = measure_campaign(campaign, Histories.from_frames(future), window_days=7, n_boot=200)
    o = report.overall
    eligible = campaign.filter(pl.col("recommended_channel") != "no_contact").select(
        "customer_id", pl.col("recommended_channel").alias("channel")
    )
    truth = eligible.join(
        pl.read_parquet(small_world / "truth" / "channel_response.parquet"), on=["customer_id", "channel"]
    )
    assert truth.height == eligible.height
    effect = float((truth["p_if_contacted"] - truth["p_if_not"]).mean())  # type: ignore[arg-type]
    assert o["n_treated"] + o["n_control"] == eligible.height
    assert o["conversion_ci_low"] <= effect <= o["conversion_ci_high"]


def test_fed_back_contacts_become_channel_training_units_with_their_probability(
    small_histories: Histories, simulated_campaign: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    from omni_ml.models.channel import ChannelConfig, channel_training_data

    campaign, future = simulated_campaign
    world = tmp_path / "next"
    world.mkdir()
    events = small_histories.events.collect()
    pl.concat([events, future.select(events.columns)]).write_parquet(world / "events.parquet")
    assert small_histories.contacts is not None
    small_histories.contacts.collect().write_parquet(world / "contacts.parquet")
    assert small_histories.consents is not None
    small_histories.consents.collect().write_parquet(world / "consents.parquet")
    sent = feedback_contacts(campaign, campaign_id="measured", control_fraction=0.4)
    append_contacts(world, sent)
    end = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    data = channel_training_data(load_histories(world), end + dt.timedelta(days=14), ChannelConfig(lookback_days=14))
    units = data.keys.filter(pl.col("cutoff") == end)
    contacted = units.filter(pl.col("arm") != "no_contact")
    # every contact sent by the campaign is a training unit on its channel, with P = 1 - control fraction
    assert contacted.height == sent.height
    assert np.allclose(contacted["assignment_probability"].to_numpy(), 0.6)
    arms = contacted.join(sent, on="customer_id").filter(pl.col("arm") != pl.col("channel"))
    assert arms.height == 0


def spearman_positive(a: pl.Series, b: pl.Series) -> bool:
    from scipy.stats import spearmanr

    return bool(spearmanr(a.to_numpy(), b.to_numpy())[0] > 0.5)


def test_explored_rows_are_left_out_of_the_treated_group() -> None:
    """Explored rows got a random action (here: one that hurts); the policy's effect is measured without them."""
    rng = np.random.default_rng(11)
    n, p0, lift = 12_000, 0.10, 0.06
    ids = [f"C{i:06d}" for i in range(n)]
    rec = np.where(rng.random(n) < 0.5, "no_contact", "email")
    held = rng.random(n) < 0.3
    explored = ~held & (rec != "no_contact") & (rng.random(n) < 0.3)
    p = p0 + lift * (~held & (rec != "no_contact") & ~explored) - 0.05 * explored
    buys = rng.random(n) < p
    campaign = pl.DataFrame(
        {
            "customer_id": ids,
            "as_of": [AS_OF] * n,
            "best_channel": np.where(held, "no_contact", np.where(explored, "sms", rec)),
            "recommended_channel": rec,
            "control_group": held,
            "rule": np.where(explored, "explore", np.where(held, "control_group", "best_value")),
        }
    )
    events = pl.DataFrame(
        {
            "customer_id": [ids[i] for i in np.flatnonzero(buys)],
            "timestamp": [AS_OF + dt.timedelta(days=1)] * int(buys.sum()),
            "amount": 50.0,
            "event_type": "purchase",
            "channel": "web",
        }
    )
    hist = Histories.from_frames(events)
    report = measure_campaign(campaign, hist, window_days=7, n_boot=0)
    o = report.overall
    assert report.explored_left_out == int(explored.sum())
    assert o["n_treated"] == int((~held & (rec != "no_contact") & ~explored).sum())
    assert o["n_control"] == int((held & (rec != "no_contact")).sum())
    assert not report.customers["customer_id"].is_in([ids[i] for i in np.flatnonzero(explored)]).any()
    assert o["conversion_ci_low"] <= lift <= o["conversion_ci_high"]
    assert "explored rows" in report.to_text()
    # a file without the rule column cannot tell explored rows apart: the estimate mixes in their action
    mixed = measure_campaign(campaign.drop("rule"), hist, window_days=7, n_boot=0)
    assert mixed.explored_left_out == 0
    assert mixed.overall["conversion_diff"] < o["conversion_diff"] - 0.02
