"""Scoring inputs, checked before anyone is scored: arguments, model, histories and their dates; chunked reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml._time import utc_column
from omni_ml._unprofiled import profiling_recorded
from omni_ml.data import PROFILING, Histories, UnknownTableWarning, load_histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, LeakageError, ModelNotFoundError, SchemaError
from omni_ml.identity import ensure_resolved
from omni_ml.scoring._hashing import (
    BUCKET_SEED,
    bucket_expr,
    bucket_of,
    stable_hash,
)
from omni_ml.scoring._writer import output_format

_PERSON_TABLES = ("events", "contacts", "consents", "customers")


@dataclasses.dataclass(frozen=True)
class LoadedCampaignModel:
    """A campaign model and where it came from (written on every row of the campaign file)."""

    model: Any
    model_uri: str | None
    model_version: str | None
    run_id: str | None


def _check_arguments(
    out: Path, reasons: int, control_fraction: float, seed: int, chunks: int | None, explore: float = 0.0
) -> None:
    problems = []
    if output_format(out) is None:
        problems.append(f"out {str(out)!r} must end in .parquet or .csv (got {out.suffix or 'no extension'!r})")
    if out.is_dir():
        problems.append(f"out {str(out)!r} is a directory; give a file name such as campaign.parquet")
    elif not out.parent.is_dir():
        problems.append(f"the directory of out ({str(out.parent)!r}) does not exist; create it first")
    if not isinstance(reasons, int) or isinstance(reasons, bool) or not 0 <= reasons <= 20:
        problems.append(f"reasons must be an integer in 0..20 (got {reasons!r})")
    if not isinstance(control_fraction, int | float) or not 0.0 <= float(control_fraction) < 1.0:
        problems.append(f"control_fraction must be in [0, 1) (got {control_fraction!r}); 0.1 holds out 10%")
    if isinstance(explore, bool) or not isinstance(explore, int | float) or not 0.0 <= float(explore) < 1.0:
        problems.append(
            f"explore (--explore) must be in [0, 1) (got {explore!r}); 0.1 draws the channel at random for 10% "
            "of the customers outside the control group"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(f"seed must be a non-negative integer (got {seed!r})")
    if chunks is not None and (not isinstance(chunks, int) or isinstance(chunks, bool) or not 1 <= chunks <= 100_000):
        problems.append(f"chunks must be an integer in 1..100000 or None for automatic (got {chunks!r})")
    if problems:
        msg = "score: " + "; ".join(problems) + "."
        raise ConfigError(msg)


def _load_model(model: Any, *, tracking_uri: str | None = None) -> LoadedCampaignModel:
    """Resolve ``model`` (an object, a local path, ``models:/NAME@ALIAS``, ``models:/NAME/V`` or ``runs:/``).

    Raises
    ------
    ModelNotFoundError
        The path, run, registered name or alias does not exist; the message says what does.
    """
    if isinstance(model, str | Path):
        uri = str(model)
        if uri.startswith(("models:/", "runs:/")) or "://" in uri:
            from omni_ml.tracking import load_campaign_model

            loaded = load_campaign_model(uri, tracking_uri=tracking_uri)
            result = LoadedCampaignModel(loaded.model, loaded.model_uri, loaded.model_version, loaded.run_id)
        else:
            path = Path(uri)
            if not path.is_file():
                where = path.parent if path.parent.is_dir() else None
                near = sorted(p.name for p in where.glob("*.joblib"))[:5] if where else []
                msg = (
                    f"model {uri!r}: no such file"
                    + (f" (model files in {str(where)!r}: {near})" if near else "")
                    + ". Hint: pass a file saved with CampaignModel.save(), or models:/NAME@ALIAS / runs:/RUN_ID/..."
                    " for a model in MLflow."
                )
                raise ModelNotFoundError(msg)
            from omni_ml._model_files import load_verified

            obj = load_verified(path)  # checks the sha256 before anything is unpickled
            result = LoadedCampaignModel(obj, str(path.resolve()), None, None)
    else:
        result = LoadedCampaignModel(model, None, None, None)
    missing = [m for m in ("score", "output_schema") if not callable(getattr(result.model, m, None))]
    if missing:
        msg = (
            f"model {result.model_uri or type(result.model).__name__!r} is a {type(result.model).__name__}, not a "
            f"campaign model (no {', '.join(missing)}). Hint: fit and save an omni_ml.CampaignModel."
        )
        raise ModelNotFoundError(msg)
    if not getattr(result.model, "is_fitted", True):
        msg = "model is a CampaignModel that has not been fitted. Hint: call .fit(hist, as_of, horizon_days=...) first."
        raise ModelNotFoundError(msg)
    return result


def _load_histories(hist_or_dir: Histories | str | Path, as_of: dt.datetime) -> Histories:
    if isinstance(hist_or_dir, Histories):
        return hist_or_dir
    if not isinstance(hist_or_dir, str | Path):
        msg = f"histories must be a directory or a Histories object, got {type(hist_or_dir).__name__}."
        raise SchemaError(msg)
    with warnings.catch_warnings():
        # An unknown file is reported by `omni-ml validate`; it does not stop a scoring job.
        warnings.simplefilter("ignore", UnknownTableWarning)
        return load_histories(hist_or_dir, as_of=as_of)


def _history_facts(hist: Histories) -> tuple[dt.datetime | None, dt.datetime | None, int]:
    """First and last event and number of customers (an upper bound) from the load report."""
    summary = hist.report.tables.get("events") if hist.report else None
    if summary is not None:
        return summary.start, summary.end, int(summary.customers)
    ts = pl.col("timestamp")
    stats = hist.events.select(ts.min(), ts.max().alias("end"), pl.col("customer_id").n_unique()).collect()
    return stats.item(0, 0), stats.item(0, 1), int(stats.item(0, 2))


def _stale_history(end: dt.datetime | None, as_of: dt.datetime, model: Any) -> str | None:
    """A warning when the events stop more than the model's horizon before ``as_of`` (a feed that stopped)."""
    horizon = getattr(model, "horizon_days_", None)
    if end is None or not isinstance(horizon, int):
        return None
    gap = as_of - end
    if gap <= dt.timedelta(days=horizon):
        return None
    return (
        f"events: the last event ({end:%Y-%m-%d}) is {gap.days} days before as_of {as_of:%Y-%m-%d}, more than the "
        f"model's {horizon}-day horizon: every customer looks inactive. Hint: check that the histories are up to "
        "date, or score at an as-of date closer to their end."
    )


def _refuse_stale(end: dt.datetime | None, as_of: dt.datetime, model: Any, *, allow_stale: bool) -> str | None:
    """Raise when the histories stop more than the model's horizon before ``as_of``, unless ``allow_stale``.

    Returns the warning to give when ``allow_stale`` lets a stale scoring run go on.
    """
    stale = _stale_history(end, as_of, model)
    if stale is not None and not allow_stale:
        msg = (
            stale.replace("Hint: check", "Scoring would write a wrong campaign. Hint: check")
            + " Pass --allow-stale (score(..., allow_stale=True)) only if the gap is intended."
        )
        raise DataInsufficientError(msg)
    return stale


def _check_dates(start: dt.datetime | None, as_of: dt.datetime, model: Any, *, known: bool = True) -> None:
    """The histories must start before ``as_of`` and the model must not be trained after it."""
    if known and (start is None or start >= as_of):
        shown = f"{start:%Y-%m-%d}" if start else "none"
        msg = (
            f"events: no rows before as_of {as_of:%Y-%m-%d} (first event: {shown}); there is no history to score. "
            "Hint: score at an as-of date after the histories start."
        )
        raise DataInsufficientError(msg)
    trained = getattr(model, "as_of_", None)
    if isinstance(trained, dt.datetime) and as_of < trained:
        msg = (
            f"as_of {as_of:%Y-%m-%d} is before the model's training as-of date {trained:%Y-%m-%d}: the model has "
            "learned from outcomes after the scoring date. Hint: score at or after the training date, or train "
            "a model with an earlier --as-of for a backtest."
        )
        raise LeakageError(msg)


def histories_for_job(directory: str | Path, as_of: dt.datetime) -> Histories:
    """Load and identity-resolve a histories directory as the job does (also on Spark executors)."""
    return ensure_resolved(_load_histories(directory, as_of), as_of)


def streaming_tables(directory: str | Path) -> dict[str, pl.LazyFrame] | None:
    """Lazy parquet scans of the person tables when each chunk can read only its own rows, else ``None``.

    Chunk-by-chunk reading needs parquet files (csv is read whole by :func:`omni_ml.load_histories`)
    and a ``customer_id`` on every row (identity resolution is global: identifier-only rows must be
    resolved over all rows first, e.g. with ``omni-ml resolve``). Otherwise the job loads the whole
    histories into memory once and chunks the scoring only.
    """
    root = Path(directory)
    if any((root / f"{t}.csv").exists() for t in (*_PERSON_TABLES, "identity_links")):
        return None
    scans = {t: pl.scan_parquet(root / f"{t}.parquet") for t in _PERSON_TABLES if (root / f"{t}.parquet").exists()}
    if "events" not in scans:
        return None
    try:
        if any("customer_id" not in lf.collect_schema().names() for lf in scans.values()):
            return None
        nulls = pl.collect_all([lf.select(pl.col("customer_id").null_count()) for lf in scans.values()])
    except pl.exceptions.PolarsError:
        return None  # unreadable: load_histories reports it properly
    if any(frame.item() for frame in nulls):
        return None
    return scans


def read_chunk(scans: Mapping[str, pl.LazyFrame], bucket: int, n_buckets: int, as_of: dt.datetime) -> Histories:
    """Read and validate only the rows of the customers in ``bucket`` (see :func:`streaming_tables`).

    Raises
    ------
    SchemaError
        A row breaks the contract (as :func:`omni_ml.load_histories` would say), or customer ids are
        written in a form whose normalisation moves them to another bucket (then use one chunk).
    """
    frames = {}
    for table, lf in scans.items():
        raw = pl.col("customer_id").cast(pl.String).str.strip_chars().alias("__raw_id")
        frames[table] = (
            lf.with_columns(raw).filter(bucket_expr("__raw_id", n_buckets) == bucket).drop("__raw_id").collect()
        )
    events = frames.pop("events")
    # A bucket without events (more chunks than customers, or only customers-table rows) is valid:
    # the contract's "events needs a row" is about the whole table. Its other tables are validated
    # with one borrowed events row (any row of the file), which is then dropped.
    borrowed = events.height == 0
    if borrowed:
        events = scans["events"].head(1).collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTableWarning)
        hist = Histories.from_frames(events, as_of=as_of, **frames)  # type: ignore[arg-type]
    if borrowed:
        hist = hist.replace(events=hist.events.clear())
    ids = pl.concat([lf.select("customer_id") for lf in hist.tables().values()]).unique().collect()["customer_id"]
    moved = ids.filter(pl.Series(bucket_of(stable_hash(ids, BUCKET_SEED).to_numpy(), n_buckets) != bucket))
    if moved.len():
        msg = (
            f"customer_id: {moved.len():,} ids change when normalised (e.g. {moved[0]!r}), so their rows cannot be "
            "read chunk by chunk. Hint: write customer_id as plain text in the parquet files, or pass chunks=1."
        )
        raise SchemaError(msg)
    return hist


def _stream_facts(scans: Mapping[str, pl.LazyFrame]) -> tuple[dt.datetime | None, dt.datetime | None, int]:
    """First and last event (``None`` for text timestamps: each chunk's validation parses them), customers."""
    events = scans["events"]
    aggs = [pl.col("customer_id").n_unique().alias("n")]
    dtype = events.collect_schema().get("timestamp")
    if isinstance(dtype, pl.Datetime | pl.Date):
        utc = utc_column("timestamp", dtype)
        aggs += [utc.min().alias("start"), utc.max().alias("end")]
    stats = events.select(aggs).collect(engine="streaming").row(0, named=True)
    return stats.get("start"), stats.get("end"), int(stats["n"])


def chunk_histories(hist: Histories, bucket: int, n_buckets: int) -> Histories:
    """The histories of the customers in ``bucket`` (of ``n_buckets``), as lazy filtered scans."""
    if n_buckets == 1:
        return hist.replace(identity_links=None)
    changes: dict[str, pl.LazyFrame | None] = {"identity_links": None}
    for table in _PERSON_TABLES:
        lf = getattr(hist, table)
        if lf is not None:
            changes[table] = lf.filter(bucket_expr("customer_id", n_buckets) == bucket)
    return hist.replace(**changes)


def _stream_profiling_recorded(scans: Mapping[str, pl.LazyFrame]) -> bool:
    """Whether the consents file holds any profiling record (then profiling consent is required for all)."""
    consents = scans.get("consents")
    if consents is None or "channel" not in consents.collect_schema().names():
        return False
    found = consents.filter(pl.col("channel").cast(pl.String).str.strip_chars().str.to_lowercase() == PROFILING)
    return bool(found.select(pl.len()).collect().item())


def _profiling_options(model: Any, unprofiled: str | None, required: bool) -> dict[str, Any]:
    """The keywords of ``model.score`` that carry the profiling decision (for models whose score takes them)."""
    import inspect

    params = inspect.signature(model.score).parameters
    options: dict[str, Any] = {}
    if "profiling_required" in params:
        options["profiling_required"] = required
    if "unprofiled" in params:
        options["unprofiled"] = (
            unprofiled
            if unprofiled is not None
            else getattr(getattr(model, "policy_", None), "unprofiled", "anonymous")
        )
    elif unprofiled == "exclude":
        name = type(model).__name__
        msg = f"unprofiled='exclude': the model {name} cannot leave people out. Hint: use a CampaignModel."
        raise ConfigError(msg)
    return options


@dataclasses.dataclass(frozen=True)
class _OpenedHistories:
    """A scoring job's histories, checked: parquet ``scans`` read chunk by chunk, or ``hist`` resolved in memory."""

    scans: dict[str, pl.LazyFrame] | None
    hist: Histories | None
    start: dt.datetime | None
    end: dt.datetime | None
    n_customers: int
    profiling_required: bool


def _open_histories(
    hist_or_dir: Histories | str | Path, moment: dt.datetime, model: Any, *, allow_stale: bool
) -> _OpenedHistories:
    """Open the histories for scoring at ``moment`` and refuse dates, staleness and customers before any work.

    A directory of parquet files with a ``customer_id`` on every row is scanned (each chunk reads its own
    customers); anything else is loaded, checked and resolved once, in memory.
    """
    is_dir = isinstance(hist_or_dir, str | Path) and Path(hist_or_dir).is_dir()
    scans = streaming_tables(hist_or_dir) if is_dir else None  # type: ignore[arg-type]
    hist: Histories | None = None
    if scans is None:
        hist = _load_histories(hist_or_dir, moment)
        start, end, n_customers = _history_facts(hist)
        _check_dates(start, moment, model)
        _refuse_stale(end, moment, model, allow_stale=allow_stale)
        # resolution is global: it must happen before customers are chunked
        hist = ensure_resolved(hist, moment)
        required = profiling_recorded(hist)
    else:
        start, end, n_customers = _stream_facts(scans)
        _check_dates(start, moment, model, known=start is not None)
        _refuse_stale(end, moment, model, allow_stale=allow_stale)
        required = _stream_profiling_recorded(scans)
    check_customers = getattr(model, "check_customers", None)
    if callable(check_customers):  # an attribute the model reads, absent or unreadable: refused before any work
        check_customers(hist.customers if hist is not None else scans.get("customers") if scans is not None else None)
    return _OpenedHistories(scans, hist, start, end, n_customers, required)
