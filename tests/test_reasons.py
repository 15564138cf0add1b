"""Issue 23: reasons a marketer can act on, checked on the small world's campaign table.

One reason per family, against the baseline of the scoring moment (no calendar reason), numbers that are
the customer's own values, contributions in pp that add up, channel reasons from the customer's history
with the channel or the cost/consent rule, never circular; stable codes listed in ``reason_codes``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.campaign import CampaignModel
from omni_ml.data import Histories, load_histories
from omni_ml.explanation import (
    TreeShap,
    call_outcomes,
    explain_channel_reasons,
    explain_reasons,
    reason_codes,
)
from omni_ml.explanation._said import MISSING_WEIGHT
from omni_ml.features import build_features
from omni_ml.identity import resolve_identities

AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
K = 3
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@pytest.fixture(scope="module")
def model(campaign_model_path: Path) -> CampaignModel:
    return CampaignModel.load(campaign_model_path)


@pytest.fixture(scope="module")
def resolved(small_world: Path) -> Histories:
    return resolve_identities(load_histories(small_world), as_of=AS_OF).collect()


@pytest.fixture(scope="module")
def campaign(model: CampaignModel, resolved: Histories) -> pl.DataFrame:
    """The whole small world's campaign table with 3 + 3 reasons."""
    return model.score(resolved, AS_OF, reasons=K)


@pytest.fixture(scope="module")
def features(model: CampaignModel, resolved: Histories) -> pl.DataFrame:
    return build_features(resolved, AS_OF, feature_set=model.feature_set_).sort("customer_id")


@pytest.fixture(scope="module")
def why(model: CampaignModel, features: pl.DataFrame) -> pl.DataFrame:
    """explain_reasons of every customer: the campaign's reasons with the feature each one quotes."""
    return explain_reasons(
        model.propensity_,
        features.drop("customer_id", "cutoff"),
        feature_set=model.feature_set_,
        top_k=K,
        keys=features.select("customer_id"),
        reference=model.reason_reference_,
    )


@pytest.fixture(scope="module")
def channel_why(model: CampaignModel, resolved: Histories, campaign: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """explain_channel_reasons of every customer and the channel model's input rows."""
    from omni_ml.models.channel import channel_features

    ids = campaign["customer_id"]
    who, X = channel_features(model.channel_model_, resolved, AS_OF, customers=ids)
    assert who.to_list() == ids.to_list()
    out = explain_channel_reasons(
        model.channel_model_,
        X,
        campaign["best_channel"],
        scores=campaign.select(f"score_{c}" for c in model.channels),
        costs=dict(model.policy_.channel_costs),
        top_k=K,
        keys=ids.to_frame(),
        reference=model.reason_reference_,
        calls=call_outcomes(resolved, AS_OF, ids),  # the campaign file states call-history facts too
    )
    return out, X


def _slots(frame: pl.DataFrame, prefix: str) -> list[str]:
    return [f"{prefix}_{i}" for i in range(1, K + 1)]


# ------------------------------------------------------------------------------ the campaign table


def test_campaign_reasons_are_the_explained_ones_23(campaign: pl.DataFrame, why: pl.DataFrame) -> None:
    assert campaign["customer_id"].to_list() == why["customer_id"].to_list()
    for i in range(1, K + 1):
        assert campaign[f"reason_{i}"].to_list() == why[f"reason_{i}"].to_list()
        assert campaign[f"reason_code_{i}"].to_list() == why[f"reason_code_{i}"].to_list()
    assert campaign["reason_1"].null_count() == 0


def test_no_calendar_or_as_of_constant_reason_in_any_row_23(
    campaign: pl.DataFrame, why: pl.DataFrame, features: pl.DataFrame, model: CampaignModel
) -> None:
    calendar = [n for n in model.feature_set_.names if model.feature_set_.family_of(n) == "time_of_year"]
    assert calendar, "the model must have calendar features for this test to mean something"
    constant = [c for c in features.drop("customer_id", "cutoff").columns if features[c].n_unique() == 1]
    assert set(calendar) <= set(constant)
    quoted = set(pl.concat([why[c] for c in _slots(why, "reason_feature")]).drop_nulls().to_list())
    assert not quoted & set(constant)
    texts = pl.concat([campaign[c] for c in [*_slots(campaign, "reason"), *_slots(campaign, "channel_reason")]])
    assert not texts.drop_nulls().str.contains("of the year|seasonal position").any()


def test_no_two_reasons_of_a_row_share_a_family_23(campaign: pl.DataFrame, why: pl.DataFrame) -> None:
    families = why.select(_slots(why, "reason_family")).rows()
    for row in families:
        present = [f for f in row if f is not None]
        assert len(present) == len(set(present))
    # the codes say the same: one family prefix per row (levels are the last word, NOT_GRANTED the last two)
    for row in campaign.select(_slots(campaign, "reason_code")).rows():
        prefixes = [re.sub(r"_(NOT_GRANTED|[A-Z]+)$", "", c) for c in row if c is not None]
        assert len(prefixes) == len(set(prefixes)), row


def test_reasons_add_up_to_propensity_minus_baseline_23(campaign: pl.DataFrame, model: CampaignModel) -> None:
    parts = campaign.select(pl.sum_horizontal(pl.col(_slots(campaign, "reason_pp")).fill_null(0.0))).to_series()
    total = (parts + campaign["reason_other_pp"]).to_numpy() / 100.0
    expected = (campaign["propensity"] - campaign["reason_baseline"]).to_numpy()
    np.testing.assert_allclose(total, expected, atol=1e-6, rtol=0)
    # one baseline for everyone scored at this moment: it holds what they share
    assert campaign["reason_baseline"].n_unique() == 1
    # the sign in the text is the sign of the number
    for i in range(1, K + 1):
        rows = campaign.filter(pl.col(f"reason_{i}").is_not_null())
        said = rows[f"reason_{i}"].str.extract(r"\(([+-])[^()]*pp\)$").to_list()
        sign = ["+" if v > 0 else "-" for v in rows[f"reason_pp_{i}"].to_list()]
        assert said == sign


def test_every_contacted_row_has_a_channel_reason_none_circular_23(campaign: pl.DataFrame) -> None:
    contacted = campaign.filter(pl.col("best_channel") != "no_contact")
    paused = campaign.filter(pl.col("best_channel") == "no_contact")
    assert contacted.height > 0
    assert paused.height > 0
    assert contacted["channel_reason_1"].null_count() == 0
    assert paused.select(pl.col(_slots(campaign, "channel_reason")).is_null().all()).row(0) == (True,) * K
    texts = pl.concat([contacted[c] for c in _slots(campaign, "channel_reason")]).drop_nulls()
    assert not texts.str.contains(r"(?i)contact(ed)? (by|on|via) ").any()
    assert not texts.str.contains(r"resp_|arm|\{|=").any()
    # a history reason is about the chosen channel (or any channel), never another channel's history
    for row in contacted.select("best_channel", *_slots(campaign, "channel_reason_code")).iter_rows():
        channel, codes = row[0], [c for c in row[1:] if c is not None]
        for code in codes:
            if code.endswith(("_ENGAGED", "_RESPONDED")) and not code.startswith("ANY_"):
                assert code.startswith(channel.upper() + "_"), (channel, code)


def test_channel_reasons_add_up_to_the_uplift_23(
    campaign: pl.DataFrame, channel_why: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    out, _ = channel_why
    contacted = out.filter(pl.col("channel").is_not_null() & (pl.col("channel") != "no_contact"))
    parts = contacted.select(pl.sum_horizontal(pl.col(_slots(out, "channel_reason_pp")).fill_null(0.0))).to_series()
    total = (parts + contacted["channel_reason_other_pp"]).to_numpy() / 100.0
    np.testing.assert_allclose(total, contacted["uplift"].to_numpy(), atol=1e-6, rtol=0)
    mine = campaign.filter(pl.col("best_channel") != "no_contact")
    for i in range(1, K + 1):
        assert mine[f"channel_reason_{i}"].to_list() == contacted[f"channel_reason_{i}"].to_list()
    # only reasons that raise the uplift are shown
    shown = pl.concat([contacted[c] for c in _slots(out, "channel_reason_pp")]).drop_nulls()
    assert (shown > 0).all()


def _close(text: str, value: float) -> bool:
    """Some number in ``text`` is ``value`` as shown (rounded to the digits the text shows)."""
    for token in _NUMBER.findall(text):
        shown = float(token.replace(",", ""))
        decimals = len(token.split(".")[1]) if "." in token else 0
        if abs(shown - value) <= 0.5 * 10.0**-decimals + 1e-9:
            return True
    return False


def _quotes(body: str, value: float, named: tuple[str, ...] | None) -> bool:
    """``body`` quotes ``value``: as a number, or as the name of the category / flag it codes."""
    if named:
        word = named[int(value)] if 0 <= int(value) < len(named) else "other"
        return body.endswith((f" {word}", f" {word})")) or f" {word} " in body
    return _close(body, value)


def test_each_quoted_number_is_the_customers_feature_value_23(
    why: pl.DataFrame, features: pl.DataFrame, channel_why: tuple[pl.DataFrame, pl.DataFrame], model: CampaignModel
) -> None:
    """Over every row of the small world: the number a reason quotes is that customer's value."""
    from omni_ml.features._featureset import _levels

    levels = {n: _levels(model.feature_set_.feature(n)) for n in model.feature_set_.names}
    checked = 0
    for i in range(1, K + 1):
        rows = why.select("customer_id", f"reason_{i}", f"reason_feature_{i}").join(
            features, on="customer_id", how="left", maintain_order="left"
        )
        for row in rows.filter(pl.col(f"reason_{i}").is_not_null()).iter_rows(named=True):
            body = row[f"reason_{i}"].rsplit(" (", 1)[0]
            value = row[row[f"reason_feature_{i}"]]
            if value is None or value != value:
                # missing: said as what we know, in the feature's own words or ours
                missing = model.feature_set_.feature(row[f"reason_feature_{i}"]).missing
                ours = {"no activity recorded yet", "new customer: no purchase yet", "no customer record on file"}
                assert body == missing or body in ours or re.fullmatch(r"no [a-z ]+ on file", body), body
                continue
            assert _quotes(body, float(value), levels.get(row[f"reason_feature_{i}"])), (body, value)
            checked += 1
    out, X = channel_why
    X = X.with_columns(pl.Series("customer_id", out["customer_id"]))
    for i in range(1, K + 1):
        rows = out.select("customer_id", f"channel_reason_{i}", f"channel_reason_feature_{i}").join(
            X, on="customer_id", how="left", maintain_order="left"
        )
        for row in rows.filter(pl.col(f"channel_reason_feature_{i}").is_not_null()).iter_rows(named=True):
            quoted = row[f"channel_reason_feature_{i}"]
            if quoted in ("policy", "calls"):
                continue
            body = row[f"channel_reason_{i}"].rsplit(" (", 1)[0]
            numbers = [float(t.replace(",", "")) for t in _NUMBER.findall(body)]
            for name in quoted.split(";"):
                assert _quotes(body, float(row[name]), levels.get(name)), (body, name, row[name])
            if ";" in quoted:  # "opened 4 of 6": the two numbers in the order of the features
                first, second = (float(row[n]) for n in quoted.split(";"))
                assert numbers[:2] == [first, second], (body, quoted)
            checked += 1
    assert checked > 1000


def test_cost_and_consent_reasons_quote_the_policy_23(campaign: pl.DataFrame, model: CampaignModel) -> None:
    costs = dict(model.policy_.channel_costs)
    found = 0
    for row in campaign.filter(pl.col("best_channel") != "no_contact").iter_rows(named=True):
        for i in range(1, K + 1):
            text, code = row[f"channel_reason_{i}"], row[f"channel_reason_code_{i}"]
            if code == "COST_LOWER":
                channel = row["best_channel"]
                assert text.startswith(f"{channel.replace('_', ' ')} is allowed and costs {costs[channel]:.2f}; ")
                other = text.split("; ", 1)[1].removesuffix(" would cost " + text.rsplit(" ", 1)[1])
                other_channel = other.replace(" ", "_")
                assert row[f"score_{other_channel}"] is not None  # the alternative was allowed
                assert costs[other_channel] > costs[channel]
                found += 1
            elif code == "ONLY_CONSENT":
                allowed = [c for c in model.channels if row[f"score_{c}"] is not None]
                assert allowed == [row["best_channel"]]
                found += 1
    assert found > 0


def test_missing_data_ranks_below_behaviour_of_similar_size_23(why: pl.DataFrame, features: pl.DataFrame) -> None:
    joined = why.join(features, on="customer_id", how="left", maintain_order="left")
    said_missing = 0
    for row in joined.iter_rows(named=True):
        ranks = []
        for i in range(1, K + 1):
            name = row[f"reason_feature_{i}"]
            if name is None:
                break
            value = row[name]
            missing = value is None or value != value
            said_missing += missing
            ranks.append(abs(row[f"reason_pp_{i}"]) * (MISSING_WEIGHT if missing else 1.0))
        assert all(a >= b - 1e-12 for a, b in zip(ranks, ranks[1:], strict=False)), row["customer_id"]
    assert said_missing > 0
    texts = pl.concat([why[c] for c in _slots(why, "reason")]).drop_nulls()
    assert not texts.str.contains(r"unknown \(").any()  # said as what we know: "no region on file"


def test_every_code_is_listed_in_the_reason_codes_table_23(campaign: pl.DataFrame, model: CampaignModel) -> None:
    table = reason_codes(model.channels)
    assert table["code"].is_unique().all()
    listed = set(table["code"].to_list())
    used = pl.concat(
        [campaign[c] for c in [*_slots(campaign, "reason_code"), *_slots(campaign, "channel_reason_code")]]
    ).drop_nulls()
    assert set(used.unique().to_list()) <= listed
    assert used.str.contains(r"^[A-Z_]+$").all()


def test_reasons_of_a_customer_do_not_depend_on_who_else_is_scored_23(
    model: CampaignModel, features: pl.DataFrame, why: pl.DataFrame
) -> None:
    part = features.gather(list(range(0, features.height, 7)))
    alone = explain_reasons(
        model.propensity_,
        part.drop("customer_id", "cutoff"),
        feature_set=model.feature_set_,
        top_k=K,
        keys=part.select("customer_id"),
        reference=model.reason_reference_,
    )
    assert alone.equals(why.gather(list(range(0, features.height, 7))))


# ------------------------------------------------------------------------------ units


def _calendar_model(seed: int) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 1500
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(1, 366, n).astype(float)])
    y = (X[:, 0] + np.sin(X[:, 2] / 58.0) * X[:, 1] + rng.normal(size=n) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": seed}, lgb.Dataset(X, y), 40)
    return booster, X


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), day=st.integers(1, 365))
def test_conditioned_treeshap_is_exact_and_gives_the_fixed_feature_nothing_23(seed: int, day: int) -> None:
    booster, X = _calendar_model(seed % 5)
    X = X[:200].copy()
    X[:, 2] = float(day)
    ts = TreeShap(booster, fixed={"Column_2": float(day)})
    phi = ts.shap_values(X)
    np.testing.assert_allclose(phi.sum(axis=1) + ts.expected_value, booster.predict(X, raw_score=True), atol=1e-9)
    assert np.all(phi[:, 2] == 0.0)
    # the baseline is the training rows' expected score given that day's branches
    assert np.isfinite(ts.expected_value)


def test_conditioned_treeshap_rejects_unknown_features() -> None:
    booster, _ = _calendar_model(0)
    with pytest.raises(ValueError, match="not features of this model"):
        TreeShap(booster, fixed={"day_of_year": 1.0})


def test_call_outcomes_count_answered_and_unanswered_calls_23() -> None:
    t = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    visits = pl.DataFrame(
        {"customer_id": ["a", "b"], "timestamp": [t, t], "channel": ["web", "web"], "event_type": ["visit", "visit"]}
    )
    outcomes = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "a"],
            "timestamp": [t, t + dt.timedelta(days=1), t + dt.timedelta(days=2), t, AS_OF],
            "channel": ["call_center"] * 5,
            "event_type": ["no_answer", "reached", "no_answer", "interested", "no_answer"],
        }
    )
    hist = Histories.from_frames(pl.concat([visits, outcomes]))
    out = call_outcomes(hist, AS_OF, pl.Series(["a", "b", "c"]))
    assert out is not None
    # the call at AS_OF itself is not before the moment and does not count
    assert out.select("calls", "answered", "no_answer").rows() == [(3, 1, 2), (1, 1, 0), (0, 0, 0)]
    assert call_outcomes(Histories.from_frames(visits), AS_OF, out["customer_id"]) is None  # not logged at all


def test_call_outcomes_become_channel_reasons_23(
    model: CampaignModel, campaign: pl.DataFrame, channel_why: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    _, X = channel_why
    ids = campaign["customer_id"]
    calls = pl.DataFrame({"calls": [2] * ids.len(), "answered": [0] * ids.len(), "no_answer": [2] * ids.len()})
    out = explain_channel_reasons(
        model.channel_model_,
        X,
        campaign["best_channel"],
        scores=campaign.select(f"score_{c}" for c in model.channels),
        costs=dict(model.policy_.channel_costs),
        top_k=K,
        keys=ids.to_frame(),
        calls=calls,
    )
    other = out.filter(pl.col("channel").is_not_null() & ~pl.col("channel").is_in(["call_center", "no_contact"]))
    texts = pl.concat([other[c] for c in _slots(out, "channel_reason")]).drop_nulls()
    assert texts.str.contains("^no answer to 2 calls in the last 365 days$").any()
