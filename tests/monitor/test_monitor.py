"""Issue 25: the training reference, drift of a scoring run, expected performance, --fail-on-drift, MLflow runs."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.campaign import CampaignModel
from omni_ml.exceptions import ConfigError, DriftError
from omni_ml.monitor import MONITOR_COLUMNS, MonitorConfig, expected_auc, js_distance, monitor_path, psi
from omni_ml.scoring import score

AS_OF = "2025-01-01"
CHANGE = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def model(campaign_model_path: Path) -> CampaignModel:
    return CampaignModel.load(campaign_model_path)


@pytest.fixture(scope="module")
def resolved(small_histories: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world, resolved and written with a customer_id on every row."""
    out = tmp_path_factory.mktemp("monitor_world")
    for table in ("events", "contacts", "consents", "customers"):
        getattr(small_histories, table).collect().write_parquet(out / f"{table}.parquet")
    return out


@pytest.fixture(scope="module")
def broken_feed(resolved: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same world whose `view` events stop on 2024-12-01 (a tracking feed that broke)."""
    out = tmp_path_factory.mktemp("broken_feed")
    for path in resolved.glob("*.parquet"):
        frame = pl.read_parquet(path)
        if path.stem == "events":
            frame = frame.filter(~((pl.col("event_type") == "view") & (pl.col("timestamp") >= CHANGE)))
        frame.write_parquet(out / path.name)
    return out


@pytest.fixture(scope="module")
def price_shock(resolved: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same world whose purchase amounts are 1.6 times higher from 2024-12-01 on."""
    out = tmp_path_factory.mktemp("price_shock")
    for path in resolved.glob("*.parquet"):
        frame = pl.read_parquet(path)
        if path.stem == "events":
            shocked = (pl.col("event_type") == "purchase") & (pl.col("timestamp") >= CHANGE)
            frame = frame.with_columns(amount=pl.when(shocked).then(pl.col("amount") * 1.6).otherwise("amount"))
        frame.write_parquet(out / path.name)
    return out


# ----------------------------------------------------------------------------- distances


shares = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12).filter(lambda v: sum(v) > 0.01)


@given(shares, shares)
@settings(max_examples=60, deadline=None)
def test_psi_and_js_are_nonnegative_zero_on_equal_and_js_bounded(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    p, q = np.asarray(a[:n]) / sum(a[:n]), np.asarray(b[:n]) / sum(b[:n])
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        return
    assert psi(p, q) >= -1e-12
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= js_distance(p, q) <= 1.0 + 1e-9
    assert js_distance(p, q) == pytest.approx(js_distance(q, p))


@given(st.lists(st.floats(0.1, 0.9), min_size=5, max_size=60), st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_expected_auc_is_the_mean_auc_over_labels_drawn_from_the_propensities(p: list[float], seed: int) -> None:
    """CBPE: the exact expectation equals the Monte Carlo ratio of expected ranked pairs over expected pairs."""
    from scipy.stats import rankdata

    q = np.asarray(p)
    exact = expected_auc(q, q)
    assert 0.0 <= exact <= 1.0
    y = np.random.default_rng(seed).random((4000, q.size)) < q
    ranks = rankdata(q)
    n1 = y.sum(axis=1)
    n0 = q.size - n1
    ranked_pairs = (y * ranks).sum(axis=1) - n1 * (n1 + 1) / 2  # correctly ordered (positive, negative) pairs
    assert exact == pytest.approx(ranked_pairs.sum() / (n1 * n0).sum(), abs=0.02)


def test_expected_auc_of_certain_labels_is_the_realised_auc() -> None:
    from omni_ml.evaluation import roc_auc

    score_ = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    y = np.array([0, 1, 0, 1, 0, 1])
    assert expected_auc(score_, y.astype(float)) == pytest.approx(roc_auc(y, score_))


def test_monitor_config_rejects_bad_thresholds() -> None:
    with pytest.raises(ConfigError, match=r"psi_warn \(0.5\) must not exceed psi_bad \(0.35\)"):
        MonitorConfig(psi_warn=0.5)
    with pytest.raises(ConfigError, match="sample_size must be an integer >= 100"):
        MonitorConfig(sample_size=5)


@given(st.integers(0, 5_000), st.floats(10.0, 1e6), st.integers(0, 5_000), st.floats(10.0, 1e6), st.floats(0.1, 10.0))
@settings(max_examples=80, deadline=None)
def test_rate_change_is_signed_antisymmetric_and_scale_free(c1: int, t1: float, c0: int, t0: float, k: float) -> None:
    from omni_ml.monitor._events import rate_change

    change, z = rate_change(c1, t1, c0, t0)
    back, z_back = rate_change(c0, t0, c1, t1)
    assert change == pytest.approx(-back, abs=1e-9)
    assert z == pytest.approx(-z_back, abs=1e-9)
    assert np.sign(z) == np.sign(c1 / t1 - c0 / t0) or z == pytest.approx(0.0, abs=1e-9)
    assert rate_change(c1, t1, c1 * t0 / t1, t0)[1] == pytest.approx(0.0, abs=1e-9)  # same rate: z = 0
    # the same rates over k times the exposure: the same change (up to the half row), a z larger by sqrt(k)
    if c1 > 50 and c0 > 50:
        z_k = rate_change(c1 * k, t1 * k, c0 * k, t0 * k)[1]
        assert z_k == pytest.approx(z * np.sqrt(k), rel=0.05)


@given(st.lists(st.floats(-3, 3), min_size=3, max_size=40), st.floats(-2, 2))
@settings(max_examples=60, deadline=None)
def test_mean_change_is_the_shift_of_the_mean_log_amount(x: list[float], shift: float) -> None:
    from omni_ml.monitor._events import mean_change

    a = np.asarray(x)
    ref = np.random.default_rng(0).normal(0.0, 1.0, 200)
    change, z = mean_change(a.size, float(a.sum()), float((a**2).sum()), ref.size, ref.mean(), ref.var(ddof=1))
    assert change == pytest.approx(a.mean() - ref.mean(), abs=1e-9)
    moved = a + shift
    change2, z2 = mean_change(a.size, float(moved.sum()), float((moved**2).sum()), ref.size, ref.mean(),
                              ref.var(ddof=1))  # fmt: skip
    assert change2 == pytest.approx(change + shift, abs=1e-6)
    assert (z2 - z) * shift >= -1e-6  # a larger mean never lowers z


# ----------------------------------------------------------------------------- the reference


def test_reference_holds_no_identifiers_or_rows(model: CampaignModel, small_histories: object) -> None:
    from omni_ml.training import training_cutoffs

    ref = model.reference_
    ids = small_histories.events.select("customer_id").unique().collect()["customer_id"].drop_nulls().to_list()  # type: ignore[attr-defined]
    blob = pickle.dumps(ref)
    assert not any(i.encode() in blob for i in ids[:500]), "a customer id is stored in the reference"
    assert ref.rows > 1000
    # aggregates only: every stored sequence is short (bins, levels, quantiles), none per customer
    for prof in ref.features:
        assert len(prof.shares) <= 66
        assert len(prof.edges) <= 30
        assert len(prof.levels) <= 64
        assert sum(prof.shares) == pytest.approx(1.0) or prof.null_share == 1.0
        assert 0.0 <= prof.null_share <= 1.0
    assert len(ref.decile_shares) == 10
    assert sum(ref.decile_shares) == pytest.approx(1.0)
    assert 0.0 < ref.label_rate < 1.0
    assert {p.name for p in ref.features}.isdisjoint(ref.excluded)
    assert any(name.startswith("cutoff_") for name in ref.excluded), "date-only features are not monitored"
    # the input summaries: aggregates of the training windows (5 cutoffs + the training date), a few numbers each
    inputs = ref.inputs
    assert inputs.window_days == 28
    assert inputs.windows == 6
    assert 0 < len(inputs.items) <= 64 + 3
    names = {i.name for i in inputs.items}
    assert {"order_value:purchase", "event_mix", "contact_mix", "events:view:web", "contacts:email"} <= names
    for item in inputs.items:
        assert len(item.shares) <= 66
        assert item.natural_z >= 0.0
        assert item.natural_change >= 0.0
        if item.shares:
            assert sum(item.shares) == pytest.approx(1.0)
    # the reference's view volume is the views of the six windows over their customer-days
    views = inputs.item("events:view:web")
    events = small_histories.events.collect()  # type: ignore[attr-defined]
    ends = [*training_cutoffs(model.as_of_, 28, every_days=28, n=5), model.as_of_]
    rows = sum(
        events.filter(
            (pl.col("event_type") == "view")
            & (pl.col("channel") == "web")
            & (pl.col("timestamp") >= end - dt.timedelta(days=28))
            & (pl.col("timestamp") < end)
        ).height
        for end in ends
    )
    assert views.count == rows
    # the back-test's top decile: realised and expected lift as in the training report's lift table
    top = model.report_.lift.row(0, named=True)
    assert ref.oot_lift == pytest.approx(top["lift"], rel=1e-6)
    scores = model.report_.scores
    assert ref.oot_expected_lift == pytest.approx(top["p_mean"] / scores["score"].mean(), rel=1e-6)
    assert ref.oot_top_buyers == pytest.approx(top["positives"])
    assert ref.lift_correction == pytest.approx(ref.oot_lift / ref.oot_expected_lift)


# ----------------------------------------------------------------------------- scoring runs


def test_unchanged_world_is_healthy_and_the_monitor_file_sits_beside_the_campaign(
    resolved: Path, model: CampaignModel, tmp_path: Path
) -> None:
    out = tmp_path / "campaign.parquet"
    summary = score(resolved, model=model, as_of=AS_OF, out=out, reasons=0, progress=False)
    report = summary.monitor
    assert report is not None
    assert report.verdict != "bad", report.to_text()
    assert summary.monitor_file == monitor_path(out) == tmp_path / "campaign.monitor.parquet"
    table = pl.read_parquet(summary.monitor_file)
    assert dict(table.schema) == MONITOR_COLUMNS
    assert set(table["section"]) == {"health", "score", "feature", "input", "decile", "channel", "performance"}
    campaign = pl.read_parquet(out)
    # the decile occupancy and the expected figures are those of the written file
    shares = campaign["propensity_decile"].value_counts(normalize=True).sort("propensity_decile")
    decile = table.filter((pl.col("section") == "decile") & (pl.col("metric") == "share")).sort(
        pl.col("name").cast(pl.Int32)
    )
    assert decile["value"].to_numpy() == pytest.approx(shares["proportion"].to_numpy())
    expected = dict(table.filter(pl.col("section") == "performance").select("metric", "value").iter_rows())
    contacted = campaign.filter(pl.col("best_channel") != "no_contact")
    assert expected["expected_conversions_contacted"] == pytest.approx(contacted["propensity"].sum())
    assert expected["contacted"] == contacted.height
    assert 0.5 < expected["expected_auc_lo"] <= expected["expected_auc"] <= expected["expected_auc_hi"] < 1.0
    assert expected["expected_lift_top_decile_corrected"] == pytest.approx(
        expected["expected_lift_top_decile"] * model.reference_.lift_correction
    )
    assert "health:" in summary.to_text()


def test_the_summary_says_when_the_expected_figures_come_from_an_uncalibrated_model(
    resolved: Path, model: CampaignModel, tmp_path: Path
) -> None:
    import copy

    calibrated = score(resolved, model=model, as_of=AS_OF, out=tmp_path / "a.parquet", reasons=0, progress=False)
    assert model.propensity_.calibrator_ is not None
    assert calibrated.monitor.calibrated is True
    assert "no calibration map" not in calibrated.to_text()
    raw = copy.deepcopy(model)
    raw.propensity_.calibrator_ = None  # what training on under a year of cutoffs gives by default
    out = tmp_path / "b.parquet"
    uncalibrated = score(resolved, model=raw, as_of=AS_OF, out=out, reasons=0, progress=False)
    assert uncalibrated.monitor.calibrated is False
    assert "no calibration map" in uncalibrated.to_text()
    # the expected figures are those of the booster's own probabilities, as written in the file
    written = pl.read_parquet(out)["propensity"].sum()
    assert uncalibrated.monitor.expected["expected_conversions"] == pytest.approx(written)
    assert written != pytest.approx(pl.read_parquet(tmp_path / "a.parquet")["propensity"].sum())


def test_a_broken_feed_is_flagged_with_its_features_first(
    broken_feed: Path, model: CampaignModel, tmp_path: Path
) -> None:
    summary = score(broken_feed, model=model, as_of=AS_OF, out=tmp_path / "c.parquet", reasons=0, progress=False)
    report = summary.monitor
    assert report.verdict == "bad"
    top3 = report.features["feature"].head(3).to_list()
    assert top3[0].startswith("views"), top3
    assert all("views" in n or "browsing" in n for n in top3), top3
    text = summary.to_text()
    assert "health: BAD" in text
    assert model.feature_set_.describe(top3[0]) in text


def test_a_price_shock_is_flagged_by_the_order_value_of_the_input_rows(
    price_shock: Path, resolved: Path, model: CampaignModel, tmp_path: Path
) -> None:
    """Amounts x1.6: every purchase of the window moves by ln 1.6; the order value is named first."""
    shocked = score(price_shock, model=model, as_of=AS_OF, out=tmp_path / "s.parquet", reasons=0, progress=False)
    plain = score(resolved, model=model, as_of=AS_OF, out=tmp_path / "p.parquet", reasons=0, progress=False)
    report = shocked.monitor
    assert report.verdict == "bad", report.to_text()
    assert report.moved(3)["name"][0] == "order_value:purchase"
    row = report.inputs.filter(pl.col("item") == "order_value:purchase").row(0, named=True)
    base = plain.monitor.inputs.filter(pl.col("item") == "order_value:purchase").row(0, named=True)
    assert row["change"] - base["change"] == pytest.approx(np.log(1.6), abs=1e-9)  # every window purchase moved
    assert row["value"] / base["value"] == pytest.approx(1.6)  # geometric mean order value
    assert row["flag"] == "drift"
    assert "order value of purchases" in shocked.to_text()
    # the volumes did not move with the prices
    volumes = ["reference", "value"]
    assert (
        report.inputs.filter(pl.col("kind") == "volume")
        .select(volumes)
        .equals(plain.monitor.inputs.filter(pl.col("kind") == "volume").select(volumes))
    )


def test_contacts_and_their_responses_are_outbound_cells() -> None:
    from omni_ml.monitor._events import describe_cell, outbound

    assert outbound("contacts:email")
    assert outbound("events:redeem:direct_mail")
    assert outbound("events:open:email")
    assert not outbound("events:view:web")
    assert not outbound("events:purchase:store")
    assert not outbound("consents:email:withdrawn")  # a consent wipe is judged with the natural factor
    assert describe_cell("events:view:web") == "view events on web per customer-day"
    assert describe_cell("consents:email:withdrawn") == "email consents withdrawn per customer-day"


def test_input_summaries_do_not_depend_on_the_chunking(resolved: Path, model: CampaignModel, tmp_path: Path) -> None:
    """Chunks partition the customers: the tallies add up to those of one chunk."""
    one = score(resolved, model=model, as_of=AS_OF, out=tmp_path / "a.parquet", reasons=0, progress=False, chunks=1)
    three = score(resolved, model=model, as_of=AS_OF, out=tmp_path / "b.parquet", reasons=0, progress=False, chunks=3)
    a, b = one.monitor.inputs.sort("item"), three.monitor.inputs.sort("item")
    assert a["item"].to_list() == b["item"].to_list()
    for column in ("value", "reference", "change", "z"):
        assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), nan_ok=True, rel=1e-9, abs=1e-12)


def test_fail_on_drift_writes_nothing_and_the_cli_exits_3(
    broken_feed: Path, campaign_model_path: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from omni_ml.cli import app

    out = tmp_path / "campaign.parquet"
    with pytest.raises(DriftError, match="health verdict BAD") as caught:
        score(
            broken_feed, model=campaign_model_path, as_of=AS_OF, out=out, reasons=0, progress=False, fail_on_drift=True
        )
    assert caught.value.report.verdict == "bad"  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == [], "no campaign file, no monitor file, no temporary file"
    args = ["score", str(broken_feed), "--model", str(campaign_model_path), "--as-of", AS_OF, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--reasons", "0", "--fail-on-drift"])
    assert result.exit_code == 3, result.output
    assert "DriftError" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, [*args, "--reasons", "0"])  # without the flag the file is written
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert monitor_path(out).exists()


def test_monitor_thresholds_come_from_a_yaml_file(resolved: Path, campaign_model_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from omni_ml.cli import app

    config = tmp_path / "monitor.yaml"
    config.write_text("monitor:\n  psi_bad: 0.3\n  psi_wran: 0.1\n")
    out = tmp_path / "c.parquet"
    args = ["score", str(resolved), "--model", str(campaign_model_path), "--as-of", AS_OF, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--monitor-config", str(config)])
    assert result.exit_code == 2
    assert "psi_wran" in result.output
    assert "psi_warn" in result.output
    assert not out.exists()


def test_monitoring_runs_are_logged_beside_the_model_run_and_listed(
    resolved: Path, model: CampaignModel, tmp_path: Path
) -> None:
    """A model from MLflow: each scoring job logs a monitoring run tagged with the model's run; `monitor` lists them."""
    import mlflow
    from typer.testing import CliRunner

    from omni_ml.cli import app
    from omni_ml.monitor._mlflow import MODEL_RUN_TAG, find_monitoring_run, log_realised
    from omni_ml.scoring import _monitor
    from omni_ml.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri()
    client = mlflow.MlflowClient(uri)
    model_run = client.create_run(client.create_experiment("monitor_test")).info.run_id
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for i in range(2):
        watcher, _ = _monitor.start(model, MonitorConfig(), 4000)
        frame = pl.read_parquet(score(resolved, model=model, as_of=AS_OF, out=tmp_path / f"c{i}.parquet",
                                      reasons=0, progress=False).out)  # fmt: skip
        assert watcher is not None
        watcher.add_scores(frame)
        outcome = _monitor.finish(
            watcher, as_of=moment, out=tmp_path / f"c{i}.parquet", model_uri=f"runs:/{model_run}/campaign_model",
            model_version=None, run_id=model_run, tracking_uri=uri, fail_on_drift=False,
        )  # fmt: skip
        outcome.discard()
        assert outcome.run_id is not None
        run = client.get_run(outcome.run_id)
        assert run.data.tags[MODEL_RUN_TAG] == model_run
        (population,) = run.inputs.dataset_inputs  # the scored population, as metadata
        assert population.dataset.name == "scoring_population"
        assert {t.key: t.value for t in population.tags}["mlflow.data.context"] == "scoring"
        assert int({t.key: t.value for t in population.tags}["customers"]) == outcome.report.customers
        assert {a.path for a in client.list_artifacts(outcome.run_id, "monitor")} >= {
            "monitor/monitor.parquet",
            "monitor/input_drift.csv",
            "monitor/drift.png",
            "monitor/deciles.png",
        }
    # the second run compared its channel shares with the first one's
    assert outcome.report.channels["share_previous"].drop_nulls().len() > 0
    assert find_monitoring_run(uri, model_run, moment) == outcome.run_id
    log_realised(uri, outcome.run_id, {"realised_auc": 0.8})

    plot = tmp_path / "history.png"
    result = CliRunner().invoke(
        app, ["monitor", f"runs:/{model_run}/campaign_model", "--runs", "5", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("2025-01-01")]
    assert len(lines) == 2
    assert "0.800" in lines[-1]
    assert plot.stat().st_size > 1000
    result = CliRunner().invoke(app, ["monitor", str(tmp_path / "c0.parquet")])
    assert result.exit_code == 2
    assert "monitoring history lives in MLflow" in result.output


def test_measure_prints_realised_figures_next_to_the_estimates(
    resolved: Path, model: CampaignModel, tmp_path: Path
) -> None:
    """Scored as of 2024-12-01, measured on December: the estimate from the monitor file beside the realised."""
    from omni_ml.measure import measure_campaign

    out = tmp_path / "december.parquet"
    score(resolved, model=model, as_of="2024-12-01", out=out, reasons=0, progress=False)
    report = measure_campaign(out, resolved, window_days=28, n_boot=0)
    perf = {row[0]: row[1:] for row in report.performance.iter_rows()}  # type: ignore[union-attr]
    campaign = pl.read_parquet(out)
    monitor = pl.read_parquet(monitor_path(out)).filter(pl.col("section") == "performance")
    assert perf["auc"][0] == pytest.approx(monitor.filter(pl.col("metric") == "expected_auc")["value"][0])
    assert perf["conversions"][0] == pytest.approx(campaign["propensity"].sum())
    buyers = (
        pl.read_parquet(resolved / "events.parquet")
        .filter(
            (pl.col("event_type") == "purchase")
            & (pl.col("timestamp") >= dt.datetime(2024, 12, 1, tzinfo=dt.UTC))
            & (pl.col("timestamp") < dt.datetime(2024, 12, 29, tzinfo=dt.UTC))
        )
        .select("customer_id")
        .unique()
        .join(campaign.select("customer_id"), on="customer_id", how="semi")
    )
    assert perf["conversions"][1] == buyers.height
    assert 0.5 < perf["auc"][1] < 1.0
    assert "expected at scoring vs realised" in report.to_text()


# ----------------------------------------------------------------------------- third pass: noise and natural movement


@given(st.integers(3, 12), st.integers(150, 3_000), st.integers(150, 3_000), st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None)
def test_psi_of_two_samples_of_one_distribution_passes_its_noise_floor_at_about_alpha(
    bins: int, n1: int, n2: int, seed: int
) -> None:
    """Two multinomial samples of one distribution: the PSI exceeds psi_noise(alpha) about alpha of the time.

    Where the chi-square approximation holds: every bin expects at least 5 rows in each sample (each share is
    at least half of ``1 / bins``; with a share near 0 an empty bin's clipped log ratio inflates the index).
    """
    from omni_ml.monitor import psi_noise

    rng = np.random.default_rng(seed)
    shares = 0.5 / bins + 0.5 * rng.dirichlet(np.full(bins, 3.0))
    assert min(n1, n2) * shares.min() >= 5
    a = rng.multinomial(n1, shares, size=400) / n1
    b = rng.multinomial(n2, shares, size=400) / n2
    floor = psi_noise(bins, 1 / n1 + 1 / n2, 0.05)
    above = np.mean([psi(x, y) > floor for x, y in zip(a, b, strict=True)])
    assert above < 0.12, (above, floor)
    # a real move of the same sizes (half of the first bin's share moved to the last) clears the floor
    moved = shares.copy()
    moved[0], moved[-1] = shares[0] / 2, shares[-1] + shares[0] / 2
    c = rng.multinomial(n2, moved, size=50) / n2
    if psi(shares, moved) > 3 * floor:
        assert np.mean([psi(x, y) > floor for x, y in zip(a[:50], c, strict=True)]) > 0.8


def _profile(
    name: str, shares: list[float], rows: int, *, outbound: bool = False, mode_bin: int | None = None
) -> object:
    from omni_ml.monitor import FeatureProfile

    edges = tuple(float(i) for i in range(1, len(shares)))
    return FeatureProfile(
        name=name, description=name, kind="numeric", edges=edges, levels=(), shares=tuple(shares), null_share=0.0,
        quantiles=(0.0,) * 5, rows=rows, outbound=outbound, mode_bin=mode_bin,
    )  # fmt: skip


def _reference(*profiles: object) -> object:
    from omni_ml.monitor import Reference

    return Reference(
        as_of=dt.datetime(2024, 6, 1, tzinfo=dt.UTC), rows=1000, features=tuple(profiles),  # type: ignore[arg-type]
        decile_shares=(0.1,) * 10, propensity_quantiles=(), mean_propensity=0.1, label_rate=0.1, label_rows=1000,
        horizon_days=28,
    )  # fmt: skip


def _values(shares: list[float], n: int) -> np.ndarray:
    """``n`` values in bins 0..k-1 (bin i holds the value i + 0.5) with exactly these shares (rounded)."""
    counts = np.round(np.asarray(shares) * n).astype(int)
    return np.repeat(np.arange(len(shares)) + 0.5, counts)


def test_a_feature_move_over_few_rows_must_clear_its_noise_and_outbound_features_only_shift() -> None:
    """The same shares moved: drift over many rows, not over a few; an outbound aggregate is at most a shift."""
    from omni_ml.monitor import ScoringMonitor

    ref = [0.25, 0.25, 0.25, 0.25]
    now = [0.05, 0.15, 0.30, 0.50]  # PSI 0.56: past psi_bad 0.35
    assert psi(ref, now) > MonitorConfig().psi_bad
    for rows, flag in ((4_000, "drift"), (40, "ok")):
        reference = _reference(_profile("x", ref, rows), _profile("contacts_7d", ref, rows, outbound=True))
        monitor = ScoringMonitor(reference, expected_customers=rows)  # type: ignore[arg-type]
        values = _values(now, rows)
        monitor.add_features(pl.DataFrame({"x": values, "contacts_7d": values}))
        report = monitor.finish(as_of=dt.datetime(2024, 7, 1, tzinfo=dt.UTC))
        table = {r["feature"]: r for r in report.features.iter_rows(named=True)}
        assert table["x"]["flag"] == flag, table["x"]
        assert table["x"]["noise_psi"] == pytest.approx(
            _noise(4, 2 / rows), rel=1e-9
        )  # both sides have ``rows`` rows, four bins
        assert table["contacts_7d"]["flag"] == ("shift" if flag == "drift" else "ok")
        assert report.verdict == ("bad" if flag == "drift" else "ok")
        assert report.drifting == (["x"] if flag == "drift" else [])


def _noise(bins: int, inv_n: float) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(1 - MonitorConfig().psi_alpha, bins - 1)) * inv_n


def _order_value_reference(natural_change: float) -> object:
    from omni_ml.monitor import InputItem, InputReference

    item = InputItem("order_value:purchase", "order value", "order_value", count=2_000.0, mean=4.0, var=0.25,
                     shares=(), natural_z=9.0, natural_change=natural_change)  # fmt: skip
    return InputReference(window_days=28, windows=6, customers=2_500.0, amount_edges=(), items=(item,))


@pytest.mark.parametrize(
    ("natural", "change", "flag"), [(0.05, 0.3, "drift"), (0.2, 0.3, "shift"), (0.2, 0.45, "drift")]
)
def test_the_order_value_drifts_on_a_change_beyond_its_natural_change(natural: float, change: float, flag: str) -> None:
    """|z| >= input_z_bad and a change past max(order_value_change_min, natural_factor x natural change)."""
    from omni_ml.monitor._events import InputCounter

    counter = InputCounter(_order_value_reference(natural))  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    x = rng.normal(4.0 + change, 0.5, 400)
    x += 4.0 + change - x.mean()  # exactly this change of the mean
    counter.tally.amount_n, counter.tally.amount_sum, counter.tally.amount_sumsq = x.size, x.sum(), (x**2).sum()
    row = counter.compare(MonitorConfig()).row(0, named=True)
    assert row["change"] == pytest.approx(change)
    assert abs(row["z"]) > 9.0  # larger than the natural z: the z statistic alone no longer sets the bar
    assert row["change_min"] == pytest.approx(max(0.1, 2 * natural))
    assert row["flag"] == flag


def test_a_volume_must_move_fourfold_by_default() -> None:
    """``volume_change_min`` ln 4: a volume a little below half is only a shift; a fifth is a drift."""
    from omni_ml.monitor import InputItem, InputReference
    from omni_ml.monitor._events import InputCounter

    item = InputItem("events:return:web", "returns", "volume", count=6_000.0, exposure=6 * 2_500 * 28.0)
    reference = InputReference(window_days=28, windows=6, customers=2_500.0, amount_edges=(), items=(item,))
    flags = {}
    for factor in (0.45, 0.2):
        counter = InputCounter(reference)
        counter.tally.customers, counter.tally.days = 2_500, 28.0
        counter.tally.counts = {"events:return:web": int(1_000 * factor)}
        row = counter.compare(MonitorConfig()).row(0, named=True)
        assert abs(row["z"]) > 4
        flags[factor] = row["flag"]
    assert flags == {0.45: "shift", 0.2: "drift"}
    assert MonitorConfig().volume_change_min == pytest.approx(np.log(4), abs=0.01)
