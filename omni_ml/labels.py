"""Outcomes after a cutoff: the single place for ``cutoff <= timestamp < cutoff + horizon``.

Features see ``timestamp < cutoff`` (``omni_ml.features``); labels see the half-open window
``[cutoff, cutoff + horizon)``. The two never overlap, and a label is only given when its
window is fully observed: it must end no later than the end of observation, which is
``as_of`` when given (else the ``as_of`` the histories were loaded with, else the latest
event timestamp). Asking for a label whose window is cut off by the end of the data raises
:class:`~omni_ml.exceptions.LeakageError` -- a half-observed window silently counts
customers as non-buyers and biases every model trained on it.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl

from omni_ml import _time
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import LeakageError, SchemaError

__all__ = ["contact_outcomes", "observed_until", "purchase_labels"]

_MONEY_SCALE = 10_000  # revenue summed in integer 1/10,000 units: exact and order-independent


def observed_until(hist: Histories, as_of: dt.datetime | None = None) -> dt.datetime:
    """End of observation: ``as_of``, else the load's ``as_of``, else the latest event timestamp.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a"], "timestamp": [dt.datetime(2025, 3, 1)], "amount": [1.0]})
    >>> observed_until(Histories.from_frames(ev)).isoformat()
    '2025-03-01T00:00:00+00:00'
    """
    if as_of is None and hist.report is not None and hist.report.as_of is not None:
        as_of = hist.report.as_of
    if as_of is not None:
        return _time.as_utc(as_of)
    latest = hist.events.select(pl.col("timestamp").max()).collect().item()
    if latest is None:
        msg = "events: the table is empty, so no label window can be observed. Hint: load histories with events."
        raise SchemaError(msg)
    return latest  # type: ignore[no-any-return]


def purchase_labels(
    hist: Histories,
    keys: pl.DataFrame,
    horizon_days: int,
    *,
    as_of: dt.datetime | None = None,
) -> pl.DataFrame:
    """Whether each customer purchased in ``[cutoff, cutoff + horizon_days)``.

    Parameters
    ----------
    hist
        Histories with resolved customer ids.
    keys
        ``customer_id``, ``cutoff`` (one output row per input row, same order; extra columns kept).
    horizon_days
        Label window length in days.
    as_of
        End of observation (default: see :func:`observed_until`).

    Returns
    -------
    polars.DataFrame
        ``keys`` plus ``label`` (Int8 0/1), ``n_purchases`` (Int32) and ``revenue`` (Float64).

    Raises
    ------
    LeakageError
        Some cutoff's window ends after the end of observation.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a", "a", "b"], "amount": [5.0, 7.0, 1.0],
    ...     "timestamp": [dt.datetime(2025, 1, 31), dt.datetime(2025, 2, 1), dt.datetime(2025, 3, 1)]})
    >>> keys = pl.DataFrame({"customer_id": ["a", "b"], "cutoff": [dt.datetime(2025, 2, 1)] * 2})
    >>> purchase_labels(Histories.from_frames(ev), keys, 14).select("customer_id", "label", "revenue").rows()
    [('a', 1, 7.0), ('b', 0, 0.0)]
    """
    _check_horizon(horizon_days)
    frame = _keys(keys)
    horizon = dt.timedelta(days=horizon_days)
    end = observed_until(hist, as_of)
    if frame.height:
        _check_observed(frame["cutoff"], horizon, end, what=f"purchase labels with horizon {horizon_days} days")
    if frame.height == 0:
        return keys.with_columns(
            pl.lit(None, pl.Int8).alias("label"),
            pl.lit(None, pl.Int32).alias("n_purchases"),
            pl.lit(None, pl.Float64).alias("revenue"),
        )
    lo, hi = frame["cutoff"].min(), frame["cutoff"].max() + horizon  # type: ignore[operator]
    purchases = (
        hist.events.filter((pl.col("event_type") == "purchase") & _time.window(lo, end=hi))
        .select("customer_id", "timestamp", _money("amount"))
        .collect()
    )
    window = _time.window(pl.col("cutoff"), end=pl.col("cutoff") + horizon)
    outcome = (
        frame.unique()
        .join(purchases, on="customer_id", how="inner")
        .filter(window)  # THE label window: cutoff <= timestamp < cutoff + horizon
        .group_by("customer_id", "cutoff")
        .agg(pl.len().cast(pl.Int32).alias("n_purchases"), pl.col("__money").sum().alias("__money"))
    )
    out = frame.join(outcome, on=["customer_id", "cutoff"], how="left", maintain_order="left").select(
        (pl.col("n_purchases").fill_null(0) > 0).cast(pl.Int8).alias("label"),
        pl.col("n_purchases").fill_null(0),
        _from_money(pl.col("__money").fill_null(0)).alias("revenue"),
    )
    return pl.concat([keys.drop("label", "n_purchases", "revenue", strict=False), out], how="horizontal")


def contact_outcomes(
    hist: Histories,
    window_days: int = 7,
    *,
    as_of: dt.datetime | None = None,
    incomplete: Literal["raise", "drop"] = "raise",
) -> pl.DataFrame:
    """Each contact with what followed it in ``[contact timestamp, + window_days)``.

    ``converted``: the customer purchased (any channel) in the window; ``opened`` /
    ``clicked``: an ``open`` / ``click`` event on the contact's channel in the window (and of
    the same campaign when both carry a ``campaign_id``); ``revenue``: purchase amount in the
    window. The contact's own features use cutoff = its timestamp, so nothing here is a feature.

    Parameters
    ----------
    hist
        Histories with a contacts table and resolved customer ids.
    window_days
        Response window in days.
    as_of
        End of observation (default: see :func:`observed_until`).
    incomplete
        Contacts whose window ends after the end of observation: ``"raise"`` a
        :class:`LeakageError` (default) or ``"drop"`` them (explicitly).

    Returns
    -------
    polars.DataFrame
        The contacts rows (sorted by timestamp, customer_id, channel) plus ``converted``,
        ``opened``, ``clicked`` (Int8 0/1) and ``revenue`` (Float64).

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a", "a"], "channel": ["email", "web"], "event_type": ["open", "purchase"],
    ...     "timestamp": [dt.datetime(2025, 1, 1, 9), dt.datetime(2025, 1, 3)], "amount": [None, 30.0]})
    >>> co = pl.DataFrame({"customer_id": ["a"], "channel": ["email"], "timestamp": [dt.datetime(2025, 1, 1, 8)]})
    >>> h = Histories.from_frames(ev, contacts=co)
    >>> contact_outcomes(h, 7, as_of=dt.datetime(2025, 2, 1)).select("converted", "opened", "revenue").row(0)
    (1, 1, 30.0)
    """
    _check_horizon(window_days)
    if hist.contacts is None:
        msg = "contacts: the histories have no contacts table. Hint: add contacts.parquet (see data/README.md)."
        raise SchemaError(msg)
    window = dt.timedelta(days=window_days)
    end = observed_until(hist, as_of)
    contacts = hist.contacts.collect().sort("timestamp", "customer_id", "channel", maintain_order=True)
    if contacts["customer_id"].null_count():
        msg = (
            f"contacts.customer_id: {contacts['customer_id'].null_count():,} of {contacts.height:,} rows carry only "
            "an identifier. Hint: call omni_ml.resolve_identities(hist) first."
        )
        raise SchemaError(msg)
    late = contacts["timestamp"] + window > end
    if late.any():
        if incomplete == "raise":
            _check_observed(
                contacts["timestamp"], window, end, what=f"contact outcomes with a {window_days}-day window"
            )
        contacts = contacts.filter(~late)
    keyed = contacts.with_row_index("__row")
    if keyed.height == 0:
        return contacts.with_columns(
            pl.lit(0, pl.Int8).alias(c) for c in ("converted", "opened", "clicked")
        ).with_columns(pl.lit(0.0).alias("revenue"))
    lo, hi = keyed["timestamp"].min(), keyed["timestamp"].max() + window  # type: ignore[operator]
    events = (
        hist.events.filter(pl.col("event_type").is_in(["purchase", "open", "click"]) & _time.window(lo, end=hi))
        .select(
            "customer_id",
            pl.col("timestamp").alias("__ts"),
            pl.col("channel").alias("__channel"),
            pl.col("campaign_id").alias("__campaign"),
            "event_type",
            _money("amount"),
        )
        .collect()
    )
    in_window = _time.window(pl.col("timestamp"), end=pl.col("timestamp") + window, column="__ts")
    same_campaign = (
        pl.col("campaign_id").is_null()
        | pl.col("__campaign").is_null()
        | (pl.col("campaign_id") == pl.col("__campaign"))
    )
    response = (pl.col("__channel") == pl.col("channel")) & same_campaign
    outcome = (
        keyed.select("__row", "customer_id", "timestamp", "channel", "campaign_id")
        .join(events, on="customer_id", how="inner")
        .filter(in_window)  # THE response window: contact <= timestamp < contact + window
        .group_by("__row")
        .agg(
            (pl.col("event_type") == "purchase").any().alias("converted"),
            ((pl.col("event_type") == "open") & response).any().alias("opened"),
            ((pl.col("event_type") == "click") & response).any().alias("clicked"),
            pl.col("__money").filter(pl.col("event_type") == "purchase").sum().alias("__money"),
        )
    )
    return (
        keyed.join(outcome, on="__row", how="left", maintain_order="left")
        .with_columns(
            *(pl.col(c).fill_null(False).cast(pl.Int8) for c in ("converted", "opened", "clicked")),
            _from_money(pl.col("__money").fill_null(0)).alias("revenue"),
        )
        .drop("__row", "__money")
    )


def _money(column: str) -> pl.Expr:
    return (pl.col(column).cast(pl.Float64) * _MONEY_SCALE).round().cast(pl.Int64).fill_null(0).alias("__money")


def _from_money(units: pl.Expr) -> pl.Expr:
    # divide by a same-length column: polars' column/scalar division goes through the reciprocal
    # (rounds 39.9 to 39.900000000000006) on longer frames but not on 1-row frames.
    value = units.cast(pl.Float64)
    return value / (value * 0.0 + float(_MONEY_SCALE))


def _check_horizon(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        msg = f"horizon: expected a positive whole number of days, got {days!r}."
        raise SchemaError(msg)


def _keys(keys: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("customer_id", "cutoff") if c not in keys.columns]
    if missing:
        msg = (
            f"keys: missing column(s) {missing}; found {keys.columns[:10]}. Hint: pass DataFrame(customer_id, cutoff)."
        )
        raise SchemaError(msg)
    dtype = keys.schema["cutoff"]
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        cutoff = _time.utc_column("cutoff", dtype)
    else:
        msg = f"keys.cutoff: expected a Datetime or Date column, got {dtype}. Hint: parse it with str.to_datetime()."
        raise SchemaError(msg)
    frame = keys.select(pl.col("customer_id").cast(pl.String), cutoff.cast(TIMESTAMP))
    nulls = frame["cutoff"].null_count() + frame["customer_id"].null_count()
    if nulls:
        msg = f"keys: {nulls:,} null customer_id/cutoff values in {keys.height:,} rows. Hint: drop them first."
        raise SchemaError(msg)
    return frame


def _check_observed(starts: pl.Series, length: dt.timedelta, end: dt.datetime, *, what: str) -> None:
    late = starts.filter(starts + length > end)
    if late.len():
        latest_ok = end - length
        worst: dt.datetime = late.max()  # type: ignore[assignment]
        msg = (
            f"{what}: {late.len():,} of {starts.len():,} windows end after the end of observation "
            f"{end:%Y-%m-%d %H:%M:%S} (e.g. one starting {worst:%Y-%m-%d %H:%M:%S} ends "
            f"{worst + length:%Y-%m-%d %H:%M:%S}); their outcome is not fully observed. "
            f"Hint: use cutoffs at or before {latest_ok:%Y-%m-%d %H:%M:%S}, a shorter horizon, or a later as_of."
        )
        raise LeakageError(msg)
