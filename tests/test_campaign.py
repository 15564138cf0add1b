"""CampaignModel: the fitted bundle that turns histories + an as-of date into the campaign table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.campaign import NO_CHANNEL_MODEL, CampaignConfig, CampaignModel
from omni_ml.config import from_mapping
from omni_ml.data import Histories, load_histories
from omni_ml.exceptions import ConfigError, ModelNotFoundError
from omni_ml.identity import consent_state, resolve_identities
from tests.conftest import CAMPAIGN_TEST_CONFIG

SCORE_AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def model(campaign_model_path: Path) -> CampaignModel:
    return CampaignModel.load(campaign_model_path)


@pytest.fixture(scope="module")
def resolved(small_world: Path) -> Histories:
    return resolve_identities(load_histories(small_world), as_of=SCORE_AS_OF).collect()


@pytest.fixture(scope="module")
def scored(model: CampaignModel, resolved: Histories) -> pl.DataFrame:
    return model.score(resolved, SCORE_AS_OF, reasons=0)


def _subset(hist: Histories, ids: list[str]) -> Histories:
    keep = pl.col("customer_id").is_in(ids)
    return hist.replace(
        **{t: lf.filter(keep) for t, lf in hist.tables().items() if t != "identity_links"}, identity_links=None
    )


def test_score_has_the_documented_schema_one_row_per_customer(model: CampaignModel, scored: pl.DataFrame) -> None:
    assert scored.schema == model.output_schema(reasons=0)
    assert scored.columns[:5] == ["customer_id", "as_of", "propensity", "propensity_decile", "best_channel"]
    assert [c for c in scored.columns if c.startswith("score_")] == [f"score_{c}" for c in model.channels]
    assert scored["customer_id"].is_unique().all()
    assert scored["customer_id"].to_list() == sorted(scored["customer_id"].to_list())
    assert scored["propensity"].is_between(0.0, 1.0).all()
    assert set(scored["propensity_decile"].unique().to_list()) <= set(range(1, 11))
    assert (scored["as_of"] == SCORE_AS_OF).all()
    assert scored["best_channel"].null_count() == 0
    assert scored["rule"].null_count() == 0


def test_scores_every_customer_with_history_or_a_customers_row(scored: pl.DataFrame, resolved: Histories) -> None:
    before = resolved.events.filter(pl.col("timestamp") < SCORE_AS_OF).select("customer_id")
    expected = pl.concat([before, resolved.customers.select("customer_id")]).unique().collect()  # type: ignore[union-attr]
    assert set(scored["customer_id"]) == set(expected["customer_id"])


def test_deciles_follow_propensity_with_fixed_edges(model: CampaignModel, scored: pl.DataFrame) -> None:
    assert len(model.decile_edges_) == 9
    assert list(model.decile_edges_) == sorted(model.decile_edges_)
    by_decile = scored.group_by("propensity_decile").agg(
        pl.col("propensity").min().alias("lo"), pl.col("propensity").max().alias("hi")
    )
    bounds = by_decile.sort("propensity_decile")
    # decile 1 is the top: every propensity in decile d+1 is at most every propensity in decile d
    lo, hi = bounds["lo"].to_list(), bounds["hi"].to_list()
    assert all(hi[i + 1] <= lo[i] + 1e-12 for i in range(len(lo) - 1))
    # the training population at the latest cutoff is split into ~10% per decile: the scoring
    # population at a later date is close to it (fixed edges, so not exactly 10%)
    shares = scored["propensity_decile"].value_counts(normalize=True)["proportion"]
    assert shares.max() < 0.3


@settings(max_examples=2, deadline=None)
@given(n_parts=st.integers(2, 4), seed=st.integers(0, 10_000))
def test_score_of_any_partition_equals_score_of_all(
    model: CampaignModel, resolved: Histories, scored: pl.DataFrame, n_parts: int, seed: int
) -> None:
    ids = scored["customer_id"].to_list()
    part = np.random.default_rng(seed).integers(0, n_parts, len(ids))
    pieces = []
    for p in range(n_parts):
        mine = [c for c, q in zip(ids, part, strict=True) if q == p]
        pieces.append(model.score(_subset(resolved, mine), SCORE_AS_OF, reasons=0))
    together = pl.concat(pieces).sort("customer_id")
    assert together.equals(scored)


def test_no_customer_is_contacted_without_consent(scored: pl.DataFrame, resolved: Histories) -> None:
    contacted = scored.filter(pl.col("best_channel") != "no_contact")
    assert contacted.height > 0  # the test policy contacts whenever the rules allow
    consent = consent_state(resolved, SCORE_AS_OF)
    joined = contacted.join(consent, on="customer_id", how="left")
    granted = [row[f"consent_{row['best_channel']}"] for row in joined.iter_rows(named=True)]
    assert all(g is True for g in granted)


def test_contacts_take_the_best_consented_channel(scored: pl.DataFrame) -> None:
    contacted = scored.filter(pl.col("best_channel") != "no_contact")
    assert (contacted["rule"] == "best_value").all()
    assert (contacted["expected_value"] > -1000.0).all()  # the test policy's min_value
    best = pl.max_horizontal(pl.col(f"score_{c}") for c in ("email", "sms", "push", "direct_mail", "call_center"))
    assert contacted.select((pl.col("expected_value") - best).abs().max()).item() < 1e-9
    paused = scored.filter(pl.col("best_channel") == "no_contact")
    assert (paused["expected_value"] == 0).all()


def test_transaction_log_gets_propensity_and_no_channel_model(small_world: Path) -> None:
    purchases = (
        pl.read_parquet(small_world / "events.parquet")
        .filter((pl.col("event_type") == "purchase") & pl.col("customer_id").is_not_null())
        .select("customer_id", pl.col("timestamp").alias("date"), "amount")
    )
    hist = Histories.from_frames(purchases)
    config = CampaignConfig(train={"n_cutoffs": 4, "model": {"n_estimators": 40, "early_stopping_rounds": 10}})
    model = CampaignModel(config).fit(hist, "2024-12-01", horizon_days=28)
    assert model.channel_model_ is None
    assert "no contacts table" in (model.channel_note_ or "")
    out = model.score(hist, "2025-01-01", reasons=0)
    assert out.height == purchases["customer_id"].n_unique()
    assert (out["best_channel"] == "no_contact").all()
    assert (out["rule"] == NO_CHANNEL_MODEL).all()
    assert out["propensity"].is_between(0.0, 1.0).all()
    assert out["propensity"].n_unique() > 5


def test_save_and_load_give_identical_scores(model: CampaignModel, resolved: Histories, tmp_path: Path) -> None:
    path = model.save(tmp_path / "m.joblib")
    again = CampaignModel.load(path)
    subset = _subset(resolved, resolved.customers.collect()["customer_id"].head(200).to_list())  # type: ignore[union-attr]
    assert again.score(subset, SCORE_AS_OF, reasons=0).equals(model.score(subset, SCORE_AS_OF, reasons=0))


def test_unfitted_or_missing_model_raises_clearly(tmp_path: Path, resolved: Histories) -> None:
    with pytest.raises(ModelNotFoundError, match="not fitted"):
        CampaignModel().score(resolved, SCORE_AS_OF)
    with pytest.raises(ModelNotFoundError, match="no such file"):
        CampaignModel.load(tmp_path / "missing.joblib")


def test_config_rejects_unknown_keys_and_bad_reasons() -> None:
    with pytest.raises(ConfigError, match="did you mean 'channel'"):
        from_mapping(CampaignConfig, {"chanel": None})
    with pytest.raises(ConfigError, match="reasons must be an integer"):
        CampaignConfig(reasons=-1)
    with pytest.raises(ConfigError, match="did you mean 'n_cutoffs'"):
        CampaignConfig(train={"n_cutofs": 3}).resolved()


@pytest.fixture(scope="module")
def scored_with_reasons(model: CampaignModel, resolved: Histories, scored: pl.DataFrame) -> pl.DataFrame:
    ids = scored["customer_id"].to_list()[:400]
    return model.score(_subset(resolved, ids), SCORE_AS_OF, reasons=2)


def test_channel_reasons_explain_contacts_and_stay_null_for_pauses(scored_with_reasons: pl.DataFrame) -> None:
    contacted = scored_with_reasons.filter(pl.col("best_channel") != "no_contact")
    paused = scored_with_reasons.filter(pl.col("best_channel") == "no_contact")
    assert contacted.height > 0
    assert paused.height > 0
    assert contacted["channel_reason_1"].null_count() == 0
    assert paused["channel_reason_1"].null_count() == paused.height
    texts = pl.concat([contacted["channel_reason_1"], contacted["channel_reason_2"].drop_nulls()]).to_list()
    codes = pl.concat([contacted["channel_reason_code_1"], contacted["channel_reason_code_2"].drop_nulls()]).to_list()
    # Every text is in words, with a signed contribution unless it states the cost/consent rule of the choice or
    # a fact of the customer's call history (issue 23), never a raw booster column name.
    rules = ("COST_LOWER", "ONLY_CONSENT", "VALUE_HIGHER", "CALL_CENTER_ANSWERED", "CALL_CENTER_NO_ANSWER")
    assert all((t.endswith(" pp)") and " (" in t) or c in rules for t, c in zip(texts, codes, strict=True))
    assert not any("arm_" in t or "{arm}" in t or " = " in t for t in texts)


def test_channel_reasons_add_up_to_the_estimated_uplift(model: CampaignModel, resolved: Histories) -> None:
    from omni_ml.explanation import explain_channel
    from omni_ml.models.channel import channel_features

    cm = model.channel_model_
    assert cm is not None
    ids = resolved.customers.select("customer_id").collect()["customer_id"].head(150)  # type: ignore[union-attr]
    who, X = channel_features(cm, resolved, SCORE_AS_OF, customers=ids)
    channels = np.random.default_rng(1).choice(cm.channels_, size=ids.len()).tolist()
    why = explain_channel(cm, X, channels, top_k=len(cm.feature_names_) + 50, keys=who.to_frame())
    effects = cm.predict_effects(X, customer_id=who)
    chosen = pl.DataFrame({"customer_id": who, "channel": channels}).join(
        effects, on=["customer_id", "channel"], how="left", maintain_order="left"
    )
    # The probability contributions of all features (+ offset) add up to the estimated uplift of that channel.
    contrib = why.select(pl.sum_horizontal(pl.col("^probability_\\d+$").fill_null(0.0))).to_series().to_numpy()
    offset = why["offset_probability"].to_numpy()
    np.testing.assert_allclose(contrib + offset, chosen["uplift"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(why["probability"].to_numpy(), chosen["p_if_contacted"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(why["base_probability"].to_numpy(), chosen["p_if_not"].to_numpy(), atol=1e-12)


def test_fit_trains_each_cutoff_on_identity_links_known_before_it(small_world: Path) -> None:
    """A link made after a training cutoff (a login at a later checkout) must not merge earlier browsing into a row.

    An anonymous cookie browses in spring and is linked to a known customer in late November, after every
    training cutoff: at those cutoffs the cookie was its own visitor, so the propensity rows are those of a
    resolution as of each cutoff, not of the fit's as-of (which would have given the customer the cookie's visits).
    """
    from omni_ml.training import training_cutoffs, training_set

    raw = load_histories(small_world).collect()
    assert raw.events is not None
    assert raw.identity_links is not None
    events, links = raw.events.collect(), raw.identity_links.collect()
    visits = pl.DataFrame(
        {
            "identifier": ["cookie:trap"] * 6,
            "timestamp": [dt.datetime(2024, 3, d, 12, tzinfo=dt.UTC) for d in range(1, 7)],
            "channel": ["web"] * 6,
            "event_type": ["visit"] * 6,
        }
    )
    visits = visits.select([pl.col(c) if c in visits.columns else pl.lit(None).alias(c) for c in events.columns]).cast(
        dict(events.schema)
    )
    linked = dt.datetime(2024, 11, 25, tzinfo=dt.UTC)
    link = pl.DataFrame(
        {"identifier_a": ["crm:C0000001"], "identifier_b": ["cookie:trap"], "source": ["login"]}
    ).with_columns(timestamp=pl.lit(linked))
    hist = raw.replace(
        events=pl.concat([events, visits]).lazy(),
        identity_links=pl.concat([links, link.select(links.columns).cast(dict(links.schema))]).lazy(),
    )
    as_of = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    cfg = from_mapping(CampaignConfig, {**CAMPAIGN_TEST_CONFIG, "channel": None})
    cuts = training_cutoffs(as_of, 28, every_days=28, n=CAMPAIGN_TEST_CONFIG["train"]["n_cutoffs"])
    assert max(cuts) < linked

    def rows(resolved_at: dt.datetime, t: dt.datetime) -> int:
        return len(training_set(resolve_identities(hist, as_of=resolved_at), [t], 28, as_of=as_of))

    as_of_each_cutoff = sum(rows(t, t) for t in cuts)
    assert as_of_each_cutoff == sum(rows(as_of, t) for t in cuts) + len(cuts)  # the trap is a row of its own
    model = CampaignModel(cfg).fit(hist, as_of, horizon_days=28)
    assert model.metrics_["train_rows"] == as_of_each_cutoff


def test_clv_12m_is_bgnbd_gamma_gamma_value_null_without_a_purchase_27(
    model: CampaignModel, scored: pl.DataFrame, resolved: Histories
) -> None:
    from omni_ml.models.btyd import btyd_customer_value, rfm_summary

    summary = rfm_summary(resolved, SCORE_AS_OF)
    buyers = set(summary["customer_id"])
    with_value = scored.filter(pl.col("clv_12m").is_not_null())
    assert set(with_value["customer_id"]) == buyers & set(scored["customer_id"])
    assert (with_value["clv_12m"] >= 0).all()
    purchases, value = model.clv_models_
    direct = btyd_customer_value(purchases, value, summary, 52.0)
    joined = with_value.join(direct, on="customer_id")
    # the file holds the value to 1/10,000 of a currency unit (the same bytes for any chunk count)
    np.testing.assert_allclose(joined["clv_12m"], joined["customer_value_right"], rtol=0, atol=0.5e-4 + 1e-9)
    # more past revenue goes with more expected value
    past = summary.select("customer_id", (pl.col("first_value") + pl.col("mean_value") * pl.col("x")).alias("past"))
    rank = with_value.join(past, on="customer_id").select(pl.corr("clv_12m", "past", method="spearman")).item()
    assert rank > 0.3


def test_a_chunk_is_scored_from_one_feature_plan_21(
    model: CampaignModel, resolved: Histories, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Propensity, channel model and its response history, policy facts: one engine plan, no consumer builds its own."""
    import omni_ml.features as features
    import omni_ml.models._channel_data as channel_data
    import omni_ml.policy as policy

    plans: list[int] = []
    engine = features.build_feature_frames
    monkeypatch.setattr(features, "build_feature_frames", lambda *a, **k: plans.append(1) or engine(*a, **k))
    monkeypatch.setattr(features, "build_features", lambda *a, **k: pytest.fail("a consumer built its own features"))
    monkeypatch.setattr(policy, "history_facts", lambda *a, **k: pytest.fail("the facts were built apart"))
    monkeypatch.setattr(channel_data, "response_history", lambda *a, **k: pytest.fail("a response-history pass"))
    assert channel_data.response_spec(model.channel_model_) is not None  # type: ignore[arg-type]
    inputs = model._chunk_inputs(resolved, SCORE_AS_OF)
    assert inputs.consumers == {"propensity", "channel", "response", "facts"}
    assert len(plans) == 1
    scored = model.score(resolved, SCORE_AS_OF, reasons=0)
    assert len(plans) == 2
    assert scored.height > 0


def test_the_shared_plan_scores_exactly_as_separate_builds_21(
    model: CampaignModel, resolved: Histories, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sliced from one plan or built by each consumer (the path of a clashing feature set): the same table."""
    import omni_ml.features as features

    planned = model.score(resolved, SCORE_AS_OF, reasons=2)
    union = features.union_features
    alone = {"n": 0}

    def first_only(*lists: object) -> object:  # every consumer but the propensity model clashes
        alone["n"] += 1
        return union(*lists) if not lists[0] else None  # type: ignore[arg-type]

    monkeypatch.setattr(features, "union_features", first_only)
    separate = model.score(resolved, SCORE_AS_OF, reasons=2)
    assert alone["n"] == 4  # propensity, channel, response, facts
    assert planned.equals(separate)


def test_channel_features_check_precomputed_rows_21(model: CampaignModel, resolved: Histories) -> None:
    from omni_ml.exceptions import SchemaError
    from omni_ml.models.channel import channel_features

    channel = model.channel_model_
    assert channel is not None
    ids = pl.Series("customer_id", ["C0000001", "C0000002"])
    rows = pl.DataFrame({n: [0.0] for n in channel.feature_set_.names})  # one row for two customers
    with pytest.raises(SchemaError, match=r"1 rows .* expected 2 rows .*Hint: select model.feature_set_.names"):
        channel_features(channel, resolved, SCORE_AS_OF, customers=ids, features=rows)
    with pytest.raises(ConfigError, match=r"need the customers .*Hint: pass customers="):
        channel_features(channel, resolved, SCORE_AS_OF, features=rows)
