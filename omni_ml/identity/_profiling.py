"""The customer decides when they are recognised: the ``profiling`` consent gates identity links.

``profiling`` is a consent record like the channel consents (``consents.channel == "profiling"``),
event-sourced the same way: the state of an identifier at ``t`` is its latest record strictly
before ``t``, and records at the same instant resolve to *withdrawn*. A record keyed by
``customer_id`` X belongs to ``crm:X``; one keyed by an identifier belongs to that identifier.

A link between two identifiers made at ``t`` (an ``identity_links`` row, or a row carrying both a
customer id and an identifier) is used only if

- no endpoint had profiling withdrawn at ``t``, nor has it withdrawn as of the resolution moment
  (a withdrawal undoes the person's links from that moment on), and
- when profiling is *required*, at least one endpoint had granted it at ``t`` and still has.

``IdentityRules.profiling`` says when it is required: ``"if_recorded"`` (default: when the
consents table holds any profiling record, at any time: the source collects this consent;
histories without one resolve as before),
``"required"`` or ``"ignored"``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from omni_ml._time import before
from omni_ml.data import PROFILING, Histories

__all__ = ["profiling_recorded", "profiling_records", "unconsented_links"]

_T = pl.Int64  # epoch microseconds, as the graph's times


def profiling_recorded(hist: Histories) -> bool:
    """Whether the consents table holds any profiling record (at any time): the source collects it."""
    if hist.consents is None:
        return False
    return bool(hist.consents.filter(pl.col("channel") == PROFILING).select(pl.len()).collect().item())


def profiling_records(hist: Histories, moment: dt.datetime | None, primary_type: str) -> pl.DataFrame:
    """Profiling records before ``moment``: ``key`` (identifier or ``crm:ID``), ``t`` (us), ``granted``.

    Records at one instant for one key are merged into one, withdrawn if any is.
    """
    empty = pl.DataFrame(schema={"key": pl.String, "t": _T, "granted": pl.Boolean})
    if hist.consents is None:
        return empty
    ts = pl.col("timestamp")
    lf = hist.consents.filter(pl.col("channel") == PROFILING)
    if moment is not None:
        lf = lf.filter(before(moment))
    key = pl.coalesce(pl.col("identifier"), pl.lit(f"{primary_type}:") + pl.col("customer_id")).alias("key")
    return (
        lf.select(key, ts.dt.epoch("us").alias("t"), pl.col("granted"))
        .group_by("key", "t")
        .agg(pl.col("granted").all())
        .sort("key", "t")
        .collect()
    )


def unconsented_links(pairs: pl.DataFrame, records: pl.DataFrame, *, required: bool) -> np.ndarray:
    """Mask of the ``pairs`` (columns ``a``, ``b``, ``t``) that profiling consent does not allow.

    ``records`` come from :func:`profiling_records` (already cut at the resolution moment, so each
    key's last record is its state now).
    """
    if pairs.height == 0:
        return np.zeros(0, dtype=bool)
    now = records.group_by("key").agg(pl.col("granted").last().alias("now"))
    frame = pairs.select("a", "b", pl.col("t").cast(_T)).with_row_index("__row")
    states: list[tuple[pl.Series, pl.Series]] = []
    for end in ("a", "b"):
        joined = (
            frame.select("__row", pl.col(end).alias("key"), "t")
            .sort("t")
            .join_asof(
                records.sort("t"),
                on="t",
                by="key",
                strategy="backward",
                allow_exact_matches=False,
                check_sortedness=False,
            )
            .join(now, on="key", how="left")
            .sort("__row")
        )
        states.append((joined["granted"], joined["now"]))
    blocked = np.zeros(pairs.height, dtype=bool)
    consented = np.zeros(pairs.height, dtype=bool)
    for then, now_state in states:
        withdrawn = (then.eq(False).fill_null(False) | now_state.eq(False).fill_null(False)).to_numpy()
        blocked |= withdrawn
        consented |= (then.eq(True).fill_null(False) & now_state.eq(True).fill_null(False)).to_numpy()
    if required:
        blocked |= ~consented
    return blocked
