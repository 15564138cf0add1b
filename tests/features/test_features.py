"""Point-in-time features: exclusive cutoffs, identical paths, documented empty values, definitions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories, load_histories
from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.features import (
    FAMILIES,
    Feature,
    FeatureConfig,
    FeatureSet,
    build_features,
    count,
    event,
    register_family,
)
from omni_ml.labels import purchase_labels

UTC = dt.UTC
C = dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)  # deliberately not a midnight
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
SMALL = FeatureConfig(windows=(7, 30), category_windows=(30,), trend_pairs=((7, 30),), top_categories=3)
CUSTOMERS = ["a", "b", "c"]
CHANNELS = ["web", "app", "store", "email"]
TYPES = ["purchase", "visit", "view", "cart", "return", "service_call", "open", "click"]


def _events(rows: list[tuple[str, dt.datetime, str, str, float | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "customer_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "channel": pl.String,
            "event_type": pl.String,
            "amount": pl.Float64,
            "category": pl.String,
        },
        orient="row",
    )


def _contacts(rows: list[tuple[str, dt.datetime, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"customer_id": pl.String, "timestamp": pl.Datetime("us", "UTC"), "channel": pl.String},
        orient="row",
    )


def _hist(events: pl.DataFrame, contacts: pl.DataFrame | None = None, **tables: pl.DataFrame) -> Histories:
    return Histories.from_frames(events, contacts=contacts, **tables)


# Offsets from the cutoff that matter: exactly at it, 1 us either side, window starts +- 1 us.
_EDGES = [dt.timedelta(0), -US, US, -7 * DAY, -7 * DAY - US, -7 * DAY + US, -30 * DAY, -30 * DAY - US, -400 * DAY]
offsets = st.one_of(
    st.sampled_from(_EDGES),
    st.integers(-40 * 86_400, 5 * 86_400).map(lambda s: dt.timedelta(seconds=s)),
)
amounts = st.one_of(st.none(), st.integers(0, 100_000).map(lambda cents: cents / 100))
event_rows = st.tuples(
    st.sampled_from(CUSTOMERS),
    offsets.map(lambda o: C + o),
    st.sampled_from(CHANNELS),
    st.sampled_from(TYPES),
    amounts,
    st.sampled_from(["shoes", "tv", None]),
)
contact_rows = st.tuples(st.sampled_from(CUSTOMERS), offsets.map(lambda o: C + o), st.sampled_from(["email", "sms"]))
future_rows = st.tuples(
    st.sampled_from([*CUSTOMERS, "newcomer"]),
    st.integers(0, 40 * 86_400_000_000).map(lambda u: C + dt.timedelta(microseconds=u)),
    st.sampled_from(CHANNELS),
    st.sampled_from(TYPES),
    amounts,
    st.sampled_from(["shoes", "tv", "garden", None]),
)

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- the invariants of issue 5


@PROPERTY
@given(
    st.lists(event_rows, min_size=1, max_size=25),
    st.lists(contact_rows, max_size=8),
    st.lists(future_rows, min_size=1, max_size=10),
)
def test_appending_events_at_or_after_the_cutoff_never_changes_features(past, contacts, future) -> None:
    base = _hist(_events(past), _contacts(contacts) if contacts else None)
    late_contacts = [(cid, ts, "email") for cid, ts, *_ in future]
    grown = _hist(
        _events(past + future),
        _contacts(contacts + late_contacts),
    )
    fs = FeatureSet.from_histories(base, SMALL, before=C)
    if contacts:
        # identical definition in both: the vocabulary is fitted on rows before the cutoff only
        assert FeatureSet.from_histories(grown, SMALL, before=C).names == fs.names
    before = build_features(base, C, feature_set=fs)
    after = build_features(grown, C, feature_set=fs)
    assert before.equals(after)
    keys = pl.DataFrame({"customer_id": CUSTOMERS, "cutoff": [C] * 3})
    assert build_features(base, keys, feature_set=fs).equals(build_features(grown, keys, feature_set=fs))


@PROPERTY
@given(
    st.lists(event_rows, min_size=1, max_size=30),
    st.lists(contact_rows, max_size=8),
    st.lists(st.sampled_from([0, -1, 1, -7, 3, -30]), min_size=1, max_size=4, unique=True),
)
def test_training_pairs_and_scoring_single_cutoff_give_identical_rows(rows, contacts, day_shifts) -> None:
    hist = _hist(_events(rows), _contacts(contacts) if contacts else None)
    cutoffs = [C + d * DAY + d * 997 * US for d in day_shifts]
    fs = FeatureSet.from_histories(hist, SMALL, before=max(cutoffs))
    stacked = build_features(hist, cutoffs, feature_set=fs)  # many cutoffs in one pass
    singles = pl.concat([build_features(hist, c, feature_set=fs) for c in sorted(cutoffs)])
    assert stacked.equals(singles)
    # pairs with a different cutoff per row, shuffled, with duplicates: same values, in input order
    pairs = stacked.select("customer_id", "cutoff").reverse()
    pairs = pl.concat([pairs, pairs.head(2)])
    from_pairs = build_features(hist, pairs, feature_set=fs)
    assert from_pairs.select("customer_id", "cutoff").equals(pairs)
    expected = pairs.join(stacked, on=["customer_id", "cutoff"], how="left", maintain_order="left")
    assert from_pairs.equals(expected)


@PROPERTY
@given(st.lists(event_rows, min_size=1, max_size=40))
def test_window_counts_and_sums_match_a_brute_force_oracle(rows) -> None:
    hist = _hist(_events(rows))
    cfg = FeatureConfig(windows=(7, 30), families=("rfm", "returns_service", "tenure"))
    out = build_features(hist, pl.DataFrame({"customer_id": CUSTOMERS, "cutoff": [C] * 3}), config=cfg)
    distinct = list(dict.fromkeys(rows))  # the histories contract drops exact duplicate rows (data.py)
    for cid in CUSTOMERS:
        mine = [r for r in distinct if r[0] == cid and r[1] < C]
        got = out.filter(pl.col("customer_id") == cid).row(0, named=True)
        for w in (7, 30):
            inside = [r for r in mine if r[1] >= C - w * DAY]
            buys = [r for r in inside if r[3] == "purchase"]
            assert got[f"purchases_{w}d"] == len(buys)
            assert got[f"revenue_{w}d"] == pytest.approx(sum(r[4] or 0.0 for r in buys), abs=1e-9)
            assert got[f"returns_{w}d"] == sum(r[3] == "return" for r in inside)
        buys_ever = [r[1] for r in mine if r[3] == "purchase"]
        assert got["purchases_total"] == len(buys_ever)
        if buys_ever:
            assert got["days_since_last_purchase"] == pytest.approx((C - max(buys_ever)) / DAY)
        else:
            assert got["days_since_last_purchase"] is None
        expected_tenure = (C - min(r[1] for r in mine)) / DAY if mine else None
        assert got["tenure_days"] == (pytest.approx(expected_tenure) if mine else None)


def test_cutoff_is_exclusive_to_the_microsecond_and_windows_are_half_open() -> None:
    rows = [
        ("a", C, "web", "visit", None, None),  # at the cutoff: not seen
        ("a", C - US, "web", "visit", None, None),  # 1 us before: seen
        ("a", C - 7 * DAY, "web", "visit", None, None),  # exactly at the 7-day window start: inside
        ("a", C - 7 * DAY - US, "web", "visit", None, None),  # 1 us before the window: outside 7d, inside 30d
    ]
    out = build_features(_hist(_events(rows)), C, config=SMALL).row(0, named=True)
    assert out["visits_web_7d"] == 2
    assert out["visits_web_30d"] == 3
    assert out["days_since_last_visit"] == pytest.approx(US / DAY)
    fs = FeatureSet.from_histories(_hist(_events(rows)), SMALL)
    later = build_features(_hist(_events(rows)), C + US, feature_set=fs).row(0, named=True)
    assert later["visits_web_7d"] == 2  # the event at C enters, the one at C - 7d leaves
    assert later["visits_web_30d"] == 4


def test_customer_without_history_gets_the_documented_values() -> None:
    rows = [("a", C - DAY, "web", "purchase", 10.0, "tv"), ("a", C - 2 * DAY, "web", "cart", None, "tv")]
    customers = pl.DataFrame({"customer_id": ["a", "nobody"], "region": ["north", "south"]})
    consents = pl.DataFrame({"customer_id": ["a"], "channel": ["email"], "granted": [True], "timestamp": [C - DAY]})
    hist = _hist(_events(rows), _contacts([("a", C - DAY, "email")]), customers=customers, consents=consents)
    out = build_features(hist, C, config=SMALL)
    assert out["customer_id"].to_list() == ["a", "nobody"]  # customers table + anyone with history
    fs = FeatureSet.from_histories(hist, SMALL, before=C)
    nobody = out.filter(pl.col("customer_id") == "nobody").row(0, named=True)
    for name in fs.names:
        value = nobody[name]
        feat = fs.feature(name)
        if name.startswith(("days_since", "tenure", "interpurchase", "purchase_overdue", "browsing_trend")):
            assert value is None, name
        elif "_rate_" in name or name.startswith("avg_order_value"):
            assert value is None, name
        elif name == "attr_region":
            assert value == fs.vocabulary.attributes[0].levels.index("south")
        elif feat.family == "lifecycle":  # rates of nothing are unknown; the trend is shrunk to "as usual"
            assert value == (1.0 if name.startswith("purchase_trend") else None), name
        elif feat.family == "time_of_year":  # the cutoff's place in the year, history or not
            assert value == out.filter(pl.col("customer_id") == "a")[name].item(), name
        else:
            assert value == 0, (name, value, feat.family)
    # a customer with history at a cutoff before it has the same "nothing yet" values
    early = build_features(hist, pl.DataFrame({"customer_id": ["a"], "cutoff": [C - 30 * DAY]}), feature_set=fs)
    assert early["purchases_total"].item() == 0
    assert early["days_since_last_purchase"].item() is None


def test_scoring_population_is_customers_table_plus_anyone_with_an_event_before_the_cutoff() -> None:
    rows = [("a", C - DAY, "web", "visit", None, None), ("late", C, "web", "visit", None, None)]
    hist = _hist(_events(rows), customers=pl.DataFrame({"customer_id": ["listed"]}))
    out = build_features(hist, [C, C + DAY], config=SMALL)
    assert out.select("cutoff", "customer_id").rows() == [
        (C, "a"),
        (C, "listed"),
        (C + DAY, "a"),
        (C + DAY, "late"),
        (C + DAY, "listed"),
    ]


def test_nothing_before_the_cutoff_gives_an_empty_typed_table() -> None:
    hist = _hist(_events([("a", C, "web", "visit", None, None)]))
    fs = FeatureSet.from_histories(hist, SMALL)
    out = build_features(hist, C, feature_set=fs)
    assert out.height == 0
    assert out.columns == ["customer_id", "cutoff", *fs.names]
    assert all(dtype.is_numeric() for dtype in out.drop("customer_id", "cutoff").dtypes)


def test_output_is_numeric_only_and_in_feature_set_order() -> None:
    rows = [("a", C - DAY, "web", "purchase", 10.0, "tv")]
    customers = pl.DataFrame(
        {
            "customer_id": ["a"],
            "region": ["north"],
            "vip": [True],
            "score": [3.5],
            "signup": ["2024-01-01"],
            "tags": [["x"]],
        }
    )
    hist = _hist(_events(rows), customers=customers)
    fs = FeatureSet.from_histories(hist, SMALL)
    out = build_features(hist, C, feature_set=fs)
    assert out.columns == ["customer_id", "cutoff", *fs.names]
    for name in fs.names:
        assert out.schema[name] in (pl.Int8, pl.Int32, pl.Float64), name
    assert "tags: unsupported type List(String)" in fs.vocabulary.skipped_attributes


def test_customer_attributes_dates_become_days_before_cutoff_and_codes_keep_unseen_apart() -> None:
    rows = [("a", C - DAY, "web", "visit", None, None)]
    customers = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": ["2025-02-27", "2025-03-01T12:30:15.123456", None, "2030-01-01"],
            "region": ["north", "north", None, "south"],
        }
    )
    fs = FeatureSet.from_histories(_hist(_events(rows), customers=customers), SMALL)
    kinds = {a.column: a.kind for a in fs.vocabulary.attributes}
    assert kinds == {"signup_date": "date", "region": "code"}
    assert fs.vocabulary.attributes[1].levels == ("north", "south")
    new_customers = customers.with_columns(pl.Series("region", ["north", "east", None, "south"]))
    out = build_features(_hist(_events(rows), customers=new_customers), C, feature_set=fs).sort("customer_id")
    assert out["attr_signup_date_days"].to_list() == [
        pytest.approx(2 + (C - C.replace(hour=0, minute=0, second=0, microsecond=0)) / DAY),
        None,
        None,
        None,
    ]  # b signs up exactly at the cutoff: not before it
    assert out["attr_region"].to_list() == [0, 2, None, 1]  # unseen "east" -> len(levels); null stays null
    assert fs.render("attr_region", 1) == "region is south"
    assert fs.render("attr_region", 2) == "region is other"
    # reasons say column names in words
    assert fs.render("attr_signup_date_days", 313) == "signup date 313 days ago"
    assert fs.render("attr_signup_date_days", 1) == "signup date 1 day ago"
    assert fs.render("attr_signup_date_days", None) == "signup date unknown"


def test_consent_flags_are_as_of_the_cutoff() -> None:
    rows = [("a", C - DAY, "web", "visit", None, None)]
    consents = pl.DataFrame(
        {
            "customer_id": ["a", "a"],
            "channel": ["email", "email"],
            "granted": [True, False],
            "timestamp": [C - DAY, C],  # withdrawn exactly at the cutoff: still granted as of the cutoff
        }
    )
    hist = _hist(_events(rows), consents=consents)
    fs = FeatureSet.from_histories(hist, SMALL)
    keys = pl.DataFrame({"customer_id": ["a", "a", "a"], "cutoff": [C - DAY, C, C + US]})
    assert build_features(hist, keys, feature_set=fs)["consent_email"].to_list() == [0, 1, 0]
    assert [fs.render("consent_email", v) for v in (0, 1)] == ["email consent not granted", "email consent granted"]


def test_engagement_rates_per_contact_and_open_cart() -> None:
    rows = [
        ("a", C - 3 * DAY, "email", "open", None, None),
        ("a", C - 2 * DAY, "email", "click", None, None),
        ("a", C - 5 * DAY, "web", "purchase", 20.0, "tv"),
        ("a", C - 1 * DAY, "web", "cart", None, "tv"),
    ]
    contacts = _contacts([("a", C - 4 * DAY, "email"), ("a", C - 3 * DAY, "email"), ("a", C - 40 * DAY, "sms")])
    out = build_features(_hist(_events(rows), contacts), C, config=SMALL).row(0, named=True)
    assert out["contacts_email_90d"] == 2
    assert out["open_rate_email_90d"] == 0.5
    assert out["click_rate_email_90d"] == 0.5
    assert out["open_rate_sms_90d"] == 0.0
    assert out["contacts_7d"] == 2
    assert out["contacts_30d"] == 2
    assert out["days_since_last_contact_sms"] == pytest.approx(40.0)
    assert out["cart_without_purchase_7d"] == 1


def test_partitions_and_engines_do_not_change_the_result() -> None:
    rows = [(c, C - d * DAY, "web", t, 5.5, "tv") for c in CUSTOMERS for d in (1, 3, 9, 40) for t in TYPES[:3]]
    hist = _hist(_events(rows))
    fs = FeatureSet.from_histories(hist, SMALL)
    base = build_features(hist, [C, C + 3 * DAY], feature_set=fs)
    for cfg in (
        FeatureConfig(**{**SMALL.__dict__, "partitions": 3}),
        FeatureConfig(**{**SMALL.__dict__, "events_per_partition": 7}),  # automatic: 36 events -> 6 partitions
        FeatureConfig(**{**SMALL.__dict__, "streaming": False}),
    ):
        other = FeatureSet(cfg, fs.vocabulary, fs.families_built)
        assert build_features(hist, [C, C + 3 * DAY], feature_set=other).equals(base)


@PROPERTY
@given(
    st.lists(event_rows, min_size=1, max_size=30),
    st.lists(contact_rows, max_size=8),
    st.lists(st.sampled_from([0, -1, 1, -7, 3, -30]), min_size=1, max_size=3, unique=True),
)
def test_passes_and_lookups_never_change_the_features_5(rows, contacts, day_shifts) -> None:
    # predicate-free measures (days since the last event, tenure) and the predicate ones are measured
    # in one pass or in two (when few rows match a predicate), running values are looked up by a
    # sweep over the segments or by binary search: only the speed may differ
    import omni_ml.features._engine as engine

    hist = _hist(_events(rows), _contacts(contacts) if contacts else None)
    cutoffs = [C + d * DAY + d * 997 * US for d in day_shifts]
    fs = FeatureSet.from_histories(hist, SMALL, before=max(cutoffs))
    keys = pl.DataFrame({"customer_id": CUSTOMERS * len(cutoffs), "cutoff": [c for c in cutoffs for _ in CUSTOMERS]})
    out = []
    # never split, always split; lookups by sweeping the segments or by binary search
    for share, sweep in ((-1.0, 4096), (1.0, 4096), (1.0, 0)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine, "_SPLIT_SHARE", share)
            mp.setattr(engine, "_SWEEP_SEGMENTS", sweep)
            out.append((build_features(hist, cutoffs, feature_set=fs), build_features(hist, keys, feature_set=fs)))
    for scored, paired in out[1:]:
        assert scored.equals(out[0][0])
        assert paired.equals(out[0][1])


def test_rare_predicates_are_measured_in_a_second_pass_over_matching_rows_only_5() -> None:
    import omni_ml.features._engine as engine

    rows = [("a", C - d * DAY, "web", "visit", None, None) for d in range(1, 20)]
    rows.append(("a", C - 2 * DAY, "app", "purchase", 7.25, "tv"))
    hist = _hist(_events(rows))
    fs = FeatureSet.from_histories(hist, FeatureConfig(windows=(7, 30), families=("rfm",)))
    plan = engine._Plan(fs.features, need_history=True)
    passes = plan.passes("events", hist.events, streaming=True)  # 1 row of 20 is a purchase
    assert [sorted(a.kind for a in p.measures.values()) for p in passes] == [["last"], ["count", "last", "sum"]]
    assert passes[0].rows is None
    assert passes[1].rows is not None
    assert not passes[0].windows
    assert passes[1].windows == {7, 30}
    out = build_features(hist, C, feature_set=fs).row(0, named=True)
    assert (out["purchases_7d"], out["revenue_30d"], out["days_since_last_event"]) == (1, 7.25, 1.0)
    # the second pass keeps the rows matching any predicate; implied ones (purchase on app) are not re-tested
    weakest = engine._weakest([event("purchase", channel="app"), event("purchase"), None, event("cart", category="x")])
    assert [str(p) for p in weakest] == [str(event("purchase")), str(event("cart", category="x"))]


# ----------------------------------------------------------------------------- the definition


def test_feature_set_round_trips_through_json_and_rebuilds_identical_features() -> None:
    rows = [("a", C - DAY, "app", "purchase", 12.5, "tv"), ("b", C - 2 * DAY, "web", "visit", None, None)]
    customers = pl.DataFrame({"customer_id": ["a"], "region": ["north"]})
    hist = _hist(_events(rows), customers=customers)
    fs = FeatureSet.from_histories(hist, SMALL)
    again = FeatureSet.from_dict(json.loads(json.dumps(fs.to_dict())))
    assert again == fs
    assert again.names == fs.names
    assert build_features(hist, C, feature_set=again).equals(build_features(hist, C, feature_set=fs))


def test_describe_render_and_families() -> None:
    rows = [("a", C - DAY, "web", "visit", None, None), ("a", C - DAY, "web", "purchase", 3.0, "tv")]
    fs = FeatureSet.from_histories(_hist(_events(rows)), SMALL)
    assert fs.describe("visits_web_7d") == "Visits on web in the last 7 days"
    assert fs.render("visits_web_7d", 3) == "3 web visits in the last 7 days"
    assert fs.render("visits_web_7d", 1) == "1 web visit in the last 7 days"
    assert fs.render("revenue_30d", 1234.5) == "1,234.50 spent in the last 30 days"
    assert fs.render("days_since_last_purchase", None) == "no purchase yet"
    assert fs.family_of("purchases_web_7d") == "rfm_channel"
    families = fs.families()
    assert "visits_web_7d" in families["browsing"]
    assert sum(len(v) for v in families.values()) == len(fs.names)
    assert not any(n.startswith("__") for n in fs.names)
    with pytest.raises(KeyError, match="did you mean"):
        fs.describe("visits_web_7")


def test_a_data_scientist_adds_a_family_in_a_few_lines() -> None:
    @register_family("test_wishlist")
    def wishlist(ctx):
        return [
            Feature(
                f"wishlist_adds_{w}d",
                count(event("wishlist"), window=w),
                f"Wishlist additions in the last {w} days",
                f"{{value}} wishlist addition{{s}} in the last {w} days",
            )
            for w in ctx.windows
        ]

    try:
        rows = [("a", C - DAY, "app", "wishlist", None, None), ("a", C - 20 * DAY, "app", "wishlist", None, None)]
        cfg = FeatureConfig(windows=(7, 30), families=("rfm", "test_wishlist"))
        out = build_features(_hist(_events(rows)), C, config=cfg)
        assert out.select("wishlist_adds_7d", "wishlist_adds_30d").row(0) == (1, 2)
    finally:
        FAMILIES.pop("test_wishlist")


def test_unknown_family_is_a_config_error_with_a_suggestion() -> None:
    hist = _hist(_events([("a", C - DAY, "web", "visit", None, None)]))
    with pytest.raises(ConfigError, match=r"unknown family 'browsin' \(did you mean 'browsing'\?\)"):
        FeatureSet.from_histories(hist, FeatureConfig(families=("browsin",)))


def test_bad_windows_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"FeatureConfig.windows: expected positive whole days"):
        FeatureConfig(windows=(0, 7))
    with pytest.raises(ConfigError, match="short < long"):
        FeatureConfig(trend_pairs=((30, 7),))


def test_a_feature_reading_a_missing_column_names_it() -> None:
    @register_family("test_loyalty")
    def loyalty(ctx):
        return [Feature("tier_events_7d", count(pl.col("tier") == "gold", window=7), "Gold-tier events")]

    try:
        hist = _hist(_events([("a", C - DAY, "web", "visit", None, None)]))
        with pytest.raises(ConfigError, match=r"reads events.tier, which the histories do not have"):
            build_features(hist, C, config=FeatureConfig(families=("test_loyalty",)))
    finally:
        FAMILIES.pop("test_loyalty")


def test_a_derived_feature_must_come_after_what_it_uses() -> None:
    @register_family("test_bad_order")
    def bad(ctx):
        return [Feature("ratio", pl.col("later") / 2, "Broken"), Feature("later", count(window=7), "Later")]

    try:
        hist = _hist(_events([("a", C - DAY, "web", "visit", None, None)]))
        with pytest.raises(ConfigError, match=r"'ratio' .* derived from \['later'\], which are not defined before"):
            FeatureSet.from_histories(hist, FeatureConfig(families=("test_bad_order",)))
    finally:
        FAMILIES.pop("test_bad_order")


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        (pl.DataFrame({"customer_id": ["a"]}), r"keys: missing column\(s\) \['cutoff'\]"),
        (pl.DataFrame({"customer_id": ["a", None], "cutoff": [C, C]}), r"keys.customer_id: 1 of 2 rows are null"),
        (pl.DataFrame({"customer_id": ["a"], "cutoff": ["2025-03-01"]}), r"keys.cutoff: expected a Datetime or Date"),
    ],
)
def test_bad_keys_are_schema_errors(keys: pl.DataFrame, match: str) -> None:
    hist = _hist(_events([("a", C - DAY, "web", "visit", None, None)]))
    with pytest.raises(SchemaError, match=match):
        build_features(hist, keys, config=SMALL)


def test_unresolved_identifiers_are_refused() -> None:
    ev = pl.DataFrame({"identifier": ["email:a@x.dk"], "timestamp": [C - DAY], "amount": [1.0]})
    with pytest.raises(SchemaError, match=r"carry only an identifier.*resolve_identities"):
        build_features(Histories.from_frames(ev), C, config=SMALL)


def test_naive_cutoffs_are_utc_and_dates_mean_midnight() -> None:
    rows = [("a", dt.datetime(2025, 3, 1, tzinfo=UTC) - US, "web", "visit", None, None)]
    hist = _hist(_events(rows))
    fs = FeatureSet.from_histories(hist, SMALL)
    aware = build_features(hist, dt.datetime(2025, 3, 1, tzinfo=UTC), feature_set=fs)
    assert build_features(hist, dt.datetime(2025, 3, 1), feature_set=fs).equals(aware)
    keys = pl.DataFrame({"customer_id": ["a"], "cutoff": [dt.date(2025, 3, 1)]})
    assert build_features(hist, keys, feature_set=fs).drop("cutoff").equals(aware.drop("cutoff"))


def test_feature_set_and_conflicting_config_is_refused() -> None:
    hist = _hist(_events([("a", C - DAY, "web", "visit", None, None)]))
    fs = FeatureSet.from_histories(hist, SMALL)
    with pytest.raises(ConfigError, match="both feature_set and a different config"):
        build_features(hist, C, feature_set=fs, config=FeatureConfig())


# ----------------------------------------------------------------------------- simulated world


@pytest.fixture(scope="module")
def world_hist(small_world: Path) -> Histories:
    from omni_ml.identity import resolve_identities

    return resolve_identities(load_histories(small_world)).collect()


def test_simulated_world_features_ignore_the_future_and_agree_across_paths(small_world: Path, world_hist) -> None:
    end = world_hist.events.select(pl.col("timestamp").max()).collect().item()
    cutoff = end - 60 * DAY
    fs = FeatureSet.from_histories(world_hist, before=cutoff)
    scored = build_features(world_hist, cutoff, feature_set=fs)
    n_customers = world_hist.customers.select(pl.len()).collect().item() if world_hist.customers is not None else 0
    assert scored.height >= n_customers > 0
    assert all(dtype.is_numeric() for dtype in scored.drop("customer_id", "cutoff").dtypes)
    # the 60 days after the cutoff are real simulated behaviour: dropping them changes nothing
    truncated = world_hist.replace(
        events=world_hist.events.filter(pl.col("timestamp") < cutoff),
        contacts=None if world_hist.contacts is None else world_hist.contacts.filter(pl.col("timestamp") < cutoff),
    )
    assert build_features(truncated, cutoff, feature_set=fs).equals(scored)
    stacked = build_features(world_hist, [cutoff - 28 * DAY, cutoff], feature_set=fs)
    assert stacked.filter(pl.col("cutoff") == cutoff).equals(scored)
    # signal, not noise: buyers in the last 90 days buy again more often than the rest
    labels = purchase_labels(world_hist, scored.select("customer_id", "cutoff"), 30)
    joined = scored.select("customer_id", "purchases_90d").join(labels, on="customer_id")
    rate = joined.group_by(pl.col("purchases_90d") > 0).agg(pl.col("label").mean()).sort("purchases_90d")
    assert rate["label"][1] > rate["label"][0]


# ----------------------------------------------------------------------------- command line


def test_cli_features_writes_one_row_per_customer_atomically(sample_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from omni_ml.cli import app

    out = tmp_path / "deep" / "features.parquet"
    result = CliRunner().invoke(app, ["features", str(sample_dir), "--as-of", "2025-02-10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out)
    assert table["customer_id"].is_unique().all()
    assert table["cutoff"].unique().to_list() == [dt.datetime(2025, 2, 10, tzinfo=UTC)]
    assert all(dtype.is_numeric() for dtype in table.drop("customer_id", "cutoff").dtypes)
    assert sorted(p.name for p in out.parent.iterdir()) == ["features.parquet"]  # no temp file left
    assert "families: rfm" in result.output


def test_cli_features_bad_date_exits_2_with_a_hint(sample_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from omni_ml.cli import app

    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(app, ["features", str(sample_dir), "--as-of", "yesterday", "--out", str(out)])
    assert result.exit_code == 2
    assert "Hint: use ISO 8601" in result.output
    assert not out.exists()


def test_a_derived_source_is_read_through_the_cutoff_rule_21() -> None:
    """The engine asks a derived source for its rows by the last cutoff and applies ``timestamp < cutoff``."""
    import dataclasses

    from omni_ml.features import build_feature_frames, total
    from omni_ml.features._spec import DerivedSource

    asked: list[dt.datetime] = []

    @dataclasses.dataclass(frozen=True)
    class Later(DerivedSource):  # each event, known ``days`` after it happened
        days: int

        @property
        def key(self) -> str:
            return f"later({self.days}d)"

        def rows(self, hist: Histories, before: dt.datetime) -> pl.LazyFrame | None:
            asked.append(before)
            return hist.events.with_columns(pl.col("timestamp") + dt.timedelta(days=self.days))

    day = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    events = pl.DataFrame(
        {"customer_id": ["a", "a"], "timestamp": [day, day + dt.timedelta(days=4)], "amount": [1.0, 2.0]}
    )
    hist = Histories.from_frames(events)
    known = dt.timedelta(days=3)
    cutoffs = [day + known, day + known + dt.timedelta(microseconds=1), day + dt.timedelta(days=8)]
    keys = pl.DataFrame({"customer_id": ["a"] * 3, "cutoff": cutoffs})
    features = [
        Feature("__n", count(source=Later(3)), "Events known"),
        Feature("__spent", total(source=Later(3)), "Amount known"),
    ]
    frame = build_feature_frames(hist, keys, features)
    assert frame["__n"].to_list() == [0, 1, 2]  # known exactly at the cutoff: not yet
    assert frame["__spent"].to_list() == [0.0, 1.0, 3.0]
    assert asked == [cutoffs[-1]]
