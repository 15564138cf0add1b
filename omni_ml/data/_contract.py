"""The histories contract: tables, their columns and types, accepted formats (DESIGN.md section 3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import polars as pl

TABLES: tuple[str, ...] = ("events", "contacts", "consents", "identity_links", "customers")
DEFAULT_CHANNELS: tuple[str, ...] = ("web", "app", "store", "email", "sms", "push", "direct_mail", "call_center")
CONTACTABLE_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "direct_mail", "call_center")
EVENT_TYPES: tuple[str, ...] = (
    "purchase",
    "return",
    "view",
    "cart",
    "visit",
    "open",
    "click",
    "service_call",
    "unsubscribe",
    "redeem",
    "no_answer",
    "reached",
    "interested",
)
UNKNOWN_CHANNEL = "unknown"
NO_CONTACT = "no_contact"
"""The action of not contacting a customer: a ``best_channel`` / ``recommended_channel`` of the campaign file, an arm
of the channel model and a logged action of off-policy evaluation. A ``contacts`` row on this channel is a logged
decision not to contact (a control-group or explored pause, cost 0, with its ``assignment_probability``), never a
message (:attr:`Histories.sent_contacts`)."""
TIMESTAMP = pl.Datetime("us", "UTC")

_STR = pl.String
_F64 = pl.Float64


@dataclasses.dataclass(frozen=True)
class _Spec:
    columns: Mapping[str, pl.DataType | type[pl.DataType]]
    required: tuple[str, ...]
    keyed_by_person: bool  # carries customer_id and/or identifier


_SPECS: dict[str, _Spec] = {
    "events": _Spec(
        {
            "customer_id": _STR,
            "identifier": _STR,
            "timestamp": TIMESTAMP,
            "channel": _STR,
            "event_type": _STR,
            "amount": _F64,
            "product_id": _STR,
            "category": _STR,
            "campaign_id": _STR,
        },
        ("timestamp", "channel", "event_type"),
        True,
    ),
    "contacts": _Spec(
        {
            "customer_id": _STR,
            "identifier": _STR,
            "timestamp": TIMESTAMP,
            "channel": _STR,
            "campaign_id": _STR,
            "cost": _F64,
            "assignment_probability": _F64,
        },
        ("timestamp", "channel"),
        True,
    ),
    "consents": _Spec(
        {"customer_id": _STR, "identifier": _STR, "channel": _STR, "granted": pl.Boolean, "timestamp": TIMESTAMP},
        ("channel", "granted", "timestamp"),
        True,
    ),
    "identity_links": _Spec(
        {"identifier_a": _STR, "identifier_b": _STR, "timestamp": TIMESTAMP, "source": _STR},
        ("identifier_a", "identifier_b", "timestamp"),
        False,
    ),
    "customers": _Spec({"customer_id": _STR}, ("customer_id",), False),
}

_TRUE = ("true", "t", "yes", "y", "1", "1.0", "granted")
_FALSE = ("false", "f", "no", "n", "0", "0.0", "withdrawn", "revoked")
# Tried in this order; the first format that parses a column's first value is applied to the
# whole column, the others only to the rows it did not parse (a column rarely mixes formats).
_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M%z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_TS_FIX = (
    "use ISO 8601 (2025-03-01, 2025-03-01 14:05:00 or 2025-03-01T14:05:00+01:00; Z and UTC suffixes are"
    " fine) or a parquet timestamp/date column; every row needs a time"
)
_IDENTIFIER = r"^[^:\s]+:\S"
_SEPARATORS = (",", ";", "\t", "|")
_NESTED = (pl.List, pl.Array, pl.Struct, pl.Object, pl.Binary)
_MAX_PROBLEMS = 20
_LOWER = ("channel", "event_type")
_COUNTED = ("channel", "event_type")
_SOURCES_WITH_UNKNOWN = ("events", "contacts")  # tables whose missing channel means "unknown"
# From this many rows on, distinct customers are counted over 64-bit hashes of the ids (cheaper
# than comparing strings) and the rows per channel are counted in a thread beside the rules.
_HASHED_MIN_ROWS = 1 << 20
# Amounts and costs beyond this (in the currency's units) are export errors, not money.
_AMOUNT_BOUND = 1e9
# Timestamps outside [from, until) are placeholders or broken exports (0001-01-01, 1900-01-01,
# 9999-12-31); the range is set by ``load_histories(timestamp_range=...)`` or this variable.
TIMESTAMP_RANGE_ENV = "OMNI_ML_TIMESTAMP_RANGE"
DEFAULT_TIMESTAMP_RANGE: tuple[str, str] = ("1980-01-01", "2100-01-01")
# Consents name a channel one can be contacted on, or this permission to be recognised
# across channels and personalised (DESIGN.md section 3, issue 22).
PROFILING = "profiling"
