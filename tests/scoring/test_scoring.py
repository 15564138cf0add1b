"""The batch scoring job: schema, consent, control group, atomic and reproducible output, errors, CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from omni_ml.campaign import CampaignModel
from omni_ml.cli import app
from omni_ml.data import Histories, load_histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, LeakageError, ModelNotFoundError, SchemaError
from omni_ml.identity import consent_state, resolve_identities
from omni_ml.scoring import campaign_schema, score, streaming_tables
from omni_ml.scoring._hashing import BUCKET_SEED, bucket_expr, bucket_of, reference_hash, stable_hash, uniform_from_hash

AS_OF = "2025-01-01"
_AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model(campaign_model_path: Path) -> CampaignModel:
    return CampaignModel.load(campaign_model_path)


@pytest.fixture(scope="module")
def campaign(small_world: Path, campaign_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("campaign") / "campaign.parquet"
    score(small_world, model=campaign_model_path, as_of=AS_OF, out=out, reasons=0, chunks=3, progress=False)
    return out


# ----------------------------------------------------------------------------- the stable hash


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(max_size=12), min_size=1, max_size=20), seed=st.integers(0, 2**64 - 1))
def test_stable_hash_matches_its_plain_python_definition(ids: list[str], seed: int) -> None:
    got = stable_hash(pl.Series(ids, dtype=pl.String), seed).to_list()
    assert got == [reference_hash(i, seed) for i in ids]


def test_stable_hash_of_a_slice_equals_hash_of_the_values() -> None:
    s = pl.Series([f"C{i:05d}" for i in range(50)])
    assert stable_hash(s.slice(17, 9), 3).to_list() == stable_hash(pl.Series(s.slice(17, 9).to_list()), 3).to_list()


def test_buckets_are_hash_ranges_and_the_lazy_filter_agrees() -> None:
    ids = pl.Series("customer_id", [f"C{i:06d}" for i in range(5_000)])
    h = stable_hash(ids, BUCKET_SEED).to_numpy()
    for n in (1, 3, 7):
        b = bucket_of(h, n)
        assert b.min() >= 0
        assert b.max() <= n - 1
        # ranges: sorting by hash sorts by bucket
        assert (np.diff(b[np.argsort(h)]) >= 0).all()
        lazy = ids.to_frame().lazy().select(bucket_expr("customer_id", n)).collect().to_series().to_numpy()
        assert (lazy == b).all()


def test_control_draw_is_uniform_nested_and_seed_dependent() -> None:
    ids = pl.Series([f"C{i:07d}" for i in range(200_000)])
    u = uniform_from_hash(stable_hash(ids, 11)).to_numpy()
    for f in (0.05, 0.1, 0.5):
        assert abs((u < f).mean() - f) < 4 * np.sqrt(f * (1 - f) / u.size)
    assert ((u < 0.05) <= (u < 0.1)).all()  # raising the fraction only adds customers
    other = uniform_from_hash(stable_hash(ids, 12)).to_numpy()
    overlap = ((u < 0.1) & (other < 0.1)).mean()
    assert abs(overlap - 0.01) < 0.003  # a new seed draws an independent group


# ----------------------------------------------------------------------------- the campaign file


def test_campaign_file_schema_and_lineage(campaign: Path, model: CampaignModel, campaign_model_path: Path) -> None:
    frame = pl.read_parquet(campaign)
    assert frame.schema == campaign_schema(model, reasons=0)
    expected = ["customer_id", "as_of", "propensity", "propensity_decile", "best_channel", "recommended_channel"]
    assert frame.columns[:6] == expected
    assert frame.columns[-3:] == ["model_uri", "model_version", "run_id"]
    assert frame["customer_id"].is_unique().all()
    assert (frame["model_uri"] == str(campaign_model_path.resolve())).all()
    assert frame["model_version"].null_count() == frame.height
    assert frame["run_id"].null_count() == frame.height


def test_campaign_file_order_is_hash_then_id(campaign: Path) -> None:
    frame = pl.read_parquet(campaign)
    order = stable_hash(frame["customer_id"], BUCKET_SEED)
    assert frame.with_columns(h=order).sort("h", "customer_id")["customer_id"].equals(frame["customer_id"])


def test_campaign_file_never_contacts_without_consent(campaign: Path, small_world: Path) -> None:
    frame = pl.read_parquet(campaign)
    hist = resolve_identities(load_histories(small_world), as_of=AS_OF)
    consent = consent_state(hist, dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    contacted = frame.filter(pl.col("best_channel") != "no_contact").join(consent, on="customer_id", how="left")
    assert contacted.height > 0
    for row in contacted.iter_rows(named=True):
        assert row[f"consent_{row['best_channel']}"] is True


def test_control_group_is_held_out_and_keeps_the_recommendation(campaign: Path) -> None:
    frame = pl.read_parquet(campaign)
    control = frame.filter(pl.col("control_group"))
    treated = frame.filter(~pl.col("control_group"))
    f, n = 0.1, frame.height
    assert abs(control.height / n - f) < 4 * np.sqrt(f * (1 - f) / n)
    assert (control["best_channel"] == "no_contact").all()
    held = control.filter(pl.col("recommended_channel") != "no_contact")
    assert held.height > 0
    assert (held["rule"] == "control_group").all()
    assert (control.filter(pl.col("recommended_channel") == "no_contact")["rule"] != "control_group").all()
    assert treated["best_channel"].equals(treated["recommended_channel"])
    assert (treated["rule"] != "control_group").all()


def test_same_inputs_give_the_same_bytes_for_any_chunk_count(
    campaign: Path, small_world: Path, campaign_model_path: Path, tmp_path: Path
) -> None:
    for chunks, name in ((1, "a.parquet"), (5, "c.parquet")):
        score(
            small_world,
            model=campaign_model_path,
            as_of=AS_OF,
            out=tmp_path / name,
            reasons=0,
            chunks=chunks,
            progress=False,
        )
    # the module's campaign file was written with 3 chunks
    assert _digest(tmp_path / "a.parquet") == _digest(campaign) == _digest(tmp_path / "c.parquet")


def test_control_group_depends_on_seed_and_fraction_only(
    small_world: Path, model: CampaignModel, campaign: Path, tmp_path: Path
) -> None:
    base = pl.read_parquet(campaign).select("customer_id", "control_group")
    args = {"model": model, "as_of": AS_OF, "reasons": 0, "progress": False}
    score(small_world, out=tmp_path / "more.parquet", control_fraction=0.3, chunks=2, **args)  # type: ignore[arg-type]
    score(small_world, out=tmp_path / "seed.parquet", seed=1, chunks=1, **args)  # type: ignore[arg-type]
    more = pl.read_parquet(tmp_path / "more.parquet").select("customer_id", pl.col("control_group").alias("more"))
    seeded = pl.read_parquet(tmp_path / "seed.parquet").select("customer_id", pl.col("control_group").alias("seeded"))
    joined = base.join(more, on="customer_id").join(seeded, on="customer_id")
    assert joined.filter(pl.col("control_group") & ~pl.col("more")).height == 0
    assert joined["more"].sum() > 2 * joined["control_group"].sum()
    assert not joined["seeded"].equals(joined["control_group"])


def test_csv_output_holds_the_same_rows(
    small_world: Path, model: CampaignModel, campaign: Path, tmp_path: Path
) -> None:
    out = tmp_path / "campaign.csv"
    summary = score(small_world, model=model, as_of=AS_OF, out=out, reasons=0, chunks=2, progress=False)
    csv = pl.read_csv(out, schema=pl.read_parquet_schema(campaign) | {"as_of": pl.String})  # type: ignore[operator]
    parquet = pl.read_parquet(campaign)
    assert csv.height == parquet.height == summary.customers
    assert csv["customer_id"].equals(parquet["customer_id"])
    assert csv["best_channel"].equals(parquet["best_channel"])
    assert np.allclose(csv["propensity"].to_numpy(), parquet["propensity"].to_numpy())


def test_summary_counts_match_the_file(small_world: Path, model: CampaignModel, tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    summary = score(small_world, model=model, as_of=AS_OF, out=out, reasons=0, chunks=2, progress=False)
    frame = pl.read_parquet(out)
    assert summary.customers == frame.height
    assert summary.per_channel == dict(frame["best_channel"].value_counts().iter_rows())
    assert summary.rules == dict(frame["rule"].value_counts().iter_rows())
    assert summary.control == frame["control_group"].sum()
    assert summary.no_contact == (frame["best_channel"] == "no_contact").sum()
    text = summary.to_text()
    assert f"customers:  {frame.height:,}" in text
    assert "control group:" in text
    assert "control_group" in text


# ----------------------------------------------------------------------------- atomic writes


def test_failure_mid_job_leaves_no_file_and_keeps_the_old_one(
    small_world: Path, model: CampaignModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "campaign.parquet"
    out.write_bytes(b"yesterday's campaign")
    original = CampaignModel.score
    calls = {"n": 0}

    def failing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("executor lost")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CampaignModel, "score", failing)
    with pytest.raises(RuntimeError, match="executor lost"):
        score(small_world, model=model, as_of=AS_OF, out=out, reasons=0, chunks=3, progress=False)
    assert out.read_bytes() == b"yesterday's campaign"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.parquet"]


def test_killed_job_never_leaves_a_file_under_the_final_name(
    small_world: Path, campaign_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "campaign.parquet"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from omni_ml.campaign import CampaignModel
        from omni_ml.scoring import score
        original = CampaignModel.score
        calls = []
        def killing(self, *args, **kwargs):
            calls.append(1)
            print("mlflow imported:", "mlflow" in sys.modules, flush=True)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *args, **kwargs)
        CampaignModel.score = killing
        score({str(small_world)!r}, model={str(campaign_model_path)!r}, as_of={AS_OF!r}, out={str(out)!r},
              reasons=0, chunks=3, progress=False)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, check=False)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert "mlflow imported: False" in done.stdout.decode()  # a local model never needs MLflow
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert all(name.startswith(".campaign.parquet.") and name.endswith(".tmp") for name in leftovers)


# ----------------------------------------------------------------------------- validation and errors


def test_missing_model_path_and_alias_raise_model_not_found(small_world: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file"):
        score(small_world, model=tmp_path / "nope.joblib", as_of=AS_OF, out=tmp_path / "c.parquet", progress=False)
    with pytest.raises(ModelNotFoundError, match="omni_champion"):
        score(small_world, model="models:/omni_champion@champion", as_of=AS_OF, out=tmp_path / "c.parquet")
    assert list(tmp_path.iterdir()) == [] or all(p.suffix == ".db" for p in tmp_path.iterdir())


def test_a_file_that_is_not_a_campaign_model_is_refused(small_world: Path, tmp_path: Path) -> None:
    import joblib

    joblib.dump({"not": "a model"}, tmp_path / "dict.joblib")
    # never unpickled: a file without the checksum that `train --out` / CampaignModel.save writes is refused (issue 22)
    with pytest.raises(ModelNotFoundError, match="no checksum file 'dict.joblib.sha256' beside it"):
        score(small_world, model=tmp_path / "dict.joblib", as_of=AS_OF, out=tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out": "campaign.txt"}, "must end in .parquet or .csv"),
        ({"out": "missing_dir/campaign.parquet"}, "does not exist; create it first"),
        ({"control_fraction": 1.0}, r"control_fraction must be in \[0, 1\)"),
        ({"chunks": 0}, "chunks must be an integer"),
        ({"reasons": -1}, "reasons must be an integer"),
        ({"as_of": "yesterday"}, "cannot parse 'yesterday'"),
        ({"engine": "dask"}, "engine must be 'polars' or 'spark'"),
    ],
)
def test_bad_arguments_raise_config_error_before_any_work(
    small_world: Path, model: CampaignModel, tmp_path: Path, kwargs: dict, match: str
) -> None:
    args = {"model": model, "as_of": AS_OF, "out": "campaign.parquet", "progress": False, **kwargs}
    args["out"] = tmp_path / args["out"]
    with pytest.raises(ConfigError, match=match):
        score(small_world, **args)  # type: ignore[arg-type]


def test_bad_histories_raise_clear_errors(small_world: Path, model: CampaignModel, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SchemaError, match="no events table"):
        score(empty, model=model, as_of=AS_OF, out=tmp_path / "c.parquet", progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    pl.DataFrame(
        {"customer_id": ["a", "b"], "timestamp": ["2024-05-01", "not a date"], "amount": [1.0, 2.0]}
    ).write_csv(broken / "events.csv")
    with pytest.raises(SchemaError, match=r"events\.timestamp: 1 of 2 rows"):
        score(broken, model=model, as_of=AS_OF, out=tmp_path / "c.parquet", progress=False)
    with pytest.raises(DataInsufficientError, match="no rows before as_of 2023-06-01"):
        score(small_world, model=model, as_of="2023-06-01", out=tmp_path / "c.parquet", progress=False)
    with pytest.raises(LeakageError, match="before the model's training as-of date 2024-12-01"):
        score(small_world, model=model, as_of="2024-11-01", out=tmp_path / "c.parquet", progress=False)
    assert not (tmp_path / "c.parquet").exists()


def test_cli_scores_and_exits_2_on_bad_input(small_world: Path, campaign_model_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "campaign.parquet"
    base = ["score", str(small_world), "--model", str(campaign_model_path), "--as-of", AS_OF]
    ok = runner.invoke(app, [*base, "--out", str(out), "--reasons", "0", "--chunks", "2", "--seed", "4"])
    assert ok.exit_code == 0, ok.output
    assert "campaign file:" in ok.output
    assert f"{pl.read_parquet(out).height:,}" in ok.output
    bad = runner.invoke(app, [*base, "--out", str(out), "--control-fraction", "1.5"])
    assert bad.exit_code == 2
    assert "control_fraction must be in [0, 1)" in " ".join(bad.output.split())
    missing = runner.invoke(app, [*base[:3], str(tmp_path / "nope.joblib"), *base[4:], "--out", str(out)])
    assert missing.exit_code == 2
    assert "ModelNotFoundError" in missing.output
    assert "no such file" in " ".join(missing.output.split())


@pytest.mark.spark
def test_spark_and_single_machine_write_identical_files(
    small_world: Path, campaign_model_path: Path, tmp_path: Path
) -> None:
    from omni_ml.scoring.spark import local_session

    spark = local_session(cores=1)  # one Python worker: cheaper start-up on the 2-core CI machine
    try:
        args = {"model": campaign_model_path, "as_of": AS_OF, "reasons": 2, "chunks": 2, "progress": False}
        on_spark = score(small_world, out=tmp_path / "spark.parquet", engine="spark", **args)  # type: ignore[arg-type]
    finally:
        spark.stop()
    local = score(small_world, out=tmp_path / "local.parquet", **args)  # type: ignore[arg-type]
    assert on_spark.customers == local.customers > 0
    assert on_spark.rules == local.rules
    assert _digest(tmp_path / "spark.parquet") == _digest(tmp_path / "local.parquet")
    assert pl.read_parquet(tmp_path / "spark.parquet")["reason_1"].null_count() < local.customers
    # each task profiled its bucket: the same feature and input drift as the single-machine run
    assert on_spark.monitor is not None
    assert local.monitor is not None
    assert on_spark.monitor.features.height == local.monitor.features.height > 0
    assert on_spark.monitor.features.equals(local.monitor.features)
    assert on_spark.monitor.inputs.height == local.monitor.inputs.height > 0
    assert on_spark.monitor.inputs.equals(local.monitor.inputs)
    assert on_spark.monitor.verdict == local.monitor.verdict
    # staging removed; each file has its monitoring report beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "local.monitor.parquet",
        "local.parquet",
        "spark.monitor.parquet",
        "spark.parquet",
    ]


@pytest.fixture(scope="module")
def resolved_world(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world identity-resolved and written back as parquet: every row has a customer_id."""
    hist = resolve_identities(load_histories(small_world), as_of=AS_OF)
    out = tmp_path_factory.mktemp("resolved_world")
    for table in ("events", "contacts", "consents", "customers"):
        getattr(hist, table).collect().write_parquet(out / f"{table}.parquet")
    return out


def test_chunks_read_only_their_rows_and_match_the_in_memory_job(
    resolved_world: Path, campaign_model_path: Path, tmp_path: Path
) -> None:
    from omni_ml.scoring import read_chunk, streaming_tables

    scans = streaming_tables(resolved_world)
    assert scans is not None
    chunk = read_chunk(scans, 1, 3, _AS_OF)
    ids = chunk.events.select("customer_id").unique().collect()["customer_id"]
    assert set(bucket_of(stable_hash(ids, BUCKET_SEED).to_numpy(), 3).tolist()) == {1}
    args = {"model": campaign_model_path, "as_of": AS_OF, "reasons": 1, "progress": False}
    score(resolved_world, out=tmp_path / "streamed.parquet", chunks=3, **args)  # type: ignore[arg-type]
    in_memory = load_histories(resolved_world)
    score(in_memory, out=tmp_path / "in_memory.parquet", chunks=2, **args)  # type: ignore[arg-type]
    assert _digest(tmp_path / "streamed.parquet") == _digest(tmp_path / "in_memory.parquet")


def test_a_bad_row_in_a_late_chunk_leaves_no_file(resolved_world: Path, model: CampaignModel, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for table in ("contacts", "consents", "customers"):
        (broken / f"{table}.parquet").write_bytes((resolved_world / f"{table}.parquet").read_bytes())
    events = pl.read_parquet(resolved_world / "events.parquet").with_columns(pl.col("timestamp").cast(pl.String))
    events = events.with_columns(
        pl.when(pl.int_range(pl.len()) == events.height - 1)
        .then(pl.lit("soon"))
        .otherwise("timestamp")
        .alias("timestamp")
    )
    events.write_parquet(broken / "events.parquet")
    out = tmp_path / "campaign.parquet"
    with pytest.raises(SchemaError, match=r"events\.timestamp: 1 of [\d,]+ rows cannot be parsed"):
        score(broken, model=model, as_of=AS_OF, out=out, reasons=0, chunks=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


_TABLES = ("events", "contacts", "consents", "customers")


def _few_customers(hist: Histories, n: int) -> list[str]:
    ids = hist.customers.select("customer_id").sort("customer_id").collect()["customer_id"]  # type: ignore[union-attr]
    return ids.head(n).to_list()


def _write_resolved(hist: Histories, ids: list[str], directory: Path, **events_change: pl.Expr) -> Path:
    """The histories of ``ids`` as resolved parquet files (every row has a customer_id)."""
    directory.mkdir()
    for table in _TABLES:
        frame = getattr(hist, table).filter(pl.col("customer_id").is_in(ids)).collect()
        if table == "events" and events_change:
            frame = frame.with_columns(**events_change)
        frame.write_parquet(directory / f"{table}.parquet")
    return directory


@pytest.mark.filterwarnings("ignore:events. the last event")  # three customers: the last event is weeks old
def test_more_chunks_than_customers_scores_every_customer_like_one_chunk(
    small_histories: Histories, model: CampaignModel, tmp_path: Path
) -> None:
    # three customers with history and one known only from the customers table
    ids = _few_customers(small_histories, 3)
    world = _write_resolved(small_histories, ids, tmp_path / "world")
    customers = pl.read_parquet(world / "customers.parquet")
    only = customers.head(1).with_columns(customer_id=pl.lit("ZZ-customers-table-only"))
    pl.concat([customers, only]).write_parquet(world / "customers.parquet")
    assert streaming_tables(world) is not None  # chunk-by-chunk reading: most of 40 buckets are empty
    # three customers' histories may end long before AS_OF: staleness is not what this test is about
    args = {"model": model, "as_of": AS_OF, "reasons": 1, "progress": False, "allow_stale": True}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="events: the last event", category=UserWarning)
        summary = score(world, out=tmp_path / "streamed.parquet", chunks=40, **args)  # type: ignore[arg-type]
        score(load_histories(world), out=tmp_path / "one_chunk.parquet", chunks=1, **args)  # type: ignore[arg-type]
    frame = pl.read_parquet(tmp_path / "streamed.parquet")
    assert summary.customers == frame.height == 4
    assert sorted(frame["customer_id"]) == sorted([*ids, "ZZ-customers-table-only"])
    assert _digest(tmp_path / "streamed.parquet") == _digest(tmp_path / "one_chunk.parquet")


@pytest.mark.parametrize("dtype", [pl.String, pl.Date])
def test_streamed_histories_that_start_after_as_of_are_refused(
    small_histories: Histories, model: CampaignModel, tmp_path: Path, dtype: pl.DataType
) -> None:
    # every event 800 days later: nothing happened before as_of, there is nothing to score
    later = (pl.col("timestamp") + pl.duration(days=800)).cast(dtype)
    world = _write_resolved(small_histories, _few_customers(small_histories, 60), tmp_path / "world", timestamp=later)
    assert streaming_tables(world) is not None
    out = tmp_path / "campaign.parquet"
    with pytest.raises(DataInsufficientError, match=r"no rows before as_of 2025-01-01 \(first event: 2026-03-1\d\)"):
        score(world, model=model, as_of=AS_OF, out=out, reasons=0, chunks=3, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_streamed_text_timestamps_with_history_still_score(
    small_histories: Histories, model: CampaignModel, tmp_path: Path
) -> None:
    world = _write_resolved(
        small_histories, _few_customers(small_histories, 60), tmp_path / "w", timestamp=pl.col("timestamp").cast(str)
    )
    out = tmp_path / "campaign.parquet"
    summary = score(world, model=model, as_of=dt.date(2025, 1, 1), out=out, reasons=0, chunks=3, progress=False)
    assert summary.customers == pl.read_parquet(out).height == 60


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (["resolve", "{dir}"], "identity_map.parquet"),
        (["features", "{dir}", "--as-of", "2025-03-01"], "features.parquet"),
        (["train", "{dir}", "--as-of", "2025-03-01", "--horizon", "30", "--no-tracking"], "campaign_model.joblib"),
    ],
)
def test_a_directory_as_out_is_refused_before_any_work(
    sample_dir: Path, tmp_path: Path, command: list[str], example: str
) -> None:
    target = tmp_path / "existing_dir"
    target.mkdir()
    args = [a.replace("{dir}", str(sample_dir)) for a in command]
    result = CliRunner().invoke(app, [*args, "--out", str(target)])
    assert result.exit_code == 2, result.output
    text = "".join(result.output.split())  # the console wraps long lines anywhere
    assert "ConfigError" in text
    assert f"--out'{target}'isadirectory" in text
    assert example in text
    assert [p.name for p in tmp_path.iterdir() if p.name != "mlflow.db"] == ["existing_dir"]
    assert list(target.iterdir()) == []


def test_a_failed_identity_map_write_keeps_the_old_map_and_leaves_no_temp_file(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "map.parquet"
    out.write_bytes(b"yesterday's map")

    def disk_full(self: pl.DataFrame, file: Path, *args: object, **kwargs: object) -> None:
        Path(file).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    result = CliRunner().invoke(app, ["resolve", str(sample_dir), "--out", str(out)])
    assert result.exit_code == 1
    assert isinstance(result.exception, OSError)
    assert out.read_bytes() == b"yesterday's map"
    assert [p.name for p in tmp_path.iterdir() if p.name != "mlflow.db"] == ["map.parquet"]


def test_a_failed_model_save_keeps_the_old_model_and_leaves_no_temp_file(
    model: CampaignModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import joblib

    target = tmp_path / "campaign_model.joblib"
    model.save(target)
    before = target.read_bytes()

    def interrupted(value: object, filename: Any, *args: object, **kwargs: object) -> None:
        # the model is serialised into memory first (then hashed and written): a file object or a path
        if hasattr(filename, "write"):
            filename.write(before[:100])
        else:
            Path(filename).write_bytes(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(joblib, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "mlflow.db") == [
        "campaign_model.joblib",
        "campaign_model.joblib.sha256",
    ]
    assert CampaignModel.load(target).decile_edges_ == model.decile_edges_


@pytest.mark.parametrize("layout", ["raw", "resolved_text_timestamps"])
def test_scoring_long_after_the_last_event_is_refused_unless_allowed_then_warns_22(
    small_world: Path, small_histories: Histories, model: CampaignModel, tmp_path: Path, layout: str
) -> None:
    world = small_world
    if layout != "raw":
        ids = _few_customers(small_histories, 200)
        world = _write_resolved(small_histories, ids, tmp_path / "w", timestamp=pl.col("timestamp").cast(str))
    end = small_histories.events.select(pl.col("timestamp").max()).collect().item()
    args = {"model": model, "reasons": 0, "chunks": 2, "progress": False}
    with pytest.raises(DataInsufficientError, match=r"73 days before as_of 2025-03-15.*--allow-stale"):
        score(world, as_of="2025-03-15", out=tmp_path / "late.parquet", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "late.parquet").exists()
    with pytest.warns(UserWarning, match=r"events: the last event \(2024-12-31\) is 73 days before as_of 2025-03-15"):
        late = score(world, as_of="2025-03-15", out=tmp_path / "late.parquet", allow_stale=True, **args)  # type: ignore[arg-type]
    assert late.history_end is not None
    assert late.history_end.date() == end.date()
    assert "more than the model's 28-day horizon" in late.to_text()
    assert "history to: 2024-12-31" in late.to_text()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh = score(world, as_of=AS_OF, out=tmp_path / "fresh.parquet", **args)  # type: ignore[arg-type]
    assert not [w for w in caught if "last event" in str(w.message)]
    assert fresh.warnings == ()
    assert "warning:" not in fresh.to_text()


def test_writer_that_fails_to_start_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """__exit__ does not run when __enter__ raises: the writer must clean up its own temporary file."""
    from omni_ml.scoring import _writer

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_writer.pq, "ParquetWriter", broken)
    target = tmp_path / "campaign.parquet"
    with pytest.raises(OSError, match="disk full"), _writer.AtomicTableWriter(target, pl.Schema({"x": pl.Int64})):
        pass
    assert list(tmp_path.iterdir()) == []
