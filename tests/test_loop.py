"""The closed loop (issue 20): feedback, logged pauses, continued worlds, exact importance weights."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from omni_ml.cli import app
from omni_ml.data import Histories, load_histories
from omni_ml.evaluation import off_policy_value
from omni_ml.exceptions import ConfigError, ConsentError, SchemaError
from omni_ml.feedback import feedback
from omni_ml.policy import PolicyConfig, history_facts
from omni_ml.simulate import continue_histories, continue_world

AS_OF = "2025-01-01"
END = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
VALUE = 40.0


# ----------------------------------------------------------------------------- logged pauses


def test_logged_pauses_are_not_contact_pressure() -> None:
    ts = [dt.datetime(2025, 1, d, tzinfo=dt.UTC) for d in (2, 3, 4)]
    events = pl.DataFrame({"customer_id": ["a", "b"], "timestamp": ts[:2], "amount": [1.0, 2.0]})
    contacts = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "timestamp": ts,
            "channel": ["email", "no_contact", "no_contact"],
            "assignment_probability": [0.9, 0.1, 0.1],
        }
    )
    hist = Histories.from_frames(events, contacts=contacts)
    facts = history_facts(hist, dt.datetime(2025, 1, 5, tzinfo=dt.UTC), config=PolicyConfig()).sort("customer_id")
    assert facts["contacts_7d"].to_list() == [1, 0]
    assert facts["days_since_contact"][1] is None  # a pause is not a contact: no cool-down
    assert hist.sent_contacts is not None
    assert hist.sent_contacts.collect().height == 1


# ----------------------------------------------------------------------------- feedback


def test_feedback_adds_sends_and_randomised_pauses_once(explored: Path, small_world: Path, tmp_path: Path) -> None:
    everyone = pl.read_parquet(explored)
    persons = pl.read_parquet(small_world / "customers.parquet")["customer_id"]
    campaign = everyone.filter(pl.col("customer_id").is_in(persons.implode()))  # anon- ids are not written
    first = feedback(explored, small_world, tmp_path / "w1")
    contacts = pl.read_parquet(tmp_path / "w1" / "contacts.parquet")
    added = contacts.filter(pl.col("campaign_id") == "cmp-20250101")
    sends = campaign.filter(pl.col("best_channel") != "no_contact")
    pauses = campaign.filter(
        (pl.col("best_channel") == "no_contact") & (pl.col("control_group") | (pl.col("rule") == "explore"))
    )
    assert added.height == sends.height + pauses.height == sum(first.added.values())
    strangers = everyone.filter(~pl.col("customer_id").is_in(persons.implode()))
    assert first.skipped_unknown > 0
    assert (strangers["best_channel"] == "no_contact").all()  # nobody unknown was contacted
    assert added.filter(pl.col("channel") == "no_contact").height == pauses.height > 0
    assert (added.filter(pl.col("channel") == "no_contact")["cost"] == 0.0).all()
    joined = added.join(campaign.select("customer_id", "assignment_probability"), on="customer_id", suffix="_file")
    assert (joined["assignment_probability"] == joined["assignment_probability_file"]).all()
    assert (added["timestamp"] == END).all()
    before = pl.read_parquet(small_world / "contacts.parquet")
    assert contacts.height == before.height + added.height
    assert (tmp_path / "w1" / "truth" / "world.json").exists()  # a full copy

    again = feedback(explored, tmp_path / "w1", tmp_path / "w1")  # in place: nothing new
    assert sum(again.added.values()) == 0
    assert again.already_present == added.height
    assert pl.read_parquet(tmp_path / "w1" / "contacts.parquet").height == contacts.height
    hist = load_histories(tmp_path / "w1")
    assert hist.sent_contacts is not None
    assert hist.sent_contacts.collect().height == before.height + sends.height


def test_feedback_with_a_sends_log_adds_only_those_sends(explored: Path, small_world: Path, tmp_path: Path) -> None:
    campaign = pl.read_parquet(explored)
    sends = campaign.filter(pl.col("best_channel") != "no_contact").head(5)
    log = sends.select("customer_id", pl.col("best_channel").alias("channel")).with_columns(
        timestamp=pl.lit(dt.datetime(2025, 1, 1, 9, 30, tzinfo=dt.UTC))
    )
    log.write_csv(tmp_path / "sends.csv")
    summary = feedback(explored, small_world, tmp_path / "w", sent=tmp_path / "sends.csv", campaign_id="jan")
    added = pl.read_parquet(tmp_path / "w" / "contacts.parquet").filter(pl.col("campaign_id") == "jan")
    assert added.filter(pl.col("channel") != "no_contact").height == 5
    assert sum(n for c, n in summary.added.items() if c != "no_contact") == 5
    assert (added.filter(pl.col("channel") != "no_contact")["timestamp"].dt.hour() == 9).all()


def test_feedback_refuses_bad_input_with_exit_2_and_writes_nothing(
    explored: Path, small_world: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    campaign = pl.read_parquet(explored)
    out = tmp_path / "out"

    def run(*args: str) -> str:
        result = runner.invoke(app, ["feedback", *args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert not out.exists()
        return " ".join(result.output.split())

    campaign.drop("assignment_probability").write_parquet(tmp_path / "old.parquet")
    assert "assignment_probability" in run(str(tmp_path / "old.parquet"), str(small_world))
    stranger = campaign.head(3).select("customer_id", pl.lit("email").alias("channel"), pl.lit(END).alias("timestamp"))
    stranger.with_columns(pl.lit("X999").alias("customer_id")).write_parquet(tmp_path / "s1.parquet")
    text = run(str(explored), str(small_world), "--sent", str(tmp_path / "s1.parquet"))
    assert "column customer_id" in text
    assert "--sent" in text
    sent = campaign.filter(pl.col("best_channel") != "no_contact").head(2)
    sent.select("customer_id", pl.lit("fax").alias("channel"), pl.lit(END).alias("timestamp")).write_parquet(
        tmp_path / "s2.parquet"
    )
    assert "column channel" in run(str(explored), str(small_world), "--sent", str(tmp_path / "s2.parquet"))
    foreign = campaign.with_columns(("Z" + pl.col("customer_id")).alias("customer_id"))
    foreign.write_parquet(tmp_path / "foreign.parquet")
    assert "are known to" in run(str(tmp_path / "foreign.parquet"), str(small_world))
    with pytest.raises(ConfigError, match="already exists"):
        feedback(explored, small_world, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ----------------------------------------------------------------------------- continued worlds


def test_continuing_with_no_contacts_replays_the_future_events(small_world: Path, tmp_path: Path) -> None:
    ids = pl.read_parquet(small_world / "customers.parquet")["customer_id"]
    pause = pl.DataFrame({"customer_id": ids, "best_channel": "no_contact", "assignment_probability": 1.0})
    new = continue_histories(small_world, pause, 14, tmp_path / "w14")
    events = pl.read_parquet(new / "events.parquet")
    old = pl.read_parquet(small_world / "events.parquet")
    assert events.filter(pl.col("timestamp") < END).equals(old)
    cols = ["timestamp", "channel", "event_type", "amount", "product_id", "category", "campaign_id"]
    window = events.filter(pl.col("timestamp") >= END).select(cols).sort(cols)
    future = pl.read_parquet(small_world / "truth" / "future_events.parquet")
    expected = future.filter(pl.col("timestamp") < END + dt.timedelta(days=14)).select(cols).sort(cols)
    assert window.height > 0
    assert window.equals(expected)
    assert events["timestamp"].max() < END + dt.timedelta(days=14)
    truth = json.loads((new / "truth" / "world.json").read_text())["continuation"]
    assert truth["end"] == "2025-01-15"
    assert pl.read_parquet(new / "truth" / "future_events.parquet")["timestamp"].min() >= END + dt.timedelta(days=14)
    assert pl.read_parquet(new / "truth" / "propensity.parquet").height == ids.len()
    load_histories(new)  # the continued world honours the input contract


def test_continued_campaign_is_logged_and_consent_is_checked(explored: Path, small_world: Path, tmp_path: Path) -> None:
    campaign = pl.read_parquet(explored)
    new = continue_histories(small_world, campaign, 7, tmp_path / "w7")
    contacts = pl.read_parquet(new / "contacts.parquet").filter(pl.col("timestamp") >= END)
    sent = campaign.filter(pl.col("best_channel") != "no_contact")
    assert contacts.height == sent.height
    joined = contacts.join(sent, on="customer_id")
    assert (joined["channel"] == joined["best_channel"]).all()
    assert (joined["assignment_probability"] == joined["assignment_probability_right"]).all()
    assert (contacts["campaign_id"] == "cmp-20250101").all()
    # feedback on the continuation adds only the randomised pauses: the sends are already logged
    summary = feedback(explored, new, tmp_path / "w7f")
    assert set(summary.added) == {"no_contact"}
    assert summary.already_present == sent.height
    # a second cycle continues the continuation
    ids = campaign["customer_id"]
    pause = pl.DataFrame({"customer_id": ids, "channel": "no_contact"})
    second = continue_histories(tmp_path / "w7f", pause, 7, tmp_path / "w14")
    meta = json.loads((second / "truth" / "world.json").read_text())["continuation"]
    assert [c["date"] for c in meta["campaigns"]] == ["2025-01-01", "2025-01-08"]
    kept = pl.read_parquet(second / "contacts.parquet")
    assert kept.filter(pl.col("channel") == "no_contact").height == summary.added["no_contact"]
    response = pl.read_parquet(small_world / "truth" / "channel_response.parquet")
    refused = response.filter(~pl.col("consented") & (pl.col("channel") == "sms")).head(1)
    bad = refused.select("customer_id", pl.col("channel"))
    with pytest.raises(ConsentError, match="without consent"):
        continue_histories(small_world, bad, 7, tmp_path / "bad")
    with pytest.raises(ConfigError, match="--days"):
        continue_histories(small_world, pause, 0, tmp_path / "bad")
    with pytest.raises(SchemaError, match="not customers of this world"):
        continue_histories(
            small_world, pl.DataFrame({"customer_id": ["nobody"], "channel": ["email"]}), 7, tmp_path / "x"
        )
    assert not (tmp_path / "bad").exists()


def test_cli_continues_a_world_and_names_missing_flags(explored: Path, small_world: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["simulate", "--out", str(tmp_path / "next"), "--continue-from", str(small_world)]
    missing = runner.invoke(app, [*base, "--days", "7"])
    assert missing.exit_code == 2
    assert "--campaign" in missing.output
    absent = runner.invoke(app, [*base, "--campaign", str(tmp_path / "nope.parquet"), "--days", "7"])
    assert absent.exit_code == 2
    assert "nope.parquet': no such file" in " ".join(absent.output.split())
    assert not (tmp_path / "next").exists()
    ok = runner.invoke(app, [*base, "--campaign", str(explored), "--days", "7"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "next" / "truth" / "channel_response.parquet").exists()


# ----------------------------------------------------------------------------- exact importance weights


def _rewards(campaign: pl.DataFrame, channel: str, future: pl.DataFrame) -> np.ndarray:
    """Value of each customer's 7-day outcome under the actions in ``channel``: converted x 40 - cost."""
    bought = (
        future.filter((pl.col("event_type") == "purchase") & (pl.col("timestamp") < END + dt.timedelta(days=7)))
        .select("customer_id")
        .unique()
    )
    cost = PolicyConfig().channel_costs
    frame = campaign.with_columns(pl.col("customer_id").is_in(bought["customer_id"].implode()).alias("y"))
    price = frame[channel].replace_strict(dict(cost), default=0.0, return_dtype=pl.Float64)
    return frame["y"].cast(pl.Float64).to_numpy() * VALUE - price.to_numpy()


def test_off_policy_value_from_the_file_matches_the_realised_value(explored: Path, small_world: Path) -> None:
    """IPS with the file's assignment_probability predicts what a policy realises when it is run."""
    persons = pl.read_parquet(small_world / "customers.parquet")["customer_id"]
    campaign = pl.read_parquet(explored).filter(pl.col("customer_id").is_in(persons.implode())).sort("customer_id")
    logged = continue_world(small_world, campaign.select("customer_id", pl.col("best_channel").alias("channel")))
    reward = _rewards(campaign, "best_channel", logged)
    for target in ("recommended_channel", "pause"):
        actions = campaign["recommended_channel"] if target != "pause" else pl.Series(["no_contact"] * campaign.height)
        ope = off_policy_value(
            campaign["best_channel"].to_numpy(),
            reward,
            actions.to_numpy(),
            logging_probability=campaign["assignment_probability"].to_numpy(),
            n_bootstrap=400,
            seed=0,
        )
        run = continue_world(small_world, campaign.select("customer_id", actions.alias("channel")))
        realised = float(_rewards(campaign.with_columns(actions.alias("__a")), "__a", run).mean())
        low, high = ope.ips_ci
        assert low <= realised <= high, (target, ope.ips, ope.ips_ci, realised)


# ----------------------------------------------------------------------------- the loop


def test_loop_runs_policies_in_their_own_worlds_under_the_same_rules(small_world: Path, tmp_path: Path) -> None:
    from omni_ml.loop import LoopConfig, run_loop, summarise, truth_value

    config = LoopConfig(cycles=2, days=7, policies=("always_email", "oracle"), n_boot=50, seed=3)
    table = run_loop(small_world, tmp_path, config)
    assert table.height == 4
    assert table["as_of"].to_list() == ["2025-01-01", "2025-01-01", "2025-01-08", "2025-01-08"]
    assert (table["consent_breaks"] == 0).all()
    assert (table["pressure_breaks"] == 0).all()
    oracle = table.filter(pl.col("policy") == "oracle")
    email = table.filter(pl.col("policy") == "always_email")
    assert (oracle["share_of_oracle"] == 1.0).all()
    assert (oracle["value_policy"] >= email["value_policy"]).all()  # the truth-optimal decisions win
    assert (table["exploration_cost"] == 0.0).all()  # no exploration outside the learned policy
    truth = pl.read_parquet(small_world / "truth" / "channel_response.parquet")
    first = pl.read_parquet(tmp_path / "always_email" / "campaign_1.parquet")
    assert truth_value(first, truth, 40.0, "recommended_channel") / truth["customer_id"].n_unique() == pytest.approx(
        email["value_policy"][0]
    )
    contacts = pl.read_parquet(tmp_path / "always_email" / "world_2" / "contacts.parquet")
    assert set(contacts.filter(pl.col("timestamp") >= END)["campaign_id"]) == {"cmp-20250101", "cmp-20250108"}
    assert summarise(table).height == 2
