"""Review of the scheduled scoring job: edge cases of chunking, dates, consent and the CLI contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from omni_ml.campaign import CampaignModel
from omni_ml.cli import app
from omni_ml.data import Histories, load_histories
from omni_ml.exceptions import DataInsufficientError
from omni_ml.scoring import score, streaming_tables

AS_OF = "2025-01-01"
_TABLES = ("events", "contacts", "consents", "customers")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model(campaign_model_path: Path) -> CampaignModel:
    return CampaignModel.load(campaign_model_path)


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


# ----------------------------------------------------------------------------- other files the CLI writes


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


# ----------------------------------------------------------------------------- stale histories


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
