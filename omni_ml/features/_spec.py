"""The vocabulary of feature definitions: what a feature is, and the helpers families are written with.

A :class:`Feature` is a name, a one-line description, a text template, and one ``spec``
saying how its value is computed as of a cutoff:

* an :class:`Aggregate` over the ``events`` or ``contacts`` table or a :class:`DerivedSource` (count,
  sum of a column, days since the last or first matching row), optionally within a window of
  ``w`` days, i.e. over rows with ``cutoff - w days <= timestamp < cutoff``;
* a polars expression over *earlier* features of the same set (a derived feature,
  e.g. a ratio of two counts);
* a :class:`Attribute` of the customers table or a :class:`Consent` flag.

Families never filter on time themselves: the engine (``_engine.py``) is the single
place that applies ``timestamp < cutoff``.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    from omni_ml.data import Histories

__all__ = [
    "Aggregate",
    "Attribute",
    "Consent",
    "DerivedSource",
    "Feature",
    "FamilyContext",
    "count",
    "days_since_first",
    "days_since_last",
    "event",
    "slug",
    "total",
]

Source = Literal["events", "contacts"]
AggKind = Literal["count", "sum", "last", "first"]
AttributeKind = Literal["numeric", "boolean", "date", "code"]


class DerivedSource(abc.ABC):
    """A table derived from the histories that aggregates read like ``events`` or ``contacts``.

    Its rows carry ``customer_id``, ``timestamp`` (UTC, microseconds: the moment the row is known) and
    the columns its aggregates read. The engine asks for the rows known before its latest cutoff and
    applies ``timestamp < cutoff`` to them as to any table, so a subclass states only what a row is and
    when it is known. Subclasses are frozen dataclasses: equal parameters make the same source.
    """

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """A short text naming the source and its parameters (unique among sources)."""

    @abc.abstractmethod
    def rows(self, hist: Histories, before: dt.datetime) -> pl.LazyFrame | None:
        """The rows known by ``before``: at least every row with ``timestamp < before`` (``None``: none can exist)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Aggregate:
    """A base aggregate of one source table as of a cutoff.

    Parameters
    ----------
    source
        ``"events"``, ``"contacts"`` or a :class:`DerivedSource`.
    kind
        ``count`` (matching rows), ``sum`` (of ``column``), ``last`` / ``first`` (days from the
        latest / earliest matching row to the cutoff; null when there is none).
    where
        Row predicate (a boolean polars expression over the source's columns); ``None`` = all rows.
        A null predicate value counts as false.
    column
        Column summed by ``kind="sum"``.
    window
        Days; ``None`` means all history before the cutoff. ``last``/``first`` take no window.
    """

    source: Source | DerivedSource
    kind: AggKind
    where: pl.Expr | None = None
    column: str | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "sum" and self.column is None:
            msg = "Aggregate(kind='sum') needs the column to sum, e.g. column='amount'."
            raise ValueError(msg)
        if self.kind in ("last", "first") and self.window is not None:
            msg = f"Aggregate(kind={self.kind!r}) looks at all history before the cutoff; drop window={self.window}."
            raise ValueError(msg)
        if self.window is not None and (not isinstance(self.window, int) or self.window <= 0):
            msg = f"Aggregate window must be a positive number of days, got {self.window!r}."
            raise ValueError(msg)

    @property
    def measure_key(self) -> str:
        """Identity of the running total this aggregate reads (window excluded: windows share it)."""
        where = "*" if self.where is None else str(self.where)
        return f"{self.source_key}|{self.kind}|{self.column}|{where}"

    @property
    def source_key(self) -> str:
        """The source's name: ``events``, ``contacts`` or a derived source's key."""
        return self.source.key if isinstance(self.source, DerivedSource) else self.source


@dataclasses.dataclass(frozen=True)
class Attribute:
    """A static column of the customers table, encoded as a number.

    ``numeric`` as-is (Float64), ``boolean`` as Int8, ``date`` as days from the date to the
    cutoff (null when the date is not before the cutoff), ``code`` as the index of the value in
    ``levels`` (Int32; null stays null; a value not in ``levels`` gets ``len(levels)``, "other").
    """

    column: str
    kind: AttributeKind
    levels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Consent:
    """Whether the customer's consent for ``channel`` is granted as of the cutoff (Int8 0/1)."""

    channel: str


Spec = Aggregate | Attribute | Consent | pl.Expr


@dataclasses.dataclass(frozen=True, eq=False)
class Feature:
    """One named feature: how to compute it and how to say it in words.

    Parameters
    ----------
    name
        Column name in the feature table (unique in a set; ``[a-z0-9_]`` by convention).
    spec
        :class:`Aggregate`, :class:`Attribute`, :class:`Consent`, or a polars expression over
        earlier features of the set (a derived feature).
    description
        One line for humans, quoted by explanations ("Web visits in the last 7 days").
    template
        ``str.format`` text with ``{value}`` (formatted with ``fmt``) and optionally ``{s}``
        (``"s"`` unless the value is 1): ``"{value} web visit{s} in the last 7 days"``.
    family
        Filled in by the registry from the family that produced the feature.
    fmt
        Format spec for the value in ``template``.
    missing
        Text when the value is null (``days since`` with no such event); default "<description>: none".
    dtype
        Output dtype of a derived feature (aggregates, attributes and consents know theirs).
    """

    name: str
    spec: Spec
    description: str
    template: str = ""
    family: str = ""
    fmt: str = ",.0f"
    missing: str | None = None
    dtype: type[pl.DataType] | pl.DataType = pl.Float64

    @property
    def output_dtype(self) -> pl.DataType:
        """The numeric dtype of the feature column."""
        spec = self.spec
        if isinstance(spec, Aggregate):
            return pl.Int32() if spec.kind == "count" else pl.Float64()
        if isinstance(spec, Consent):
            return pl.Int8()
        if isinstance(spec, Attribute):
            return {"numeric": pl.Float64(), "boolean": pl.Int8(), "date": pl.Float64(), "code": pl.Int32()}[spec.kind]
        return self.dtype() if isinstance(self.dtype, type) else self.dtype


@dataclasses.dataclass(frozen=True)
class FamilyContext:
    """What a family builder may use: the configuration and the fitted vocabularies."""

    windows: tuple[int, ...]
    category_windows: tuple[int, ...]
    engagement_window: int
    pressure_windows: tuple[int, ...]
    trend_pairs: tuple[tuple[int, int], ...]
    channels: tuple[str, ...]
    purchase_channels: tuple[str, ...]
    browse_channels: tuple[str, ...]
    categories: tuple[str, ...]
    contact_channels: tuple[str, ...]
    consent_channels: tuple[str, ...]
    attributes: tuple[Attribute, ...]
    has_contacts: bool


FamilyBuilder = Callable[[FamilyContext], list[Feature]]


# ----------------------------------------------------------------------------- helpers for family authors


def event(
    event_type: str | tuple[str, ...] | None = None,
    *,
    channel: str | None = None,
    category: str | None = None,
) -> pl.Expr:
    """Predicate over events: of ``event_type`` (one or several), on ``channel``, in ``category``.

    Examples
    --------
    >>> import polars as pl
    >>> pl.DataFrame({"event_type": ["visit", "visit"], "channel": ["web", "app"]}).select(
    ...     event("visit", channel="web")).to_series().to_list()
    [True, False]
    """
    parts: list[pl.Expr] = []
    if isinstance(event_type, str):
        parts.append(pl.col("event_type") == event_type)
    elif event_type is not None:
        parts.append(pl.col("event_type").is_in(list(event_type)))
    if channel is not None:
        parts.append(pl.col("channel") == channel)
    if category is not None:
        parts.append(pl.col("category") == category)
    if not parts:
        return pl.lit(True)
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


def count(
    where: pl.Expr | None = None, *, window: int | None = None, source: Source | DerivedSource = "events"
) -> Aggregate:
    """Number of ``source`` rows matching ``where`` in the last ``window`` days (all history if None)."""
    return Aggregate(source, "count", where, window=window)


def total(
    column: str = "amount",
    where: pl.Expr | None = None,
    *,
    window: int | None = None,
    source: Source | DerivedSource = "events",
) -> Aggregate:
    """Sum of ``column`` over ``source`` rows matching ``where`` in the last ``window`` days."""
    return Aggregate(source, "sum", where, column=column, window=window)


def days_since_last(where: pl.Expr | None = None, *, source: Source | DerivedSource = "events") -> Aggregate:
    """Days from the latest matching row before the cutoff to the cutoff (null if none)."""
    return Aggregate(source, "last", where)


def days_since_first(where: pl.Expr | None = None, *, source: Source | DerivedSource = "events") -> Aggregate:
    """Days from the earliest matching row before the cutoff to the cutoff (null if none)."""
    return Aggregate(source, "first", where)


def slug(value: str) -> str:
    """A column-name-safe version of a channel, category or attribute value.

    Examples
    --------
    >>> slug("Home & Garden")
    'home_garden'
    """
    out = re.sub(r"[^0-9a-z]+", "_", value.lower()).strip("_")
    return out or "blank"
