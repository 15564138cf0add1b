"""Validation: every rule and the summary in one parallel pass per table, exact duplicates dropped."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from omni_ml._privacy import mask_identifier
from omni_ml._time import before
from omni_ml.data._contract import (
    _COUNTED,
    _HASHED_MIN_ROWS,
    _LOWER,
    _MAX_PROBLEMS,
    _SOURCES_WITH_UNKNOWN,
    _STR,
    CONTACTABLE_CHANNELS,
    DEFAULT_CHANNELS,
    EVENT_TYPES,
    PROFILING,
    TABLES,
    UNKNOWN_CHANNEL,
)
from omni_ml.data._normalise import _Check, _clean_string, _parse_timestamps, _Plan, _plan
from omni_ml.data._read import _read_error
from omni_ml.data._report import LoadReport, TableSummary
from omni_ml.data._vocabulary import near_miss
from omni_ml.exceptions import SchemaError

_T = TypeVar("_T")
_IDENTIFIER_COLUMNS = ("identifier", "identifier_a", "identifier_b")


def _repeated_values(values: pl.Series) -> pl.Series:
    """The distinct values of ``values`` that occur more than once (nulls aside), sorted.

    One numpy sort of the 64-bit physical values finds them: a third of what polars' parallel
    sort costs here on 20 million timestamps, and it releases the GIL, so it runs in a thread
    beside the rules' ``select``. On real exports (nearly all timestamps distinct) the result is
    short, so marking the rows that carry a repeated value is then a cheap ``is_in``.
    """
    present = values.drop_nulls() if values.has_nulls() else values
    ordered = present.to_physical().to_numpy(writable=True)  # our own copy (polars' memory is immutable)
    ordered.sort()  # in place: np.sort would allocate and fill another 160 MB on 20M rows
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    return pl.Series(values.name, repeated).cast(values.dtype)


def _first_occurrences(frame: pl.DataFrame, cols: list[str], repeated_ts: pl.Series | None) -> pl.Series | None:
    """Mask keeping the first of each set of identical rows over ``cols``; ``None`` when all rows differ.

    Identical rows share their timestamp, so only rows whose timestamp repeats (``repeated_ts``,
    from the summary pass) or is null are compared in full; all rows when that is more than an
    eighth of them (coarse timestamps, e.g. dates) or when the table has no timestamp.
    """
    if frame.height < 2:
        return None
    if repeated_ts is not None:
        ts = frame.get_column("timestamp")
        if repeated_ts.len() == 0 and not ts.has_nulls():
            return None
        candidates = ts.is_in(repeated_ts.implode()).fill_null(value=True)
        n_candidates = int(candidates.sum())
        if n_candidates < frame.height // 8:
            sub = _rows(frame, candidates).select(pl.struct(cols).is_first_distinct()).to_series()
            if sub.all():
                return None
            keep = pl.repeat(True, frame.height, eager=True, dtype=pl.Boolean).alias("keep")
            return keep.scatter(candidates.arg_true(), sub)
    keep = frame.select(pl.struct(cols).is_first_distinct()).to_series()
    return None if keep.all() else keep


def _rows(frame: pl.DataFrame, mask: pl.Series) -> pl.DataFrame:
    """The rows of ``frame`` where ``mask`` is true.

    The mask goes in as a column: ``DataFrame.filter(series)`` took 3.5 CPU seconds to keep all
    but 20,000 of 20 million rows (polars 1.3x, a 163-chunk frame from parquet), this 0.6.
    """
    name = "__keep"
    while name in frame.columns:
        name += "_"
    return frame.lazy().with_columns(mask.alias(name)).filter(pl.col(name)).drop(name).collect()


def _distinct_count(*columns: pl.Series) -> int:
    """Distinct non-null values over ``columns``; on large ones over 64-bit hashes (exact unless two collide)."""
    if not columns:
        return 0
    present = (pl.concat(columns) if len(columns) > 1 else columns[0]).drop_nulls()
    return present.n_unique() if present.len() < _HASHED_MIN_ROWS else present.hash(seed=0).n_unique()


_ROW_COUNTS = ("__rows", "__future", "__customer_nulls")  # summary aggregates that count rows


def _summary_aggs(table: str, cols: set[str], as_of: dt.datetime | None) -> list[pl.Expr]:
    """Aggregates of the summary; those named in ``_ROW_COUNTS`` add up over disjoint rows."""
    aggs: list[pl.Expr] = [pl.len().alias("__rows")]
    if "timestamp" in cols:
        ts = pl.col("timestamp")
        # Clipped to what Python's datetime holds (years 1..9999): a year-10000 timestamp is refused
        # by the range rule, and must not overflow the summary first.
        lo, hi = dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
        aggs += [ts.min().clip(lo, hi).alias("__start"), ts.max().clip(lo, hi).alias("__end")]
        if as_of is not None:
            aggs.append((~before(as_of)).sum().alias("__future"))
    if "customer_id" in cols:
        aggs.append(pl.col("customer_id").null_count().alias("__customer_nulls"))
    return aggs


def _value_counts(frame: pl.DataFrame, counted: list[str]) -> dict[str, dict[str | None, int]]:
    """Rows per value (null included) of each counted column, sorted by value, nulls last.

    One group-by over the counted columns together (few combinations: channel x event type),
    on polars' streaming engine, which is the cheapest group-by on large tables.
    """
    if not counted:
        return {}
    joint = frame.lazy().group_by(counted).len().collect(engine="streaming")
    counts: dict[str, dict[str | None, int]] = {}
    for c in counted:
        margin = joint.group_by(c).agg(pl.col("len").sum())
        counts[c] = dict(sorted(((k, int(v)) for k, v in margin.iter_rows()), key=_none_last))
    return counts


def _summarise(
    table: str,
    plan: _Plan,
    frame: pl.DataFrame,
    *,
    as_of: dt.datetime | None,
    notes: list[str],
    repeated_job: Future[pl.Series] | None = None,
    consent_channels: frozenset[str] = frozenset(),
) -> tuple[pl.DataFrame, TableSummary, list[str], list[str]]:
    """One pass of aggregates: the rules over every row read, the summary over the rows kept.

    Returns the rows kept (``frame`` without its exact duplicates), the summary, the problems,
    and the columns kept as written that turn out to need cleaning (blank strings; channel or
    event_type values not stripped and lower-case): the caller cleans them and runs the pass again.

    All rules and the summary are aggregates of one ``select``, which polars evaluates in
    parallel; meanwhile two threads count the rows per channel and event type and sort the
    timestamps to find those that repeat (do duplicates need a search?). Only failing rules
    look for an example value, and only when some timestamps repeat are duplicates searched
    and the summary corrected for the rows dropped. Distinct customers are counted when the
    summary is first asked for them (:attr:`TableSummary.customers`): validation needs no count.
    """
    cols = set(frame.columns)
    checks = [c for c in plan.checks if all(n in cols for n in c.bad.meta.root_names())]
    counted = [c for c in _COUNTED if c in cols and table in ("events", "contacts")]
    if table == "consents" and "channel" in cols:
        counted = ["channel"]
    # Blank values of the counted columns show among their distinct values; parquet statistics
    # (a non-empty minimum in every row group) clear the other columns.
    # Whitespace-only values are blank too (a customer "   " is no customer): those need a scan.
    blank_checked = [c for c in plan.as_written if c not in counted]
    aggs = [*_rule_aggs(checks, blank_checked), *_summary_aggs(table, cols, as_of)]
    large = frame.height >= _HASHED_MIN_ROWS
    with ThreadPoolExecutor(max_workers=2) if large else _Inline() as pool:
        counts_job = pool.submit(_value_counts, frame, counted)
        if repeated_job is None and "timestamp" in cols:
            repeated_job = pool.submit(_repeated_values, frame.get_column("timestamp"))
        pass_ = frame.lazy().select(aggs).collect(engine="in-memory")
        counts = counts_job.result()
        repeated_ts = repeated_job.result() if repeated_job is not None else None
    stats: dict[str, Any] = pass_.row(0, named=True)
    _count_failing_rules(frame, checks, stats)
    keep = _first_occurrences(frame, plan.data_cols, repeated_ts)
    kept = frame if keep is None else _rows(frame, keep)
    if keep is not None:  # the summary describes the rows kept: take the dropped copies off
        _take_off_dropped(_rows(frame, ~keep), table, cols, as_of, counted, stats, counts)
    dirty = [c for c in blank_checked if stats[f"__blank_{c}"]]
    dirty += [
        c
        for c in counted
        if c in plan.as_written and any(k is not None and k != k.strip().lower() or k == "" for k in counts[c])
    ]

    total = int(stats["__total"])
    problems = _rule_problems(table, checks, stats, total)
    notes = [*plan.notes, *notes]
    channels = {k: v for k, v in counts.get("channel", {}).items() if k is not None}
    event_types = {k: v for k, v in counts.get("event_type", {}).items() if k is not None}
    if not dirty:  # values are final: check them against the vocabulary
        problems += _vocabulary_problems(table, channels, event_types, total, consent_channels)
    other = [k for k in event_types if k not in EVENT_TYPES]
    if other:
        shown = ", ".join(other[:5]) + (" ..." if len(other) > 5 else "")
        notes.append(f"event types outside the toolkit's vocabulary are kept as they are: {shown}")
    n_unresolved = int(stats.get("__customer_nulls") or 0)
    if table in ("events", "contacts", "consents") and n_unresolved:
        carry = "row carries" if n_unresolved == 1 else "rows carry"
        notes.append(f"{n_unresolved:,} {carry} only an identifier: run resolve_identities()")
    # Counted on first read (the concatenation of identity_links' two columns too, not at load).
    customer_ids = [kept.get_column(c) for c in ("customer_id",) if c in cols]
    id_cols = ("identifier_a", "identifier_b") if table == "identity_links" else ("identifier",)
    identifiers = [kept.get_column(c) for c in id_cols if c in cols]
    summary = TableSummary(
        table=table,
        rows=int(stats["__rows"]),
        count_customers=functools.partial(_distinct_count, *customer_ids),
        count_identifiers=functools.partial(_distinct_count, *identifiers),
        start=stats.get("__start"),
        end=stats.get("__end"),
        channels=channels,
        event_types=event_types,
        duplicates_dropped=frame.height - kept.height,
        future_rows=int(stats.get("__future") or 0),
        notes=tuple(notes),
        unresolved_rows=n_unresolved if "customer_id" in cols else 0,
    )
    return kept, summary, problems, dirty


def _rule_aggs(checks: list[_Check], blank_checked: list[str]) -> list[pl.Expr]:
    """Aggregates of the rules: rows read, rows breaking each rule (or its guard), blanks per column."""
    aggs: list[pl.Expr] = [pl.len().alias("__total")]
    for i, chk in enumerate(checks):
        count = chk.bad.sum() if chk.count is None else chk.count
        aggs.append((count if chk.guard is None else chk.guard).alias(f"__n{i}"))
    aggs += [pl.col(c).str.contains(r"^\s*$").any().alias(f"__blank_{c}") for c in blank_checked]
    return aggs


def _count_failing_rules(frame: pl.DataFrame, checks: list[_Check], stats: dict[str, Any]) -> None:
    """Complete ``stats`` in place: rows breaking each guarded rule whose guard fired, an example per failing rule."""
    guarded = [i for i, chk in enumerate(checks) if chk.guard is not None]
    for i in guarded:  # a false (or null) guard: no row can break the rule
        stats[f"__n{i}"] = int(bool(stats[f"__n{i}"]))
    if any(stats[f"__n{i}"] for i in guarded):  # a guard fired: count those rules' rows
        recount = [checks[i].bad.sum().alias(f"__n{i}") for i in guarded if stats[f"__n{i}"]]
        stats.update(frame.lazy().select(recount).collect().row(0, named=True))
    failing = [i for i in range(len(checks)) if stats[f"__n{i}"]]
    if failing:  # error path: one more pass for an example value of each failing rule
        examples = [checks[i].shown.filter(checks[i].bad).first().cast(_STR).alias(f"__ex{i}") for i in failing]
        stats.update(frame.lazy().select(examples).collect().row(0, named=True))


def _take_off_dropped(
    dropped: pl.DataFrame,
    table: str,
    cols: set[str],
    as_of: dt.datetime | None,
    counted: list[str],
    stats: dict[str, Any],
    counts: dict[str, dict[str | None, int]],
) -> None:
    """Subtract the ``dropped`` duplicate rows from the row counts of ``stats`` and the value ``counts``, in place."""
    additive = [a for a in _summary_aggs(table, cols, as_of) if a.meta.output_name() in _ROW_COUNTS]
    for name, value in dropped.select(additive).row(0, named=True).items():
        stats[name] -= value
    for c, dropped_counts in _value_counts(dropped, counted).items():
        for value, n in dropped_counts.items():
            counts[c][value] -= n
    # Distinct values, first and last timestamps are those of the copies kept: unchanged.


def _rule_problems(table: str, checks: list[_Check], stats: Mapping[str, Any], total: int) -> list[str]:
    """One message per broken rule (an empty events table first), with its count and an example value."""
    problems: list[str] = []
    if table == "events" and total == 0:
        problems.append("events: the table is empty (0 rows). Hint: the events table needs at least one row.")
    for i, chk in enumerate(checks):
        n = int(stats[f"__n{i}"] or 0)
        if n:
            example = stats[f"__ex{i}"]
            if chk.column in _IDENTIFIER_COLUMNS and example is not None and not example.startswith("<"):
                example = mask_identifier(example)  # an identifier is personal data: never printed whole
            problems.append(
                f"{table}.{chk.column}: {n:,} of {total:,} rows {chk.problem} (e.g. {example!r}). Hint: {chk.fix}."
            )
    return problems


def _vocabulary_problems(
    table: str,
    channels: Mapping[str, int],
    event_types: Mapping[str, int],
    total: int,
    consent_channels: frozenset[str],
) -> list[str]:
    """Near-misses of known channels and event types; consent channels one cannot be contacted on."""
    problems: list[str] = []
    channel_vocabulary = (*DEFAULT_CHANNELS, UNKNOWN_CHANNEL)
    columns: list[tuple[str, Mapping[str, int], tuple[str, ...]]] = [("channel", channels, channel_vocabulary)]
    if table == "events":
        columns.append(("event_type", event_types, EVENT_TYPES))
    for col, counts, vocabulary in columns:
        if table == "consents":
            bad = {v: near_miss(v, sorted(consent_channels)) for v in counts if v not in consent_channels}
            if bad:
                n = sum(counts[v] for v in bad)
                problems.append(
                    f"consents.channel: {n:,} of {total:,} rows name a channel no one is contacted on: "
                    + _listed(bad, counts)
                    + f". Hint: a consent is about a contactable channel ({', '.join(sorted(consent_channels))})"
                    f" or {PROFILING!r}; a consent on an unknown channel would silently allow or block nobody."
                )
            continue
        bad = {v: m for v in counts if (m := near_miss(v, vocabulary)) is not None}
        if bad:
            n = sum(counts[v] for v in bad)
            problems.append(
                f"{table}.{col}: {n:,} of {total:,} rows have a value that is almost a known {col}: "
                + _listed(bad, counts)
                + f". Hint: correct them to the vocabulary ({', '.join(vocabulary)}); values unlike any known"
                " one are kept and counted as new."
            )
    return problems


def _listed(bad: Mapping[str, str | None], counts: Mapping[str, int]) -> str:
    shown = [f"{v!r} ({counts[v]:,} rows" + (f"; did you mean {m!r}?)" if m else ")") for v, m in list(bad.items())[:5]]
    return ", ".join(shown) + (" ..." if len(bad) > 5 else "")


class _Inline:
    """Stand-in for a thread pool on small tables: runs each job at once."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        done: Future[_T] = Future()
        done.set_result(fn(*args))
        return done


def _none_last(item: tuple[str | None, int]) -> tuple[bool, str]:
    return item[0] is None, item[0] or ""


def _check_table(
    table: str,
    plan: _Plan,
    frame: pl.DataFrame,
    *,
    as_of: dt.datetime | None,
    repeated_job: Future[pl.Series] | None = None,
    consent_channels: frozenset[str] = frozenset(),
) -> tuple[pl.DataFrame, TableSummary, list[str]]:
    """Fill missing channels, drop exact duplicates, run the rules and the summary (twice if cleaning was due)."""
    missing_channel = 0
    normalised: list[str] = []
    while True:
        notes = list(normalised)
        missing_now = frame.get_column("channel").null_count() if table in _SOURCES_WITH_UNKNOWN else 0
        if missing_now:
            frame = frame.with_columns(pl.col("channel").fill_null(UNKNOWN_CHANNEL))
            missing_channel += missing_now
        if missing_channel:
            notes.append(f"{missing_channel:,} rows without a channel: channel set to {UNKNOWN_CHANNEL!r}")
        kept, summary, problems, dirty = _summarise(
            table, plan, frame, as_of=as_of, notes=notes, repeated_job=repeated_job, consent_channels=consent_channels
        )
        if not dirty:
            return kept, summary, problems
        for c in dirty:
            if c in _LOWER:
                changed = frame.select(pl.col(c).filter(pl.col(c) != pl.col(c).str.strip_chars().str.to_lowercase()))
                if changed.height:
                    normalised.append(
                        f"{c}: {changed.height:,} rows normalised to lower case without surrounding spaces"
                        f" (e.g. {changed.item(0, 0)!r})"
                    )
        frame = frame.with_columns(_clean_string(c, pl.String(), lower=c in _LOWER).alias(c) for c in dirty)
        plan.as_written = [c for c in plan.as_written if c not in dirty]


def _read(plan: _Plan, file: Path | None) -> tuple[pl.DataFrame, Future[pl.Series] | None]:
    """Read a table as ``plan`` types it; the search for repeated timestamps starts during the read.

    From parquet, when the timestamp needs no parsing, the timestamp column is read first and a
    thread sorts it (:func:`_repeated_values`) while polars reads the other columns: the sort is
    single-threaded, and after the read it would keep one core busy while the other waits (on 20
    million events ~0.3 s of a ~0.6 s validation). Reading the columns in two parts reads each once.
    """
    columns = plan.lazy.collect_schema().names()
    early = (
        file is not None
        and file.suffix.lower() == ".parquet"
        and "timestamp" in columns
        and "timestamp" not in plan.parse_later
    )
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        repeated: Future[pl.Series] | None = None
        if early:
            ts = plan.lazy.select("timestamp").collect().get_column("timestamp")
            repeated = pool.submit(_repeated_values, ts)
            frame = plan.lazy.drop("timestamp").collect().with_columns(ts).select(columns)
        else:
            frame = plan.lazy.collect()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=False)
    return frame, repeated


def _validate(
    raw: dict[str, pl.LazyFrame],
    *,
    source: str,
    as_of: dt.datetime | None,
    warnings_: tuple[str, ...],
    files: Mapping[str, Path] | None = None,
    timestamp_range: tuple[dt.datetime, dt.datetime],
) -> tuple[dict[str, pl.LazyFrame], LoadReport]:
    """Type, check and summarise every table given; raise one SchemaError listing all problems."""
    frames: dict[str, pl.LazyFrame] = {}
    summaries: dict[str, TableSummary] = {}
    problems: list[str] = []
    for table in TABLES:
        if table not in raw:
            continue
        file = (files or {}).get(table)
        try:
            plan = _plan(
                table,
                raw[table],
                text_source=file is not None and file.suffix.lower() == ".csv",
                timestamp_range=timestamp_range,
            )
            frame, repeated_job = _read(plan, file)
            if plan.parse_later:
                frame = frame.with_columns(_parse_timestamps(frame.get_column(c)).alias(c) for c in plan.parse_later)
        except SchemaError as exc:
            problems.append(str(exc))
            continue
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError) as exc:
            problems.append(_read_error(table, file, exc))
            continue
        # Consents are about the channels one is contacted on: the contactable ones, those of the
        # contacts table (read before consents), and the permission to be profiled.
        contacted = set(summaries["contacts"].channels) if "contacts" in summaries else set()
        consent_channels = frozenset({*CONTACTABLE_CHANNELS, *contacted, PROFILING} - {UNKNOWN_CHANNEL})
        kept, summary, table_problems = _check_table(
            table, plan, frame, as_of=as_of, repeated_job=repeated_job, consent_channels=consent_channels
        )
        problems += table_problems
        summaries[table] = summary
        frames[table] = kept.select(plan.data_cols).lazy()
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        if len(problems) > _MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - _MAX_PROBLEMS} more")
        msg = f"histories in {source!r} break the input contract:\n  " + "\n  ".join(shown)
        raise SchemaError(msg)
    report = LoadReport(source=source, tables=summaries, warnings=warnings_, as_of=as_of)
    return frames, report
