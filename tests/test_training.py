"""Training sets: cutoffs, labels after / features before each cutoff, out-of-time splits, train + score end to end."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from omni_ml.cli import app
from omni_ml.data import Histories
from omni_ml.evaluation import fit_propensity
from omni_ml.exceptions import ConfigError, DataInsufficientError, LeakageError
from omni_ml.features import FeatureConfig, build_features
from omni_ml.identity import resolve_identities
from omni_ml.labels import purchase_labels
from omni_ml.models import PropensityModel, load_model, predict_propensity
from omni_ml.training import TrainingSet, cutoffs, training_cutoffs, training_set
from tests._identity_rows import identity_frames

AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
HORIZON = 28
SMALL_FEATURES = FeatureConfig(windows=(30, 90, 365))
FAST = {"n_estimators": 150, "learning_rate": 0.1, "early_stopping_rounds": 20, "min_child_samples": 20}


def _transaction_log(n_customers: int = 600, seed: int = 0) -> pl.DataFrame:
    """A plain (customer_id, date, amount) log: heterogeneous Poisson buyers who may go quiet for good."""
    rng = np.random.default_rng(seed)
    start = dt.date(2023, 1, 1)
    days = (AS_OF.date() - start).days
    rows: dict[str, list] = {"customer_id": [], "date": [], "amount": []}
    for i in range(n_customers):
        rate = rng.gamma(0.8, 1 / 40)  # purchases per day
        quits = rng.integers(30, days * 2)
        t = float(rng.integers(0, 200))
        while True:
            t += rng.exponential(1 / rate)
            if t >= min(days, quits):
                break
            rows["customer_id"].append(f"C{i:04d}")
            rows["date"].append(start + dt.timedelta(days=int(t)))
            rows["amount"].append(round(float(rng.gamma(2, 20)), 2))
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def log_frame() -> pl.DataFrame:
    return _transaction_log()


@pytest.fixture(scope="module")
def plain_hist(log_frame: pl.DataFrame) -> Histories:
    return Histories.from_frames(log_frame)


@pytest.fixture(scope="module")
def plain_ts(plain_hist: Histories) -> TrainingSet:
    cuts = training_cutoffs(AS_OF, HORIZON, every_days=HORIZON, n=8)
    return training_set(plain_hist, cuts, HORIZON, config=SMALL_FEATURES, as_of=AS_OF)


@settings(max_examples=50, deadline=None)
@given(
    as_of=st.dates(dt.date(2020, 1, 1), dt.date(2030, 1, 1)),
    horizon=st.integers(1, 120),
    every=st.integers(1, 60),
    n=st.integers(1, 15),
)
def test_training_cutoffs_label_windows_end_by_as_of(as_of: dt.date, horizon: int, every: int, n: int) -> None:
    cs = training_cutoffs(as_of, horizon, every_days=every, n=n)
    end = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
    assert len(cs) == n
    assert all(c + dt.timedelta(days=horizon) <= end for c in cs)
    assert cs[-1] + dt.timedelta(days=horizon) == end  # the last fully observed window is used
    assert all(b - a == dt.timedelta(days=every) for a, b in zip(cs, cs[1:], strict=False))


def test_cutoffs_accept_days_weeks_and_reject_nonsense() -> None:
    assert cutoffs("2025-06-01", every="4w", n=3) == cutoffs(dt.date(2025, 6, 1), every="28d", n=3)
    assert cutoffs("2025-06-01", n=1)[0].tzinfo == dt.UTC
    with pytest.raises(ConfigError, match=r"every='monthly': expected a number of days or weeks like '28d'"):
        cutoffs("2025-06-01", every="monthly")
    with pytest.raises(ConfigError, match=r"cannot parse 'yesterday' as a date.*Hint: use ISO 8601"):
        cutoffs("yesterday")


def test_plain_transaction_log_builds_a_stacked_training_set(plain_ts: TrainingSet, log_frame: pl.DataFrame) -> None:
    assert plain_ts.cutoffs == training_cutoffs(AS_OF, HORIZON, every_days=HORIZON, n=8)
    assert set(plain_ts.X.columns).isdisjoint({"customer_id", "cutoff", "label"})
    assert all(dtype.is_numeric() for dtype in plain_ts.X.dtypes)
    assert plain_ts.keys.select("customer_id", "cutoff").is_unique().all()
    assert 0.05 < plain_ts.y.mean() < 0.6


def test_labels_are_purchases_in_the_window_after_the_cutoff(plain_ts: TrainingSet, log_frame: pl.DataFrame) -> None:
    events = log_frame.with_columns(pl.col("date").cast(pl.Datetime("us", "UTC")).alias("ts"))
    horizon = dt.timedelta(days=HORIZON)
    for cutoff in plain_ts.cutoffs[::3]:
        bought = set(events.filter((pl.col("ts") >= cutoff) & (pl.col("ts") < cutoff + horizon))["customer_id"])
        rows = plain_ts.keys.with_columns(pl.Series("y", plain_ts.y)).filter(pl.col("cutoff") == cutoff)
        expected = [int(c in bought) for c in rows["customer_id"]]
        assert rows["y"].to_list() == expected


def test_features_never_see_the_label_window(plain_ts: TrainingSet, log_frame: pl.DataFrame) -> None:
    """Features at a cutoff are unchanged when every event from the cutoff on is deleted."""
    for cutoff in plain_ts.cutoffs[::3]:
        before_only = Histories.from_frames(log_frame.filter(pl.col("date") < cutoff.date()))
        alone = build_features(before_only, cutoff, feature_set=plain_ts.feature_set)
        stacked = plain_ts.to_frame().filter(pl.col("cutoff") == cutoff)
        joined = stacked.join(alone, on=["customer_id", "cutoff"], how="left", suffix="__alone")
        for name in plain_ts.X.columns:
            assert joined[name].equals(joined[f"{name}__alone"].alias(name)), name


def test_a_purchase_at_the_cutoff_is_a_label_and_not_a_feature() -> None:
    cutoff = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    log = pl.DataFrame(
        {"customer_id": ["a", "a", "b"], "date": [dt.date(2024, 1, 5), cutoff.date(), dt.date(2024, 2, 1)]}
    ).with_columns(pl.lit(10.0).alias("amount"))
    ts = training_set(Histories.from_frames(log), [cutoff], 30, config=SMALL_FEATURES, as_of="2024-12-31")
    row = ts.to_frame().filter(pl.col("customer_id") == "a")
    assert row["label"].item() == 1
    assert row["purchases_total"].item() == 1  # only the January purchase


def test_label_windows_past_as_of_are_refused(plain_hist: Histories) -> None:
    late = [AS_OF - dt.timedelta(days=10)]
    with pytest.raises(LeakageError, match=r"1 cutoff\(s\) have label windows .* ending after the as-of date"):
        training_set(plain_hist, late, HORIZON, config=SMALL_FEATURES, as_of=AS_OF)
    with pytest.raises(DataInsufficientError, match=r"ending after the end of the events.*Hint: use training_cutoffs"):
        training_set(plain_hist, [AS_OF], HORIZON, config=SMALL_FEATURES)


def test_split_out_of_time_validates_on_later_cutoffs_and_purges_overlap(plain_ts: TrainingSet) -> None:
    for n_valid in (1, 2, 3):
        train, valid = plain_ts.split_out_of_time(n_valid=n_valid)
        assert max(train.cutoffs) < min(valid.cutoffs)
        assert valid.cutoffs == plain_ts.cutoffs[-n_valid:]
        assert len(train) + len(valid) == len(plain_ts)  # cutoffs are a horizon apart: nothing to purge
    wide = TrainingSet(plain_ts.X, plain_ts.y, plain_ts.keys, horizon_days=HORIZON + 1)
    train, valid = wide.split_out_of_time(n_valid=1)
    assert train.cutoffs == plain_ts.cutoffs[:-2]  # the window of the second-latest cutoff overlaps validation
    assert all(c + dt.timedelta(days=HORIZON + 1) <= valid.cutoffs[0] for c in train.cutoffs)
    with pytest.raises(DataInsufficientError, match=r"8 distinct cutoff\(s\) cannot give 8 validation"):
        plain_ts.split_out_of_time(n_valid=8)


def test_training_set_rejects_label_columns_among_features(plain_ts: TrainingSet) -> None:
    with pytest.raises(LeakageError, match=r"id or label column\(s\) \['label'\] among the features"):
        TrainingSet(plain_ts.X.with_columns(label=pl.lit(0)), plain_ts.y, plain_ts.keys)


def test_no_random_row_split_in_the_propensity_code() -> None:
    root = Path(__file__).resolve().parents[1] / "omni_ml"
    mine = ("models/_common.py", "models/propensity.py", "models/baselines.py", "evaluation/_backtest.py")
    files = [root / "training.py", *(root / f for f in mine), root / "evaluation/_report.py"]
    pattern = re.compile(r"train_test_split|ShuffleSplit|KFold|shuffle\s*=\s*True|\.sample\(|permutation\(")
    offenders = [f"{f.name}:{m.group(0)}" for f in files for m in pattern.finditer(f.read_text())]
    assert offenders == []


def test_fit_and_score_a_plain_transaction_log_end_to_end(plain_hist: Histories) -> None:
    config = {"n_cutoffs": 8, "every_days": HORIZON, "model": FAST, "features": {"windows": [30, 90, 365]}}
    model, report = fit_propensity(plain_hist, AS_OF, HORIZON, config)
    assert isinstance(model, PropensityModel)
    assert model.split_["calibration"] == [str(np.datetime64(AS_OF.replace(tzinfo=None) - dt.timedelta(HORIZON)))]
    assert report.per_cutoff["cutoff"].to_list() == [AS_OF - dt.timedelta(days=HORIZON)]  # back-test: the latest
    assert report.metrics["auc"] > 0.7
    assert report.metrics["train_cutoffs"] == 8
    scores = predict_propensity(plain_hist, model, AS_OF)
    assert scores.columns == ["customer_id", "propensity"]
    assert (
        scores["customer_id"].n_unique()
        == scores.height
        == plain_hist.events.select("customer_id").unique().collect().height
    )
    assert scores["propensity"].is_between(0, 1).all()


def test_cli_train_prints_metrics_and_saves_a_loadable_model(log_frame: pl.DataFrame, tmp_path: Path) -> None:
    log_frame.write_csv(tmp_path / "events.csv")
    out = tmp_path / "model.joblib"
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", str(tmp_path), "--as-of", "2025-01-01", "--horizon", "28", "--out", str(out), "--no-tracking"]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"overall: n_rows=\d+ .* auc=0\.\d+", result.output)
    # what the training chose for the length of the history, and why (issue 27)
    assert re.search(r"training history: history treated as (short|long) \(cutoffs span \d+ days", result.output)
    model = load_model(out)
    assert model.feature_set_ is not None
    bad = runner.invoke(app, ["train", str(tmp_path), "--as-of", "someday", "--horizon", "28"])
    assert bad.exit_code == 2
    assert re.search(r"SchemaError: as_of: cannot parse 'someday' as a date.*Hint", bad.output)


def test_simulated_world_ranking_is_close_to_the_oracle(small_world: Path, small_histories: Histories) -> None:
    """Trained at the world's end, scored there, checked against what really happened next (truth/)."""
    from omni_ml.evaluation import evaluate_scores

    meta = json.loads((small_world / "truth" / "world.json").read_text())["config"]
    end, horizon = dt.datetime.fromisoformat(meta["end"]).replace(tzinfo=dt.UTC), int(meta["future_days"])
    config = {"n_cutoffs": 6, "model": FAST}
    model, report = fit_propensity(small_histories, end, horizon, config)
    assert report.metrics["auc"] > 0.75  # back-test on the latest fully observed cutoff
    scores = predict_propensity(small_histories, model, end)
    bought = (
        pl.read_parquet(small_world / "truth" / "future_events.parquet")
        .filter(pl.col("event_type") == "purchase")
        .select("customer_id")
        .unique()
        .with_columns(pl.lit(1).alias("bought"))
    )
    truth = (
        pl.read_parquet(small_world / "truth" / "propensity.parquet")
        .join(bought, on="customer_id", how="left")
        .join(scores, on="customer_id", how="inner")
    )
    assert truth.height > 0.95 * pl.read_parquet(small_world / "truth" / "propensity.parquet").height
    result = evaluate_scores(truth["bought"].fill_null(0), truth["propensity"], oracle=truth["p_purchase"])
    assert result.metrics["auc_share_of_oracle"] > 0.9


UTC = dt.UTC


T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


AS_OF_2 = dt.datetime(2025, 1, 1, tzinfo=UTC)


TINY = FeatureConfig(windows=(30,))


TS = pl.Datetime("us", "UTC")


_seconds = st.integers(0, 300 * 86_400).map(lambda s: T0 + dt.timedelta(seconds=s))


_customer_events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), _seconds, st.sampled_from(["purchase", "visit"])),
    min_size=1,
    max_size=12,
)


_cutoff_days = st.lists(st.integers(20, 300), min_size=1, max_size=3, unique=True)


def _events(rows: list[tuple[str, dt.datetime, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "timestamp": [r[1] for r in rows],
            "channel": ["web"] * len(rows),
            "event_type": [r[2] for r in rows],
            "amount": [10.0 if r[2] == "purchase" else None for r in rows],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC"), "amount": pl.Float64},
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_customer_events, _cutoff_days)
def test_no_training_row_for_a_customer_not_yet_seen_at_its_cutoff(
    rows: list[tuple[str, dt.datetime, str]], days: list[int]
) -> None:
    """A customer whose first record is at or after a cutoff did not exist then: no row, so no free label 1."""
    ev = _events(rows)
    customers = pl.DataFrame({"customer_id": sorted({r[0] for r in rows})})
    cuts = [T0 + dt.timedelta(days=d) for d in days]
    first = {c: min(r[1] for r in rows if r[0] == c) for c in customers["customer_id"]}
    expected = sorted((c, t) for t in cuts for c, f in first.items() if f < t)
    hist = Histories.from_frames(ev, customers=customers)
    if not expected:
        with pytest.raises(DataInsufficientError, match="no customers have history before"):
            training_set(hist, cuts, 30, config=TINY, as_of=AS_OF_2)
        return
    ts = training_set(hist, cuts, 30, config=TINY, as_of=AS_OF_2)
    got = sorted(zip(ts.keys["customer_id"].to_list(), ts.keys["cutoff"].to_list(), strict=True))
    assert got == expected


_ident_rows = st.lists(
    st.tuples(
        st.sampled_from([None, "cookie:k1", "cookie:k2", "email:e1"]), _seconds, st.sampled_from(["purchase", "visit"])
    ),
    min_size=1,
    max_size=10,
)


_links = st.lists(
    st.tuples(st.sampled_from(["cookie:k1", "cookie:k2"]), st.sampled_from(["crm:C", "email:e1"]), _seconds),
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ident_rows, _links, _cutoff_days)
def test_training_rows_use_only_identity_links_seen_before_their_cutoff(
    rows: list[tuple[str | None, dt.datetime, str]], links: list[tuple[str, str, dt.datetime]], days: list[int]
) -> None:
    """Unresolved histories: each cutoff's rows (features and labels) equal those of a resolution as of it."""
    ev, link_frame = identity_frames(rows, links)
    hist = Histories.from_frames(ev, identity_links=link_frame)
    cuts = [T0 + dt.timedelta(days=d) for d in sorted(days)]
    expected = []
    for t in cuts:
        at_t = resolve_identities(hist, as_of=t)
        first = at_t.events.group_by("customer_id").agg(pl.col("timestamp").min()).collect()
        known = first.filter(pl.col("timestamp") < t)["customer_id"].sort().to_list()
        keys = pl.DataFrame(
            {"customer_id": known, "cutoff": [t] * len(known)},
            schema={"customer_id": pl.String, "cutoff": pl.Datetime("us", "UTC")},
        )
        labels = purchase_labels(at_t, keys, 30, as_of=AS_OF_2)
        expected += list(labels.select("customer_id", "cutoff", "label").iter_rows())
    if not expected:
        with pytest.raises(DataInsufficientError, match="no customers have history before"):
            training_set(hist, cuts, 30, config=TINY, as_of=AS_OF_2)
        return
    ts = training_set(hist, cuts, 30, config=TINY, as_of=AS_OF_2)
    got = list(zip(ts.keys["customer_id"].to_list(), ts.keys["cutoff"].to_list(), ts.y.tolist(), strict=True))
    assert sorted(got) == sorted(expected)
    for t in cuts:
        at_t = resolve_identities(hist, as_of=t)
        mine = ts.to_frame().filter(pl.col("cutoff") == t).drop("label").sort("customer_id")
        if mine.height:
            want = build_features(at_t, mine.select("customer_id", "cutoff"), feature_set=ts.feature_set)
            assert mine.equals(want.sort("customer_id"))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 400), min_size=2, max_size=8, unique=True),
    st.integers(1, 3),
    st.integers(1, 60),
)
def test_out_of_time_split_never_lets_a_training_label_window_reach_the_validation_period(
    days: list[int], n_valid: int, horizon: int
) -> None:
    """Validation = the latest cutoffs; every kept training window [c, c + h) ends by the first of them."""
    cuts = [T0 + dt.timedelta(days=d) for d in days for _ in range(2)]  # duplicate cutoffs: two customers each
    keys = pl.DataFrame(
        {"customer_id": ["x", "y"] * len(days), "cutoff": cuts}, schema={"customer_id": pl.String, "cutoff": TS}
    )
    ts = TrainingSet(
        pl.DataFrame({"f": range(len(cuts))}), np.zeros(len(cuts), dtype=np.int8), keys, horizon_days=horizon
    )
    ordered = sorted(set(cuts))
    first_valid = ordered[-n_valid] if len(ordered) > n_valid else None
    kept = [c for c in ordered[:-n_valid] if c + dt.timedelta(days=horizon) <= first_valid] if first_valid else []
    if not kept:
        with pytest.raises(DataInsufficientError):
            ts.split_out_of_time(n_valid)
        return
    train, valid = ts.split_out_of_time(n_valid)
    assert sorted(set(valid.keys["cutoff"].to_list())) == ordered[-n_valid:]
    assert sorted(set(train.keys["cutoff"].to_list())) == kept
    assert max(train.keys["cutoff"]) + dt.timedelta(days=horizon) <= min(valid.keys["cutoff"])
    assert set(train.X["f"].to_list()).isdisjoint(valid.X["f"].to_list())
