"""Batch scoring: raw histories + a campaign model + an as-of date -> one campaign file.

:func:`score` is the job behind ``omni-ml score``. It is built to be boring and safe:

1. **Validation first.** Arguments, the output path, the model (path or MLflow URI) and the
   histories are all checked before any customer is scored; bad input raises an
   :class:`~omni_ml.exceptions.OmniMLError` (CLI exit code 2) naming what to fix.
2. **Bounded memory.** Customers are split into ``chunks`` buckets by a stable hash of their id
   (:mod:`omni_ml.scoring._hashing`) and scored, checked and written one bucket after another, so
   features, SHAP values and decisions exist for one chunk at a time. When the histories are parquet
   files with a ``customer_id`` on every row (resolved histories, e.g. written by ``omni-ml resolve``),
   each chunk also *reads* only its own customers' rows: the lazy parquet scans are filtered by the
   bucket and the chunk is validated against the input contract on its own
   (:func:`read_chunk`); the file is renamed only after every chunk passed, so a bad row anywhere
   still leaves no output. Otherwise (csv files, identifier-only rows that need the global identity
   resolution) the histories are loaded and resolved once, in memory, and only the scoring is chunked.
3. **Measurement built in.** A deterministic control group: customer ``c`` is held out when
   ``uniform(stable_hash(c, seed)) < control_fraction``. A held-out customer keeps the model's
   recommendation in ``recommended_channel`` (so treated and control customers with the same
   recommendation can be compared like with like, at customer level) while ``best_channel``
   becomes ``no_contact`` with rule ``control_group``; a control customer who would not have been
   contacted anyway keeps the rule that paused them. The group depends only on the id and the
   seed: the same across reruns, chunk counts, engines and library versions.
4. **Atomic and reproducible output.** Rows stream into a temporary file next to ``out`` that is
   renamed only when complete (:mod:`omni_ml.scoring._writer`). The file is ordered by
   ``(stable_hash(customer_id), customer_id)`` -- a fixed pseudo-random order that does not depend
   on the number of chunks -- so rerunning with the same inputs gives the same bytes, whatever
   ``chunks`` is and on Spark too.
5. **Lineage.** Every row carries ``model_uri``, ``model_version`` and ``run_id`` (the last two
   null for a model loaded from a local file).

6. **Exploration** (``explore > 0``): a share of the customers outside the control group get an action
   drawn at random among their allowed options (``no_contact`` included; rule ``explore``), with the
   same hash family, independent of the control group; every row's ``assignment_probability`` is the
   probability of its logged action under the whole design (:func:`finish_chunk`).

Columns of the campaign file: ``customer_id, as_of, propensity, propensity_decile, best_channel,
recommended_channel, control_group, assignment_probability, expected_uplift, expected_value, customer_value,
score_<channel>..., rule, offer_category, suppressed_category, reason_1..reason_K,
channel_reason_1..channel_reason_K, model_uri, model_version, run_id``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from omni_ml._time import as_utc
from omni_ml._unprofiled import check_mode, profiling_recorded
from omni_ml.data import NO_CONTACT, PROFILING, Histories, UnknownTableWarning, load_histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, LeakageError, ModelNotFoundError, SchemaError
from omni_ml.identity import ensure_resolved
from omni_ml.scoring import _monitor
from omni_ml.scoring._hashing import (
    BUCKET_SEED,
    DRAW_SALT,
    EXPLORE_SALT,
    bucket_expr,
    bucket_of,
    stable_hash,
    uniform_from_hash,
)
from omni_ml.scoring._writer import AtomicTableWriter, output_format

__all__ = [
    "CHUNK_CUSTOMERS",
    "LoadedCampaignModel",
    "ScoringSummary",
    "campaign_schema",
    "chunk_histories",
    "finish_chunk",
    "histories_for_job",
    "read_chunk",
    "score",
    "streaming_tables",
]

CHUNK_CUSTOMERS = 250_000
"""Customers per chunk when ``chunks`` is not given."""

CONTROL_RULE = "control_group"
EXPLORE_RULE = "explore"
VALUE_RULES = ("best_value", "no_positive_value")
"""Rules of a decision made on value: the only ones exploration may replace (a rule that pauses stays)."""
_PERSON_TABLES = ("events", "contacts", "consents", "customers")
_LINEAGE: dict[str, pl.DataType] = {"model_uri": pl.String(), "model_version": pl.String(), "run_id": pl.String()}


@dataclasses.dataclass(frozen=True)
class LoadedCampaignModel:
    """A campaign model and where it came from (written on every row of the campaign file)."""

    model: Any
    model_uri: str | None
    model_version: str | None
    run_id: str | None


@dataclasses.dataclass(frozen=True)
class ScoringSummary:
    """What a scoring job did: counts for the campaign manager and the run log.

    ``per_channel`` counts ``best_channel`` after the control group is held out (who will be
    contacted, and how); ``recommended`` counts the model's choice before it; ``rules`` counts the
    rule that fired per customer (``control_group`` for contacts held out); ``control`` is the
    size of the control group (all held-out customers, contactable or not); ``explored`` counts the
    customers whose action exploration drew (rule ``explore``). ``history_end`` is the
    last event in the histories; ``warnings`` holds what the job also warned about (a last event more
    than the model's horizon before ``as_of``: a histories feed that stopped).
    """

    out: Path
    customers: int
    per_channel: dict[str, int]
    recommended: dict[str, int]
    rules: dict[str, int]
    control: int
    control_held_out: int
    control_fraction: float
    seed: int
    chunks: int
    as_of: dt.datetime
    model_uri: str | None
    model_version: str | None
    run_id: str | None
    seconds: float
    engine: str = "polars"
    history_end: dt.datetime | None = None
    warnings: tuple[str, ...] = ()
    explore_fraction: float = 0.0
    explored: int = 0
    monitor: Any = None
    monitor_file: Path | None = None
    monitor_run_id: str | None = None
    unprofiled: int = 0
    unprofiled_mode: str = "anonymous"

    @property
    def no_contact(self) -> int:
        """Customers not contacted (paused by a rule, or held out)."""
        return self.per_channel.get(NO_CONTACT, 0)

    @property
    def contacted(self) -> int:
        """Customers to be contacted on some channel."""
        return self.customers - self.no_contact

    def to_text(self) -> str:
        """The summary ``omni-ml score`` prints."""
        rate = self.customers / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"campaign file: {self.out}",
            f"  model:      {self.model_uri}"
            + (f" (version {self.model_version})" if self.model_version else "")
            + (f" run {self.run_id}" if self.run_id else ""),
            f"  as of:      {self.as_of:%Y-%m-%d %H:%M} UTC",
            f"  customers:  {self.customers:,} scored in {self.seconds:,.1f} s "
            f"({rate:,.0f}/s, {self.chunks} chunk{'s' if self.chunks != 1 else ''}, engine {self.engine})",
            f"  contacted:  {self.contacted:,}",
        ]
        if self.history_end is not None:
            lines.insert(3, f"  history to: {self.history_end:%Y-%m-%d %H:%M} UTC (last event)")
        for channel, n in sorted(self.per_channel.items(), key=lambda kv: (-kv[1], kv[0])):
            if channel != NO_CONTACT:
                lines.append(f"    {channel:<16}{n:>12,}")
        lines.append(f"  no_contact: {self.no_contact:,}")
        lines.append("  rule that fired:")
        for rule, n in sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {rule:<20}{n:>12,}")
        share = self.control / self.customers if self.customers else 0.0
        lines.append(
            f"  control group: {self.control:,} ({share:.1%}; target {self.control_fraction:.1%}, seed {self.seed}); "
            f"{self.control_held_out:,} of them held out from a recommended contact"
        )
        if self.explore_fraction > 0:
            lines.append(
                f"  exploration: {self.explored:,} customers (target {self.explore_fraction:.1%} of those outside the "
                "control group with a choice) drew their action at random (rule explore)"
            )
        if self.unprofiled:
            lines.append(
                f"  not personalised: {self.unprofiled:,} customers without a profiling consent scored from population "
                "constants (column personalised = false)"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.monitor is not None:
            lines.append(self.monitor.to_text())
            lines.append(
                f"  monitoring: {self.monitor_file}"
                + (f" (MLflow run {self.monitor_run_id})" if self.monitor_run_id else "")
            )
        return "\n".join(lines)


def campaign_schema(model: Any, *, reasons: int) -> pl.Schema:
    """The schema of the campaign file written with ``model`` and ``reasons`` reason columns."""
    base = dict(model.output_schema(reasons=reasons))
    cols: dict[str, pl.DataType] = {}
    for name, dtype in base.items():
        cols[name] = dtype
        if name == "best_channel":
            cols["recommended_channel"] = pl.String()
            cols["control_group"] = pl.Boolean()
            cols["assignment_probability"] = pl.Float64()
    cols.update(_LINEAGE)
    return pl.Schema(cols)


# ----------------------------------------------------------------------------- validation


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
        ts = pl.col("timestamp").cast(pl.Datetime("us")) if isinstance(dtype, pl.Date) else pl.col("timestamp")
        utc = ts.dt.convert_time_zone("UTC") if getattr(dtype, "time_zone", None) else ts.dt.replace_time_zone("UTC")
        aggs += [utc.min().alias("start"), utc.max().alias("end")]
    stats = events.select(aggs).collect(engine="streaming").row(0, named=True)
    return stats.get("start"), stats.get("end"), int(stats["n"])


def _scored_stream(
    scans: Mapping[str, pl.LazyFrame],
    n_chunks: int,
    job: _Job,
    spans: list[tuple[dt.datetime, dt.datetime]],
    monitor: Any = None,
) -> Iterator[pl.DataFrame]:
    """Read, validate and score bucket after bucket; collect each chunk's first and last event into ``spans``."""
    for bucket in range(n_chunks):
        chunk = read_chunk(scans, bucket, n_chunks, job.as_of)
        summary = chunk.report.tables.get("events") if chunk.report else None
        if summary is not None and summary.start is not None and summary.end is not None and summary.rows:
            spans.append((summary.start, summary.end))
        yield _run_monitored(job, chunk, monitor)


# ----------------------------------------------------------------------------- the job


def _run_monitored(job: _Job, hist: Histories, monitor: Any) -> pl.DataFrame:
    """Score a chunk and profile the features of its sampled customers (the monitoring hook)."""
    frame = job.run(hist)
    _monitor.profile_chunk(monitor, job.model, hist, frame)
    return frame


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


def finish_chunk(
    frame: pl.DataFrame,
    *,
    schema: pl.Schema,
    control_fraction: float,
    seed: int,
    lineage: Mapping[str, str | None],
    explore_fraction: float = 0.0,
) -> pl.DataFrame:
    """Apply the control group and exploration, add lineage, fix the schema and sort a chunk into file order.

    The design, customer by customer (``u_c``, ``u_e``, ``u_d``: independent uniforms from the stable hash
    of the id with the campaign seed, see :mod:`omni_ml.scoring._hashing`):

    1. ``u_c < control_fraction``: control group, ``best_channel = no_contact`` (rule ``control_group`` when
       the policy recommended a contact);
    2. otherwise ``u_e < explore_fraction``: exploration. The options are ``no_contact`` plus every channel
       the policy allowed (a non-null ``score_<channel>``: consented, with an estimate) when the decision was
       made on value (rules ``best_value`` / ``no_positive_value``); a customer paused by a rule (consent,
       pressure cap, cool-down, service incident, suppression) has the single option ``no_contact`` and
       keeps that rule. With ``K > 1`` options the action is option ``floor(u_d * K)`` and the rule is
       ``explore``;
    3. otherwise the policy's recommendation.

    ``assignment_probability`` is the probability of the logged ``best_channel`` ``a`` under this whole
    design, ``C [a = no_contact] + (1 - C) F / K + (1 - C) (1 - F) [a = recommended]``, with ``C`` the
    control and ``F`` the exploration fraction (1 for a customer with a single option).
    """
    ids = frame["customer_id"]
    n = frame.height
    control = float(control_fraction)
    explore = float(explore_fraction)
    in_control = (uniform_from_hash(stable_hash(ids, seed)) < control).to_numpy()
    channels = [name.removeprefix("score_") for name in schema if name.startswith("score_")]
    recommended = frame["best_channel"].to_numpy().astype(object)
    on_value = frame["rule"].is_in(list(VALUE_RULES)).to_numpy()
    allowed = np.zeros((n, len(channels)), dtype=bool)
    for j, channel in enumerate(channels):
        column = f"score_{channel}"
        if column in frame.columns:
            allowed[:, j] = frame[column].is_not_null().to_numpy() & on_value
    n_options = allowed.sum(axis=1) + 1  # + no_contact
    exploring = np.zeros(n, dtype=bool)
    action = np.where(in_control, NO_CONTACT, recommended).astype(object)
    if explore > 0.0 and n:
        explore_u = uniform_from_hash(stable_hash(ids, seed ^ EXPLORE_SALT)).to_numpy()
        exploring = ~in_control & (explore_u < explore) & (n_options > 1)
        draw = uniform_from_hash(stable_hash(ids, seed ^ DRAW_SALT)).to_numpy()
        pick = np.minimum((draw * n_options).astype(np.int64), n_options - 1)  # 0 = no_contact, k = k-th allowed
        ranks = np.cumsum(allowed, axis=1)
        for i in np.flatnonzero(exploring):
            action[i] = NO_CONTACT if pick[i] == 0 else channels[int(np.argmax(ranks[i] == pick[i]))]
    is_pause = action == NO_CONTACT
    probability = np.where(
        n_options == 1,
        1.0,  # the only option (exactly 1, not a sum of rounded shares)
        control * is_pause
        + (1.0 - control) * explore / n_options
        + (1.0 - control) * (1.0 - explore) * (action == recommended),
    )
    held_out = in_control & (recommended != NO_CONTACT)
    rule = frame["rule"].to_numpy().astype(object)
    rule = np.where(held_out, CONTROL_RULE, np.where(exploring, EXPLORE_RULE, rule))
    out = (
        frame.with_columns(
            control_group=pl.Series(in_control, dtype=pl.Boolean),
            recommended_channel=pl.col("best_channel"),
            __order=stable_hash(ids, BUCKET_SEED),
        )
        .with_columns(
            best_channel=pl.Series(action.tolist(), dtype=pl.String),
            rule=pl.Series(rule.tolist(), dtype=pl.String),
            assignment_probability=pl.Series(probability, dtype=pl.Float64),
            **{k: pl.lit(v, dtype=pl.String) for k, v in lineage.items()},
        )
        .sort("__order", "customer_id")
    )
    return out.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TextColumn("{task.fields[customers]:>12,} customers"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


class _Tally:
    def __init__(self) -> None:
        self.customers = 0
        self.per_channel: Counter[str] = Counter()
        self.recommended: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.control = 0
        self.held_out = 0
        self.explored = 0
        self.unprofiled = 0

    def add(self, frame: pl.DataFrame) -> None:
        self.customers += frame.height
        self.per_channel.update(dict(frame["best_channel"].value_counts().iter_rows()))
        self.recommended.update(dict(frame["recommended_channel"].value_counts().iter_rows()))
        self.rules.update(dict(frame["rule"].value_counts().iter_rows()))
        self.control += int(frame["control_group"].sum())
        self.held_out += int((frame["rule"] == CONTROL_RULE).sum())
        self.explored += int((frame["rule"] == EXPLORE_RULE).sum())
        if "personalised" in frame.columns:
            self.unprofiled += int((~frame["personalised"]).sum())


def score(
    hist_or_dir: Histories | str | Path,
    *,
    model: Any,
    as_of: str | dt.date | dt.datetime,
    out: str | Path,
    reasons: int = 3,
    control_fraction: float = 0.1,
    seed: int = 0,
    chunks: int | None = None,
    progress: bool = True,
    engine: Literal["polars", "spark"] = "polars",
    tracking_uri: str | None = None,
    explore: float = 0.0,
    monitor: Any = None,
    fail_on_drift: bool = False,
    allow_stale: bool = False,
    unprofiled: Literal["anonymous", "exclude"] | None = None,
) -> ScoringSummary:
    """Score every customer as of ``as_of`` and write the campaign file ``out`` atomically.

    Parameters
    ----------
    hist_or_dir
        A histories directory (validated by :func:`omni_ml.load_histories`) or a :class:`Histories`.
        Identifier-only rows are resolved (:func:`omni_ml.resolve_identities`) before chunking.
    model
        A fitted :class:`omni_ml.campaign.CampaignModel`, a local path to one saved with
        ``CampaignModel.save``, or an MLflow URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
        ``runs:/RUN_ID/campaign_model``).
    as_of
        Scoring moment: features see history strictly before it; consent is the state as of it.
    out
        Target file, ``.parquet`` or ``.csv``; its directory must exist. Replaced atomically.
    reasons
        Reason codes per customer (``reason_1..reason_K``); 0 skips explanations (faster).
    control_fraction
        Share of customers held out from contact, in ``[0, 1)``.
    seed
        Campaign seed of the control group: same seed, same group.
    chunks
        Number of customer buckets processed one after another; ``None`` picks one chunk per
        :data:`CHUNK_CUSTOMERS` customers. The output does not depend on it.
    progress
        Show a progress bar over chunks (on stderr).
    engine
        ``"polars"`` (this process) or ``"spark"`` (one Spark task per chunk, see
        :mod:`omni_ml.scoring.spark`; needs ``pip install omni_ml[spark]``).
    tracking_uri
        MLflow tracking URI for ``models:/`` and ``runs:/`` models (default: the environment's).
    explore
        Share ``F`` in ``[0, 1)`` of the customers outside the control group whose action is drawn at random
        among their allowed options, ``no_contact`` included (rule ``explore``; see :func:`finish_chunk`).
        Every row's ``assignment_probability`` is the probability of its ``best_channel`` under the whole
        design, so the file's outcomes give exact importance weights. ``0``: no exploration.
    monitor
        Monitoring thresholds (:class:`omni_ml.monitor.MonitorConfig` or a mapping of its fields; ``None``:
        defaults; ``False``: off). The run is compared with the model's training reference and the report
        written atomically to ``<out stem>.monitor.parquet`` beside ``out`` (and, for a model from MLflow,
        logged as a monitoring run linked to the model's run). Features are profiled on the polars engine;
        on Spark only scores, deciles, channels and expected performance are monitored.
    fail_on_drift
        Raise :class:`~omni_ml.exceptions.DriftError` and write no campaign file when the verdict is ``bad``.
    allow_stale
        Score even when the last event is more than the model's horizon before ``as_of`` (every
        customer then looks inactive); by default that is refused before any work.
    unprofiled
        People without a profiling consent at ``as_of``: ``"anonymous"`` scores them without personal features
        (``personalised`` false, population propensity and channel, a non-personal reason), ``"exclude"``
        leaves them out of the file; ``None``: the model's policy setting (default ``"anonymous"``). Whether
        profiling consent is required is decided once over all the histories (any profiling record), not per
        chunk.

    Returns
    -------
    ScoringSummary
        Counts per channel and rule, control size, lineage; ``.to_text()`` is the printed summary.

    Raises
    ------
    ConfigError
        A bad argument (extension, fraction, chunks ...).
    ModelNotFoundError
        The model path, run or alias does not exist.
    SchemaError, DataInsufficientError, LeakageError
        The histories cannot be scored at ``as_of``.
    ConsentError
        A decision would contact a customer without consent (the file is not written).
    DriftError
        ``fail_on_drift`` and the health verdict is ``bad`` (the file is not written).
    DataInsufficientError
        Also when the histories end more than the model's horizon before ``as_of`` (see ``allow_stale``).
    """
    started = time.perf_counter()
    out_path = Path(out)
    moment = as_utc(as_of)
    _check_arguments(out_path, reasons, control_fraction, seed, chunks, explore)
    if engine not in ("polars", "spark"):
        msg = f"engine must be 'polars' or 'spark' (got {engine!r})."
        raise ConfigError(msg)
    monitor_cfg = _monitor.monitor_config(monitor)
    if unprofiled is not None:
        check_mode(unprofiled, where="unprofiled (--unprofiled)")
    loaded = _load_model(model, tracking_uri=tracking_uri)
    is_dir = isinstance(hist_or_dir, str | Path) and Path(hist_or_dir).is_dir()
    scans = streaming_tables(hist_or_dir) if is_dir else None  # type: ignore[arg-type]
    hist: Histories | None = None
    if scans is None:
        hist = _load_histories(hist_or_dir, moment)
        start, end, n_customers = _history_facts(hist)
        _check_dates(start, moment, loaded.model)
        _refuse_stale(end, moment, loaded.model, allow_stale=allow_stale)
        # resolution is global: it must happen before customers are chunked
        hist = ensure_resolved(hist, moment)
        required = profiling_recorded(hist)
    else:
        start, end, n_customers = _stream_facts(scans)
        _check_dates(start, moment, loaded.model, known=start is not None)
        _refuse_stale(end, moment, loaded.model, allow_stale=allow_stale)
        required = _stream_profiling_recorded(scans)
    check_customers = getattr(loaded.model, "check_customers", None)
    if callable(check_customers):  # an attribute the model reads, absent or unreadable: refused before any work
        check_customers(hist.customers if hist is not None else scans.get("customers") if scans is not None else None)
    n_customers = max(n_customers, 1)
    n_chunks = chunks if chunks is not None else max(1, math.ceil(n_customers / CHUNK_CUSTOMERS))
    schema = campaign_schema(loaded.model, reasons=reasons)
    lineage = {"model_uri": loaded.model_uri, "model_version": loaded.model_version, "run_id": loaded.run_id}
    options = _profiling_options(loaded.model, unprofiled, required)
    job = _Job(loaded.model, moment, reasons, float(control_fraction), seed, schema, lineage, float(explore), options)
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    watcher, unmonitored = _monitor.start(loaded.model, monitor_cfg, n_customers)
    profiler = watcher if engine == "polars" else None

    if engine == "spark":
        import secrets

        from omni_ml.scoring.spark import scored_chunks_spark

        if not isinstance(hist_or_dir, str | Path):
            msg = "engine='spark' reads the histories on the executors: pass a directory, not a Histories object."
            raise ConfigError(msg)
        staging = out_path.parent / f".{out_path.name}.spark-{secrets.token_hex(4)}"
        frames: Iterator[pl.DataFrame] = scored_chunks_spark(
            Path(hist_or_dir).resolve(), job, n_chunks, staging_dir=staging.resolve()
        )
    elif scans is not None:
        frames = _scored_stream(scans, n_chunks, job, spans, profiler)
    else:
        assert hist is not None
        frames = (_run_monitored(job, chunk_histories(hist, b, n_chunks), profiler) for b in range(n_chunks))

    tally = _Tally()
    with AtomicTableWriter(out_path, schema) as writer, _progress(progress) as bar:
        task = bar.add_task("score", total=n_chunks, customers=0)
        for frame in frames:
            writer.write(frame)
            tally.add(frame)
            if watcher is not None:
                watcher.add_scores(frame)
            bar.update(task, advance=1, customers=tally.customers)
        if scans is not None and start is None and engine == "polars":
            # text timestamps: the first event is known only now that every chunk parsed its own
            _check_dates(min((a for a, _ in spans), default=None), moment, loaded.model)
            end = max((b for _, b in spans), default=None)
        stale = _refuse_stale(end, moment, loaded.model, allow_stale=allow_stale)
        outcome = None
        if watcher is not None:
            outcome = _monitor.finish(
                watcher,
                as_of=moment,
                out=out_path,
                model_uri=loaded.model_uri,
                model_version=loaded.model_version,
                run_id=loaded.run_id,
                tracking_uri=tracking_uri,
                fail_on_drift=fail_on_drift,
            )
        try:
            monitor_file = outcome.commit() if outcome is not None else None
            writer.commit()
        finally:
            if outcome is not None:
                outcome.discard()
    if stale is not None:
        warnings.warn(stale, UserWarning, stacklevel=2)
    return ScoringSummary(
        out=out_path,
        customers=tally.customers,
        per_channel=dict(sorted(tally.per_channel.items())),
        recommended=dict(sorted(tally.recommended.items())),
        rules=dict(sorted(tally.rules.items())),
        control=tally.control,
        control_held_out=tally.held_out,
        control_fraction=float(control_fraction),
        seed=seed,
        explore_fraction=float(explore),
        explored=tally.explored,
        chunks=n_chunks,
        as_of=moment,
        model_uri=loaded.model_uri,
        model_version=loaded.model_version,
        run_id=loaded.run_id,
        seconds=time.perf_counter() - started,
        engine=engine,
        history_end=end,
        warnings=tuple(w for w in (stale, unmonitored) if w),
        monitor=outcome.report if outcome is not None else None,
        monitor_file=monitor_file,
        monitor_run_id=outcome.run_id if outcome is not None else None,
        unprofiled=tally.unprofiled,
        unprofiled_mode=str(options.get("unprofiled") or "anonymous"),
    )


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
class _Job:
    """Everything needed to score one chunk: picklable, so Spark executors can run it."""

    model: Any
    as_of: dt.datetime
    reasons: int
    control_fraction: float
    seed: int
    schema: pl.Schema
    lineage: Mapping[str, str | None]
    explore_fraction: float = 0.0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def run(self, hist: Histories) -> pl.DataFrame:
        frame = self.model.score(hist, self.as_of, reasons=self.reasons, **self.options)
        return finish_chunk(
            frame,
            schema=self.schema,
            control_fraction=self.control_fraction,
            seed=self.seed,
            lineage=self.lineage,
            explore_fraction=self.explore_fraction,
        )
