"""Events and identity links from drawn rows, for the property tests of per-cutoff identity resolution."""

from __future__ import annotations

import datetime as dt

import polars as pl

#: A drawn event: (identifier, or None for the known customer "C"; timestamp; "purchase" or "visit").
Row = tuple[str | None, dt.datetime, str]
#: A drawn link: (identifier_a, identifier_b, timestamp).
Link = tuple[str, str, dt.datetime]


def identity_frames(rows: list[Row], links: list[Link]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events (web channel; purchases of 10.0) and the identity links the drawn ``rows`` and ``links`` say."""
    events = pl.DataFrame(
        {
            "customer_id": ["C" if r[0] is None else None for r in rows],
            "identifier": [r[0] for r in rows],
            "timestamp": [r[1] for r in rows],
            "channel": ["web"] * len(rows),
            "event_type": [r[2] for r in rows],
            "amount": [10.0 if r[2] == "purchase" else None for r in rows],
        },
        schema_overrides={
            "customer_id": pl.String,
            "identifier": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "amount": pl.Float64,
        },
    )
    link_frame = pl.DataFrame(
        {
            "identifier_a": [x[0] for x in links],
            "identifier_b": [x[1] for x in links],
            "timestamp": [x[2] for x in links],
        },
        schema={"identifier_a": pl.String, "identifier_b": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )
    return events, link_frame
