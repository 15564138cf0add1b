"""Inputs of a campaign measurement: the campaign file, the histories, outcomes and pre-period facts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from omni_ml._time import utc_column, window
from omni_ml.data import CONTACTABLE_CHANNELS, NO_CONTACT, TIMESTAMP, Histories
from omni_ml.exceptions import DataInsufficientError, SchemaError
from omni_ml.features import MONEY_SCALE, money_units

__all__ = ["NO_CONTACT", "checked_campaign", "read_campaign", "read_table", "typed_campaign"]


_CONTROL_HINT = (
    "Hint: score the campaign with a control group (`omni-ml score ... --control-fraction 0.1`, or "
    "score(..., control_fraction=0.1)) and measure that file."
)
_NEEDED = ("customer_id", "as_of", "recommended_channel", "control_group")


_SCORE_HINT = "pass the campaign file `omni-ml score` wrote (.parquet or .csv)."


def read_table(source: str | Path | pl.DataFrame, what: str, *, hint: str = _SCORE_HINT) -> tuple[pl.DataFrame, str]:
    """A parquet or csv file (or a frame, as is) and the words that name it in errors (``what 'path'``).

    Raises
    ------
    SchemaError
        No such file, another extension, or a file that does not read; ``hint`` ends the message.
    """
    if isinstance(source, pl.DataFrame):
        return source, what
    path = Path(source)
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        msg = f"{where}: no such file. Hint: {hint}"
        raise SchemaError(msg)
    if path.suffix not in (".csv", ".parquet"):
        msg = f"{where}: must be .parquet or .csv (got {path.suffix or 'no extension'!r}). Hint: {hint}"
        raise SchemaError(msg)
    try:
        frame = pl.read_csv(path, try_parse_dates=True) if path.suffix == ".csv" else pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{where}: cannot be read ({first}). Hint: {hint}"
        raise SchemaError(msg) from exc
    return frame, where


def checked_campaign(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """The rows of a campaign file typed (:func:`typed_campaign`), one per customer and one ``as_of`` for all.

    Raises
    ------
    SchemaError
        A row without ``customer_id``, a repeated ``customer_id``, or more than one (or a missing) ``as_of``.
    """
    frame = frame.with_columns(pl.col("customer_id").cast(pl.String))
    if frame["customer_id"].null_count():
        msg = f"{where}: {frame['customer_id'].null_count():,} rows have no customer_id. Hint: one row per customer."
        raise SchemaError(msg)
    dup = frame["customer_id"].is_duplicated()
    if dup.any():
        example = frame.filter(dup)["customer_id"][0]
        msg = f"{where}: {int(dup.sum()):,} rows repeat a customer_id (e.g. {example!r}). Hint: one row per customer."
        raise SchemaError(msg)
    frame = typed_campaign(frame, where)
    if frame["as_of"].n_unique() != 1 or frame["as_of"].null_count():
        values = frame["as_of"].unique().head(3).to_list()
        msg = (
            f"{where}: as_of must be one moment for the whole file (found e.g. {values}). Hint: one file per "
            "scoring run, as `omni-ml score` writes it."
        )
        raise SchemaError(msg)
    return frame


def read_campaign(campaign: str | Path | pl.DataFrame) -> pl.DataFrame:
    """The campaign file (parquet or csv) as a frame, checked for the columns measurement needs.

    Raises
    ------
    SchemaError
        Missing file or columns other than ``control_group``; see also :func:`checked_campaign`.
    DataInsufficientError
        No ``control_group`` column (the campaign was scored without a control group).
    """
    frame, where = read_table(
        campaign,
        "campaign" if isinstance(campaign, pl.DataFrame) else "campaign file",
        hint="write one with `omni-ml score DIR --model M --as-of D --out FILE`.",
    )
    if "control_group" not in frame.columns:
        msg = (
            f"{where}: no control_group column ({frame.height:,} rows), so there is nothing to compare. {_CONTROL_HINT}"
        )
        raise DataInsufficientError(msg)
    if "recommended_channel" not in frame.columns and "best_channel" in frame.columns:
        frame = frame.with_columns(pl.col("best_channel").alias("recommended_channel"))
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        msg = (
            f"{where}: missing column(s) {missing}; found {frame.columns}. Hint: measure the file omni-ml score wrote."
        )
        raise SchemaError(msg)
    return checked_campaign(frame, where)


_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def typed_campaign(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """The campaign file's ``as_of``, ``control_group``, ``assignment_probability`` and channels, typed and checked.

    A csv round trip (or an edited file) may hold text in these columns: each is read as its type, and a
    value that does not read (``'soon'`` for ``as_of``, ``'maybe'`` for ``control_group``, a channel that is
    almost a known one) is a :class:`~omni_ml.exceptions.SchemaError` naming the column, how many rows, an
    example and the fix, instead of a polars error.
    """
    from omni_ml.data._vocabulary import near_miss

    def refuse(column: str, bad: pl.DataFrame, what: str, hint: str) -> None:
        example = bad[column][0]
        msg = (
            f"{where}: column {column}: {bad.height:,} of {frame.height:,} rows {what} (e.g. {example!r}). Hint: {hint}"
        )
        raise SchemaError(msg)

    hint = "pass the file `omni-ml score` wrote, unchanged."
    if "as_of" in frame.columns and frame.schema["as_of"] != TIMESTAMP:
        raw = pl.col("as_of")
        if frame.schema["as_of"] in (pl.String, pl.Null):
            parsed = raw.cast(pl.String).str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        elif isinstance(frame.schema["as_of"], pl.Datetime | pl.Date):
            parsed = utc_column(raw, frame.schema["as_of"]).cast(TIMESTAMP)
        else:
            parsed = pl.lit(None, dtype=TIMESTAMP)
        bad = frame.filter(raw.is_not_null() & parsed.is_null())
        if bad.height:
            refuse("as_of", bad, "cannot be read as a date-time", "ISO 8601, as `omni-ml score` writes it.")
        frame = frame.with_columns(parsed.cast(TIMESTAMP).alias("as_of"))
    if "control_group" in frame.columns and frame.schema["control_group"] != pl.Boolean:
        low = pl.col("control_group").cast(pl.String).str.strip_chars().str.to_lowercase()
        parsed = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
        bad = frame.filter(pl.col("control_group").is_not_null() & parsed.is_null())
        if bad.height:
            refuse("control_group", bad, "are not true/false", hint)
        frame = frame.with_columns(parsed.cast(pl.Boolean).alias("control_group"))
    if "assignment_probability" in frame.columns and frame.schema["assignment_probability"] != pl.Float64:
        raw = pl.col("assignment_probability")
        parsed = raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        bad = frame.filter(raw.is_not_null() & parsed.is_null())
        if bad.height:
            refuse("assignment_probability", bad, "are not numbers", hint)
        frame = frame.with_columns(parsed.alias("assignment_probability"))
    known = {c.removeprefix("score_") for c in frame.columns if c.startswith("score_")} or set(CONTACTABLE_CHANNELS)
    known.add(NO_CONTACT)
    for column in ("best_channel", "recommended_channel"):
        if column not in frame.columns:
            continue
        frame = frame.with_columns(pl.col(column).cast(pl.String))
        bad = frame.filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(sorted(known)))
        if bad.height:
            near = near_miss(str(bad[column][0]), known)
            said = f"did you mean {near!r}? " if near else ""
            refuse(column, bad, f"name no channel of the campaign ({sorted(known)})", said + hint)
    return frame


def _as_histories(hist: Histories | str | Path) -> Histories:
    if isinstance(hist, Histories):
        return hist
    from omni_ml.data import load_histories

    # No as_of here: the outcomes are after the campaign date by design.
    return load_histories(hist)


def _with_customer_ids(hist: Histories, end: dt.datetime) -> Histories:
    missing = hist.events.filter(pl.col("customer_id").is_null()).select(pl.len()).collect().item()
    if missing == 0:
        return hist
    from omni_ml.identity import resolve_identities

    return resolve_identities(hist, as_of=end)


def _money_sum(column: str) -> pl.Expr:
    """The sum of a money column (nulls as 0), exact in whatever order a parallel group-by adds its rows."""
    return money_units(pl.col(column).fill_null(0.0)).sum() / MONEY_SCALE


def _outcomes(hist: Histories, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    return (
        hist.events.filter(window(start, end=end) & (pl.col("event_type") == "purchase"))
        .group_by("customer_id")
        .agg(
            pl.len().cast(pl.Int64).alias("purchases"),
            _money_sum("amount").alias("revenue"),
        )
        .collect()
    )


def _pre_period(hist: Histories, as_of: dt.datetime, pre_days: int) -> pl.DataFrame:
    ts = pl.col("timestamp")
    start = as_of - dt.timedelta(days=pre_days)
    # from the latest purchase (an exact integer maximum), not a minimum over per-row floats: the same bits in any order
    days = (pl.lit(as_of).cast(TIMESTAMP) - ts.max()).dt.total_seconds() / 86_400.0
    return (
        hist.events.filter(window(start, end=as_of) & (pl.col("event_type") == "purchase"))
        .group_by("customer_id")
        .agg(
            pl.len().cast(pl.Float64).alias("pre_purchases"),
            _money_sum("amount").alias("pre_revenue"),
            days.alias("pre_recency_days"),
        )
        .collect()
    )


def _contact_costs(hist: Histories, costs: Mapping[str, float] | None) -> dict[str, float]:
    from omni_ml.policy import PolicyConfig, costs_from_contacts

    out = {c: PolicyConfig().cost(c) for c in CONTACTABLE_CHANNELS}
    out.update(costs_from_contacts(hist))
    out.update({str(k): float(v) for k, v in (costs or {}).items()})
    return out
