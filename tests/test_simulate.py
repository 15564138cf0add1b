"""Statistical properties of the simulated world (not exact numbers), determinism and the truth tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from omni_ml.data import CONTACTABLE_CHANNELS, load_histories
from omni_ml.exceptions import ConfigError, ConsentError, SchemaError
from omni_ml.simulate import SimulationConfig, continue_world, load_config, preset, simulate

TABLES = ("events", "contacts", "consents", "identity_links", "customers")
TRUTH = ("identity", "propensity", "channel_response", "future_events", "send_time")
CFG = preset("small")
END = dt.datetime(CFG.end.year, CFG.end.month, CFG.end.day, tzinfo=dt.UTC)


def _digest(world: Path) -> dict[str, str]:
    files = sorted(p for p in world.rglob("*") if p.is_file())
    return {str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _read(world: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(world / f"{name}.parquet")


@pytest.fixture(scope="module")
def resolved_events(small_world: Path) -> pl.DataFrame:
    """History events with the TRUE customer id (via truth/identity, non-shared identifiers)."""
    ident = _read(small_world, "truth/identity").filter(~pl.col("shared")).select("identifier", "customer_id")
    ev = _read(small_world, "events")
    return (
        ev.join(ident.rename({"customer_id": "true_id"}), on="identifier", how="left")
        .with_columns(pl.coalesce("customer_id", "true_id").alias("person"))
        .drop("true_id")
    )


@pytest.fixture(scope="module")
def buyers_future(small_world: Path) -> pl.DataFrame:
    prop = _read(small_world, "truth/propensity")
    fut = _read(small_world, "truth/future_events").filter(pl.col("event_type") == "purchase")
    return prop.with_columns(pl.col("customer_id").is_in(fut["customer_id"].unique().implode()).alias("bought"))


# ----------------------------------------------------------------------------- contract and determinism


def test_world_validates_against_the_histories_contract(small_world: Path) -> None:
    hist = load_histories(small_world, as_of=CFG.end)
    assert hist.report is not None
    assert set(hist.report.tables) == set(TABLES)
    for table in TABLES:
        assert hist.report.tables[table].rows > 0
        assert hist.report.tables[table].duplicates_dropped == 0
    events = hist.report.tables["events"]
    assert events.future_rows == 0
    assert events.start is not None
    assert events.start >= dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert set(events.channels) == {"web", "app", "store", *CONTACTABLE_CHANNELS}
    assert {"purchase", "return", "view", "cart", "visit", "open", "click", "service_call", "unsubscribe"} <= set(
        events.event_types
    )
    for name in TRUTH:
        assert (small_world / "truth" / f"{name}.parquet").is_file()
    assert load_config(small_world) == CFG


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    cfg = preset("small", n_customers=300, chunk_size=128)
    a = _digest(simulate(cfg, tmp_path / "a"))
    b = _digest(simulate(cfg, tmp_path / "b"))
    c = _digest(simulate(cfg.replace(seed=1), tmp_path / "c"))
    assert a == b
    assert len(a) == len(TABLES) + len(TRUTH) + 1
    assert all(a[k] != c[k] for k in a)


def test_files_do_not_depend_on_the_number_of_worker_processes(tmp_path: Path) -> None:
    cfg = preset("small", n_customers=500, chunk_size=150, future_days=7)
    one = _digest(simulate(cfg, tmp_path / "one"))
    two = _digest(simulate(cfg, tmp_path / "two", workers=2))
    assert one == two


def test_string_columns_read_back_as_plain_strings(small_world: Path) -> None:
    """Chunks are written with dictionary-coded strings; readers must still see plain string columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in (*TABLES, *(f"truth/{t}" for t in TRUTH)):
        schema = pq.read_schema(small_world / f"{name}.parquet")
        assert not any(pa.types.is_dictionary(f.type) for f in schema), name
        frame = _read(small_world, name)
        assert pl.Categorical not in frame.schema.dtypes(), name
    events = _read(small_world, "events")
    assert events.schema["channel"] == pl.String
    assert events.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert events["channel"].null_count() == 0
    assert events["campaign_id"].null_count() > 0  # only outbound responses carry a campaign


def test_simulate_imports_without_the_modelling_stack() -> None:
    """Worker processes import only omni_ml.simulate: no LightGBM, scikit-learn, MLflow or SHAP."""
    import subprocess
    import sys

    code = (
        "import sys, omni_ml.simulate; "
        "print(sorted(m for m in ('lightgbm', 'sklearn', 'mlflow', 'shap') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.strip() == "[]"
    # ... while every name of the package still resolves; the subpackages are named apart from the functions
    code = (
        "import omni_ml as om, omni_ml.evaluation, omni_ml.explanation, types; "
        "print(all(getattr(om, n) is not None for n in om.__all__), "
        "isinstance(om.evaluate, types.FunctionType), isinstance(om.explain, types.FunctionType))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True", "True"]


def test_future_window_and_history_are_separated(small_world: Path) -> None:
    ev = _read(small_world, "events")
    fut = _read(small_world, "truth/future_events")
    assert ev["timestamp"].max() < END
    assert fut["timestamp"].min() >= END
    assert fut["timestamp"].max() < END + dt.timedelta(days=CFG.future_days)
    assert fut["customer_id"].null_count() == 0
    assert _read(small_world, "contacts")["timestamp"].max() < END


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"identifier_only_share=1\.5 must be within \[0, 1\]"):
        SimulationConfig(identifier_only_share=1.5)
    with pytest.raises(ConfigError, match=r"future_days=3 must be >= 7"):
        preset("small", future_days=3)
    with pytest.raises(ConfigError, match="unknown simulation preset 'huge'"):
        preset("huge")


# ----------------------------------------------------------------------------- people


def test_purchase_rates_are_heterogeneous(resolved_events: pl.DataFrame) -> None:
    counts = resolved_events.filter(pl.col("event_type") == "purchase").group_by("person").len()["len"]
    assert counts.var() > 2.0 * counts.mean()  # over-dispersed: a Poisson world would have var == mean
    assert counts.max() >= 8 * counts.median()


def test_people_drop_out_for_good(small_world: Path, resolved_events: pl.DataFrame) -> None:
    bought = resolved_events.filter(pl.col("event_type") == "purchase")["person"].unique()
    prop = _read(small_world, "truth/propensity").filter(pl.col("customer_id").is_in(bought.implode()))
    gone = (prop["p_purchase"] == 0.0).mean()
    assert 0.05 < gone < 0.6  # some past buyers are gone (their true propensity is exactly 0)
    quiet = resolved_events.group_by("person").agg(pl.col("timestamp").max().alias("last"))
    assert (quiet["last"] < END - dt.timedelta(days=120)).mean() > 0.05


def test_seasonality_and_weekly_rhythm_are_visible(resolved_events: pl.DataFrame) -> None:
    p = resolved_events.filter(pl.col("event_type") == "purchase").with_columns(
        pl.col("timestamp").dt.date().alias("day")
    )
    holiday = p.filter((pl.col("day") >= dt.date(2024, 11, 15)) & (pl.col("day") <= dt.date(2024, 12, 24))).height
    spring = p.filter((pl.col("day") >= dt.date(2024, 3, 1)) & (pl.col("day") < dt.date(2024, 5, 1))).height
    assert holiday / 40 > 1.3 * spring / 61
    by_weekday = p.group_by(pl.col("timestamp").dt.weekday().alias("wd")).len().sort("wd")["len"].to_numpy()
    assert by_weekday[5] > 1.2 * by_weekday[:2].mean()  # Saturday vs Monday/Tuesday


def test_browsing_rises_before_a_purchase(resolved_events: pl.DataFrame) -> None:
    ev = resolved_events.with_columns(pl.col("timestamp").dt.date().alias("day"))
    visits = ev.filter(pl.col("event_type") == "visit").group_by("person", "day").len()
    buys = ev.filter((pl.col("event_type") == "purchase") & (pl.col("channel") == "store")).select("person", "day")
    before = buys.with_columns(pl.col("day") - pl.duration(days=2)).join(visits, on=["person", "day"], how="left")
    rate_before = before["len"].fill_null(0).mean()
    n_days = (CFG.end - CFG.start).days
    rate_all = visits.filter(pl.col("person").is_in(buys["person"].unique().implode()))["len"].sum() / (
        buys["person"].n_unique() * n_days
    )
    assert rate_before > 3 * rate_all


def test_complements_follow_and_durables_do_not_repeat(resolved_events: pl.DataFrame) -> None:
    p = resolved_events.filter(pl.col("event_type") == "purchase").select("person", "timestamp", "category")

    def followed(first: str, then: str, days: int) -> float:
        a = p.filter(pl.col("category") == first).select("person", pl.col("timestamp").alias("t0"))
        b = p.filter(pl.col("category") == then).select("person", pl.col("timestamp").alias("t1"))
        pairs = a.join(b, on="person").filter(
            (pl.col("t1") > pl.col("t0")) & (pl.col("t1") <= pl.col("t0") + pl.duration(days=days))
        )
        return pairs.select("person", "t0").unique().height / max(a.height, 1)

    assert followed("phones", "accessories", 30) > 2.0 * followed("gaming", "accessories", 30)
    assert followed("phones", "phones", 120) < 0.5 * followed("gaming", "gaming", 120)


# ----------------------------------------------------------------------------- identity


def test_fragmentation_rate_is_as_configured(tmp_path: Path) -> None:
    for share in (0.1, 0.6):
        world = simulate(preset("small", n_customers=400, identifier_only_share=share), tmp_path / str(share))
        web = _read(world, "events").filter(pl.col("channel").is_in(["web", "app"]))
        only = web["customer_id"].is_null().mean()
        assert abs(only - share) < 0.04, (share, only)
        assert (web["customer_id"].is_null() == web["identifier"].is_not_null()).all()


def test_identity_truth_covers_every_identifier_and_marks_shared(small_world: Path) -> None:
    truth = _read(small_world, "truth/identity")
    ev = _read(small_world, "events")
    assert set(ev["identifier"].drop_nulls().unique()) <= set(truth["identifier"])
    assert truth.filter(~pl.col("shared"))["identifier"].is_duplicated().sum() == 0
    shared = truth.filter(pl.col("shared"))
    assert shared["identifier"].str.starts_with("phone:").any()  # household phones
    assert shared["identifier"].str.starts_with("loyalty:999").any()  # shops' default cards
    assert shared.group_by("identifier").len()["len"].min() >= 2
    assert ev["identifier"].is_in(shared["identifier"].implode()).sum() > 0


def test_links_resolve_to_the_truth_when_shared_identifiers_are_not_trusted(small_world: Path) -> None:
    truth = _read(small_world, "truth/identity")
    shared = set(truth.filter(pl.col("shared"))["identifier"])
    links = _read(small_world, "identity_links")
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    naive_merges = 0
    for a, b in links.select("identifier_a", "identifier_b").iter_rows():
        if a in shared or b in shared:
            naive_merges += 1
            continue
        parent[find(a)] = find(b)
    crm_of: dict[str, str] = {}
    for x in list(parent):
        if x.startswith("crm:"):
            root = find(x)
            assert root not in crm_of, "two crm ids in one component"
            crm_of[root] = x.removeprefix("crm:")
    resolved = {x: crm_of.get(find(x)) for x in parent}
    expected = dict(truth.filter(~pl.col("shared")).select("identifier", "customer_id").iter_rows())
    assert all(expected[x] == cid for x, cid in resolved.items() if cid is not None)
    assert sum(cid is not None for cid in resolved.values()) > 0.9 * len(resolved)
    assert naive_merges > 0  # trusting shared identifiers blindly would merge people


# ----------------------------------------------------------------------------- contacts and consent


def test_assignment_probabilities_are_valid_and_explore(small_world: Path) -> None:
    c = _read(small_world, "contacts")
    p = c["assignment_probability"]
    assert p.null_count() == 0
    assert ((p > 0) & (p <= 1)).all()
    assert set(c["channel"]) == set(CONTACTABLE_CHANNELS)
    per_day = c.group_by("customer_id", "campaign_id").agg(pl.col("assignment_probability").sum())
    assert (per_day["assignment_probability"] <= 1.0).all()
    assert c.filter(pl.col("channel") == "call_center")["assignment_probability"].min() < 0.05  # explored


def test_historic_contacts_never_violate_consent(small_world: Path) -> None:
    contacts = _read(small_world, "contacts").sort("timestamp")
    consents = _read(small_world, "consents").sort("timestamp")
    state = contacts.join_asof(
        consents.select("customer_id", "channel", "timestamp", "granted"),
        on="timestamp",
        by=["customer_id", "channel"],
        strategy="backward",
        allow_exact_matches=False,
    )
    assert state["granted"].fill_null(False).all()
    assert consents.filter(~pl.col("granted")).height > 0  # consent is withdrawn over time ...
    assert consents.filter(pl.col("source") == "unsubscribe").height > 0  # ... also by unsubscribing


def test_fatigue_lowers_response(small_world: Path, resolved_events: pl.DataFrame) -> None:
    contacts = _read(small_world, "contacts").sort("customer_id", "timestamp")
    recent = contacts.rolling(index_column="timestamp", period="14d", group_by="customer_id").agg(
        pl.len().alias("recent")
    )  # contacts in (t - 14 days, t], this one included
    c = pl.concat([contacts, recent.drop("customer_id", "timestamp")], how="horizontal").filter(
        pl.col("channel") == "email"
    )
    opens = resolved_events.filter(pl.col("event_type") == "open").select(
        pl.col("person").alias("customer_id"), "campaign_id", pl.lit(True).alias("opened")
    )
    active = (
        resolved_events.filter(pl.col("event_type").is_in(["visit", "purchase"]))
        .group_by(pl.col("person").alias("customer_id"))
        .agg(pl.col("timestamp").max().alias("last_seen"))
    )
    c = (
        c.join(opens.unique(), on=["customer_id", "campaign_id"], how="left")
        .with_columns(pl.col("opened").fill_null(False))
        .join(active, on="customer_id")
        .filter(pl.col("last_seen") > pl.col("timestamp") + pl.duration(days=30))  # still around: not gone quiet
    )
    fresh = c.filter(pl.col("recent") <= 1)["opened"].mean()
    tired = c.filter(pl.col("recent") >= 3)["opened"].mean()
    assert isinstance(fresh, float)
    assert isinstance(tired, float)
    assert tired < 0.85 * fresh


# ----------------------------------------------------------------------------- truth


def test_truth_is_consistent_and_the_oracle_is_good_not_perfect(small_world: Path, buyers_future: pl.DataFrame) -> None:
    p = buyers_future["p_purchase"].to_numpy()
    y = buyers_future["bought"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / p.size
    assert abs(p.mean() - y.mean()) < 4 * se + 1e-3
    assert 0.75 < roc_auc_score(y, p) < 0.995
    resp = _read(small_world, "truth/channel_response").join(
        buyers_future.select("customer_id", "p_purchase"), on="customer_id"
    )
    assert resp.height == 5 * CFG.n_customers
    assert (resp["p_if_contacted"] >= resp["p_if_not"] - 1e-12).all()
    assert (resp["p_if_not"] <= resp["p_purchase"] + 1e-12).all()  # 7 days within 30 days
    gone = resp.filter(pl.col("p_purchase") == 0)
    assert gone.height > 0
    assert (gone["p_if_contacted"] == 0).all()
    world = json.loads((small_world / "truth" / "world.json").read_text())
    assert "no outbound contacts" in world["future_regime"].lower()


def test_uplift_differs_by_channel_and_person(small_world: Path) -> None:
    resp = _read(small_world, "truth/channel_response").with_columns(
        (pl.col("p_if_contacted") - pl.col("p_if_not")).alias("uplift")
    )
    alive = resp.filter(pl.col("p_if_not") > 0)
    by_channel = alive.group_by("channel").agg(pl.col("uplift").mean()).sort("uplift")
    assert by_channel["channel"][-1] == "call_center"
    assert by_channel["uplift"][-1] > 2 * alive.filter(pl.col("channel") == "email")["uplift"].mean()
    per_person = alive.group_by("customer_id").agg(pl.col("uplift").max().alias("best"))
    none = (per_person["best"] < 1e-9).mean()
    assert abs(none - CFG.zero_uplift_share) < 0.06  # sure things and lost causes
    wide = alive.pivot("channel", index="customer_id", values="uplift")
    sms_not_email = wide.filter((pl.col("sms") > 0.005) & (pl.col("email") < 1e-9)).height
    assert sms_not_email > 0.02 * wide.height


# ----------------------------------------------------------------------------- continuing a world


def test_continue_without_contacts_reproduces_the_future(small_world: Path) -> None:
    customers = _read(small_world, "customers").select("customer_id")
    fut = continue_world(small_world, customers.with_columns(pl.lit("no_contact").alias("channel")))
    assert fut.equals(_read(small_world, "truth/future_events"))


def test_continue_with_a_campaign_lifts_purchases_as_the_truth_says(small_world: Path, tmp_path: Path) -> None:
    resp = _read(small_world, "truth/channel_response").filter(
        (pl.col("channel") == "sms") & pl.col("consented") & (pl.col("p_if_not") > 0)
    )
    campaign = resp.select("customer_id", pl.lit("sms").alias("channel"))
    fut = continue_world(small_world, campaign, tmp_path / "cont", campaign_id="test-sms")
    base = _read(small_world, "truth/future_events")

    def converted(events: pl.DataFrame) -> float:
        week = events.filter((pl.col("event_type") == "purchase") & (pl.col("timestamp") < END + dt.timedelta(days=7)))[
            "customer_id"
        ].unique()
        return float(campaign["customer_id"].is_in(week.implode()).mean())

    lift = converted(fut) - converted(base)
    expected = float((resp["p_if_contacted"] - resp["p_if_not"]).mean())
    assert lift > 0
    assert abs(lift - expected) < 0.5 * expected + 0.01
    sent = pl.read_parquet(tmp_path / "cont" / "contacts.parquet")
    assert sent.height == campaign.height
    assert (sent["timestamp"] == END + dt.timedelta(hours=9)).all()  # the default send time, 09:00 UTC
    assert (sent["campaign_id"] == "test-sms").all()
    # persons not in the campaign buy on the same days (common random numbers)
    others = ~pl.col("customer_id").is_in(campaign["customer_id"].implode())
    days = pl.col("timestamp").dt.date()
    key = ["customer_id", "day"]
    a = base.filter(others & (pl.col("event_type") == "purchase")).select("customer_id", days.alias("day")).sort(key)
    b = fut.filter(others & (pl.col("event_type") == "purchase")).select("customer_id", days.alias("day")).sort(key)
    assert a.equals(b)


def test_continue_refuses_contacts_without_consent_and_bad_tables(small_world: Path) -> None:
    resp = _read(small_world, "truth/channel_response")
    refused = resp.filter((pl.col("channel") == "call_center") & ~pl.col("consented")).head(3)
    with pytest.raises(ConsentError, match=r"3 of 3 contacts are on a channel without consent"):
        continue_world(small_world, refused.select("customer_id", "channel"))
    with pytest.raises(SchemaError, match=r"campaign.channel: 1 of 1 rows are not a contactable channel"):
        continue_world(small_world, pl.DataFrame({"customer_id": ["C0000001"], "channel": ["fax"]}))
    with pytest.raises(SchemaError, match=r"not customers of this world \(e.g. 'X1'\)"):
        continue_world(small_world, pl.DataFrame({"customer_id": ["X1"], "channel": ["email"]}))


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 60))
def test_any_seed_gives_a_valid_world(tmp_path_factory: pytest.TempPathFactory, seed: int, n: int) -> None:
    world = simulate(
        preset("small", n_customers=n, seed=seed, start=dt.date(2024, 6, 1), future_days=7),
        tmp_path_factory.mktemp("w"),
    )
    hist = load_histories(world)
    assert hist.report is not None
    assert hist.report.tables["customers"].rows == n
    prop = _read(world, "truth/propensity")
    assert prop.height == n
    assert prop["p_purchase"].is_between(0, 1).all()


# ----------------------------------------------------------------------------- CLI


def test_cli_simulate_writes_a_world_and_reports_bad_dates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from omni_ml.cli import app

    runner = CliRunner()
    args = ["simulate", "--preset", "small", "--customers", "80", "--future-days", "14", "--seed", "3"]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "w")])
    assert done.exit_code == 0, done.output
    assert "wrote a world of 80 customers" in done.output
    assert load_config(tmp_path / "w") == preset("small", n_customers=80, future_days=14, seed=3)
    bad = runner.invoke(app, [*args, "--start", "yesterday", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "cannot parse 'yesterday' as a date" in bad.output


def test_simulate_refuses_a_directory_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text("customer_id,timestamp\n")
    with pytest.raises(ConfigError, match=r"holds other files \(events\.csv\).*Hint: choose a new or empty"):
        simulate(preset("small", n_customers=20), tmp_path)
