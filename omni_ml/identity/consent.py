"""Consent state as of any moment, event-sourced (DESIGN.md section 4), and the 'is it resolved?' check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from omni_ml._time import as_utc
from omni_ml.data import CONTACTABLE_CHANNELS, TIMESTAMP, Histories
from omni_ml.exceptions import SchemaError

__all__ = ["consent_state", "require_resolved"]

# ----------------------------------------------------------------------------- consent


def require_resolved(hist: Histories, *tables: str) -> None:
    """Raise if any of ``tables`` still has rows without a customer_id (identifier-only rows).

    Trusts the load report's count of identifier-only rows (``TableSummary.unresolved_rows``);
    tables without a report are checked on the data.
    """
    if hist.identity_map is not None:
        return
    report = hist.report
    for table in tables or tuple(hist.tables()):
        lf = getattr(hist, table)
        if lf is None or "customer_id" not in lf.collect_schema().names():
            continue
        summary = report.tables.get(table) if report else None
        if summary is not None:
            unresolved = summary.unresolved_rows > 0
        else:
            unresolved = bool(lf.select(pl.col("customer_id").is_null().any()).collect().item())
        if unresolved:
            msg = (
                f"{table}.customer_id: some rows carry only an identifier (no customer_id). "
                "Hint: call omni_ml.resolve_identities(hist) first (CLI: omni-ml resolve)."
            )
            raise SchemaError(msg)


def consent_state(
    hist: Histories,
    at: dt.datetime | pl.DataFrame,
    *,
    channels: Sequence[str] = CONTACTABLE_CHANNELS,
    default: bool = False,
) -> pl.DataFrame:
    """Consent per customer and channel as of ``at``, one boolean column ``consent_<channel>`` each.

    Parameters
    ----------
    hist
        Resolved histories (every consents row has a customer_id).
    at
        A moment (every customer in events, consents or customers is returned), or a frame
        with columns ``customer_id`` and ``cutoff`` (one output row per input row, in order).
    channels
        Channels to report.
    default
        State of a channel with no record before ``at``.

    Returns
    -------
    polars.DataFrame
        ``customer_id`` (and ``cutoff`` when ``at`` is a frame), then ``consent_<channel>``.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a"], "timestamp": [dt.datetime(2025, 1, 1)], "amount": [1.0]})
    >>> cs = pl.DataFrame({"customer_id": ["a"], "channel": ["email"], "granted": [True],
    ...                    "timestamp": [dt.datetime(2025, 1, 2)]})
    >>> h = Histories.from_frames(ev, consents=cs)
    >>> consent_state(h, dt.datetime(2025, 1, 3), channels=["email", "sms"]).row(0)
    ('a', True, False)
    """
    require_resolved(hist, "consents")
    if isinstance(at, pl.DataFrame):
        keys = at.select("customer_id", pl.col("cutoff").cast(TIMESTAMP))
        with_cutoff = True
    else:
        moment = as_utc(at)
        ids = [hist.events.select("customer_id")]
        ids += [lf.select("customer_id") for lf in (hist.consents, hist.customers) if lf is not None]
        keys = (
            pl.concat(ids)
            .drop_nulls()
            .unique()
            .sort("customer_id")
            .with_columns(pl.lit(moment).cast(TIMESTAMP).alias("cutoff"))
            .collect()
        )
        with_cutoff = False
    out = keys.with_row_index("__row")
    if hist.consents is None:
        records = pl.DataFrame(
            schema={"customer_id": pl.String, "channel": pl.String, "timestamp": TIMESTAMP, "granted": pl.Boolean}
        )
    else:
        records = (
            hist.consents.filter(pl.col("channel").is_in(list(channels)))
            .group_by("customer_id", "channel", "timestamp")
            .agg(pl.col("granted").all())  # same-instant conflict: withdrawn wins
            .collect()
        )
    sorted_keys = out.sort("cutoff")
    for channel in channels:
        right = records.filter(pl.col("channel") == channel).drop("channel").sort("timestamp")
        joined = sorted_keys.join_asof(
            right,
            left_on="cutoff",
            right_on="timestamp",
            by="customer_id",
            strategy="backward",
            allow_exact_matches=False,  # exclusive cutoff: a record at t is not yet known at t
            check_sortedness=False,
        )
        sorted_keys = sorted_keys.with_columns(joined["granted"].fill_null(default).alias(f"consent_{channel}"))
    result = sorted_keys.sort("__row").drop("__row")
    return result if with_cutoff else result.drop("cutoff")
