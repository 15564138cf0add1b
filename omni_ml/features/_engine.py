"""The feature engine: the single place that applies ``timestamp < cutoff``.

How one pass serves many cutoffs, exactly to the microsecond
-----------------------------------------------------------
1. Every cutoff ``c`` and every window start ``c - w days`` is a *boundary*. The sorted
   boundaries cut the time line into segments; segment ``s`` holds the rows with
   ``B[s-1] <= timestamp < B[s]`` (segment 0: everything before ``B[0]``). Rows at or after
   the last cutoff are never read (the filter is pushed down to the parquet scan); so is
   history older than the longest window when no feature needs all history.
2. One streaming pass groups the rows by ``(customer_id, segment)`` into a small *cube* of
   running measures: counts, sums, latest and earliest timestamps. When a sample shows that few
   rows match any measure's predicate (e.g. purchases among all events), a source is read in two
   passes: the predicate-free measures over all rows, cut only at the cutoffs (one segment for
   a single cutoff), and the others over the matching rows only.
3. Per customer the cube is accumulated over segments (sums, latest and earliest timestamps).
   Because ``c`` and ``c - w`` are boundaries, "everything before ``b``" is the running value
   over the segments ``<= index(b)``. A window sum is the difference of two running values.
   ``_running.py`` reads them by one sweep over the segments (dense per-customer arrays) or,
   with very many segments, by binary search.
4. ``compute_at`` knows from the cube of all events who has history before each cutoff, so it
   computes features only for the rows it returns.

A source is the ``events`` or ``contacts`` table or a ``DerivedSource`` (rows derived from the histories,
e.g. contact outcomes stamped when they become known): the engine asks a derived source for its rows known
by the last cutoff and applies the same ``timestamp < cutoff`` to them.

Segments are cut by boundaries and never by days, so a cutoff at any microsecond is exact: a
row at exactly the cutoff is out, a row one microsecond earlier is in.

Sums are exact integers (amounts in units of 1/10,000, see ``MONEY_SCALE``), so the result
does not depend on how the time line was cut: one cutoff at a time or many at once give
identical numbers, byte for byte.

Values for a customer without history before the cutoff: counts and sums are 0; every
"days since" is null (LightGBM treats null as missing); derived ratios are null.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from omni_ml._time import utc_column
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.features._running import MICROS_PER_DAY, MONEY_SCALE, Blocks, feature_columns, money_units
from omni_ml.features._spec import Aggregate, Attribute, Consent, DerivedSource, Feature

__all__ = ["MICROS_PER_DAY", "MONEY_SCALE", "compute_at", "compute_for_keys", "true_div"]

_ANY_EVENT = Aggregate("events", "last")  # who has any history before a cutoff (scoring path)
# A source's predicate-free measures (e.g. days since the last event) need every row; the others
# only the rows matching a predicate. When a sample shows at most this share of rows matching any
# predicate, the two groups are measured in two passes (all rows, few measures; few rows, many
# measures) instead of one pass evaluating every measure on every row. Only speed depends on it.
_SPLIT_SHARE = 0.25
_SAMPLE_ROWS = 100_000
_SWEEP_SEGMENTS = 4_096  # up to this many segments, running values are swept instead of binary-searched


@dataclasses.dataclass(frozen=True)
class _Pass:
    """One scan of a source: measures over the same rows, cut at the same boundaries."""

    source: str | DerivedSource
    measures: dict[str, Aggregate]
    windows: frozenset[int]  # windows read from this pass (their starts become boundaries)
    unbounded: bool  # some measure reads all history before the cutoff
    rows: pl.Expr | None = None  # keep only rows matching this (any measure's predicate)


class _Plan:
    """The distinct running measures per source table, and which windows each is read at."""

    def __init__(self, features: Sequence[Feature], *, need_history: bool) -> None:
        self.measures: dict[str | DerivedSource, dict[str, Aggregate]] = defaultdict(dict)
        self.windows: dict[str, set[int]] = defaultdict(set)  # measure key -> windows it is read at
        self.unbounded: dict[str, bool] = defaultdict(bool)  # measure key -> read over all history
        aggs = [f.spec for f in features if isinstance(f.spec, Aggregate)]
        if need_history:
            aggs.append(_ANY_EVENT)
        for agg in aggs:
            key = agg.measure_key
            self.measures[agg.source].setdefault(key, agg)
            if agg.window is None:
                self.unbounded[key] = True
            else:
                self.windows[key].add(agg.window)
        # measure keys start with the source, so they are unique across sources
        self.column = {
            key: f"__{agg.source_key}_{i}" for ms in self.measures.values() for i, (key, agg) in enumerate(ms.items())
        }

    def col(self, agg: Aggregate) -> str:
        return self.column[agg.measure_key]

    def group(self, source: str | DerivedSource, keys: Sequence[str], rows: pl.Expr | None = None) -> _Pass:
        measures = {k: self.measures[source][k] for k in keys}
        windows = frozenset(w for k in keys for w in self.windows[k])
        return _Pass(source, measures, windows, any(self.unbounded[k] for k in keys), rows)

    def passes(self, source: str | DerivedSource, rows: pl.LazyFrame | None, *, streaming: bool) -> list[_Pass]:
        """One pass over ``rows``, or two when few rows match the measures' predicates."""
        measures = self.measures[source]
        plain = [k for k, a in measures.items() if a.where is None]
        matched = [k for k, a in measures.items() if a.where is not None]
        if rows is None or not matched:
            return [self.group(source, list(measures))]
        predicates = [measures[k].where for k in matched]
        any_match = pl.any_horizontal([p.fill_null(False) for p in _weakest(predicates) if p is not None])
        if not plain:
            return [self.group(source, matched, any_match)]
        sample = rows.head(_SAMPLE_ROWS).select(any_match.mean()).collect(engine=_engine(streaming)).item()
        if sample is None or sample > _SPLIT_SHARE:
            return [self.group(source, list(measures))]
        return [self.group(source, plain), self.group(source, matched, any_match)]


def _conjuncts(predicate: pl.Expr) -> frozenset[str]:
    """The terms of ``a & b & ...`` (serialised), or the whole predicate as one term."""

    def flatten(node: Any) -> list[Any]:
        binary = node.get("BinaryExpr") if isinstance(node, dict) else None
        if binary is not None and binary.get("op") == "And":
            return flatten(binary["left"]) + flatten(binary["right"])
        return [node]

    return frozenset(
        json.dumps(term, sort_keys=True) for term in flatten(json.loads(predicate.meta.serialize(format="json")))
    )


def _weakest(predicates: Sequence[pl.Expr | None]) -> list[pl.Expr]:
    """The predicates not implied by another one (``a & b`` implies ``a``): their OR is the OR of all."""
    terms = {str(p): (p, _conjuncts(p)) for p in predicates if p is not None}
    kept: list[tuple[pl.Expr, frozenset[str]]] = []
    for p, t in sorted(terms.values(), key=lambda pt: len(pt[1])):
        if not any(k <= t for _, k in kept):
            kept.append((p, t))
    return [p for p, _ in kept]


def true_div(numerator: pl.Expr, denominator: float) -> pl.Expr:
    """``numerator / denominator``, correctly rounded whatever the frame's length.

    Polars divides a column by a scalar through the reciprocal on longer frames but exactly on a
    1-row frame, so the same key could get different last bits from the scoring and the training
    path; dividing by a column of the same length is always the exact IEEE division.
    """
    return numerator / (numerator * 0.0 + float(denominator))


def _engine(streaming: bool) -> Literal["streaming", "auto"]:
    return "streaming" if streaming else "auto"


def _utc_us(values: pl.Series) -> np.ndarray:
    return values.cast(TIMESTAMP).dt.epoch("us").to_numpy()


def _measure_expr(agg: Aggregate, name: str, where: pl.Expr | None) -> pl.Expr:
    """The per-segment aggregate of one measure; ``where`` is its (precomputed) row predicate."""
    ts = pl.col("__ts")
    if agg.kind == "count":
        expr = pl.len() if where is None else where.sum()
        return expr.cast(pl.Int64).alias(name)
    if agg.kind == "sum":
        assert agg.column is not None  # checked by Aggregate
        money = pl.col(f"__money_{agg.column}")
        value = money if where is None else pl.when(where).then(money).otherwise(0)
        return value.sum().cast(pl.Int64).alias(name)
    value = ts if where is None else pl.when(where).then(ts)
    return (value.max() if agg.kind == "last" else value.min()).alias(name)


def _moment(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(0, dt.UTC) + dt.timedelta(microseconds=us)


def _cube(rows: pl.LazyFrame, step: _Pass, plan: _Plan, boundaries: np.ndarray, *, streaming: bool) -> pl.DataFrame:
    """One streaming pass over a source's rows before the last cutoff: measures per (customer_id, segment)."""
    if not step.unbounded:
        rows = rows.filter(pl.col("timestamp") >= _moment(int(boundaries[0])))
    if step.rows is not None:
        rows = rows.filter(step.rows)
    # Each distinct predicate and money column is computed once per row, not once per measure.
    predicates: dict[str, str] = {}
    derived: list[pl.Expr] = [pl.col("timestamp").dt.epoch("us").alias("__ts")]
    for agg in step.measures.values():
        if agg.where is not None and str(agg.where) not in predicates:
            predicates[str(agg.where)] = name = f"__where{len(predicates)}"
            derived.append(agg.where.fill_null(False).alias(name))
        if agg.kind == "sum" and f"__money_{agg.column}" not in {e.meta.output_name() for e in derived}:
            money = money_units(pl.col(agg.column)).fill_null(0)  # type: ignore[arg-type]
            derived.append(money.alias(f"__money_{agg.column}"))
    aggs = [
        _measure_expr(agg, plan.col(agg), None if agg.where is None else pl.col(predicates[str(agg.where)]))
        for agg in step.measures.values()
    ]
    rows = rows.with_columns(derived)
    if len(boundaries) == 1:  # every row is before the only boundary: one segment, a cheaper one-column key
        cube = rows.group_by("customer_id").agg(aggs).collect(engine=_engine(streaming))
        return cube.insert_column(1, pl.Series("__seg", np.zeros(cube.height, dtype=np.int64)))
    segment = pl.lit(pl.Series(boundaries)).search_sorted(pl.col("__ts"), side="right")
    return (
        rows.with_columns(segment.cast(pl.Int64).alias("__seg"))
        .group_by("customer_id", "__seg")
        .agg(aggs)
        .collect(engine=_engine(streaming))
    )


_Cube = tuple[_Pass, pl.DataFrame, np.ndarray]  # a pass, its (customer_id, segment) measures, its boundaries


def _cubes(
    hist: Histories,
    plan: _Plan,
    cutoffs: np.ndarray,
    *,
    customers: pl.DataFrame | None,
    streaming: bool,
) -> list[_Cube]:
    """Per pass over a source table the features read: the (customer_id, segment) cube and the boundaries."""
    out: list[_Cube] = []
    latest = _moment(int(cutoffs.max()))
    for source in plan.measures:
        lf: pl.LazyFrame | None
        if isinstance(source, DerivedSource):
            lf = source.rows(hist, latest)
        else:
            # logged pauses (channel no_contact) are decisions, not contacts: they never count as contact pressure
            lf = hist.sent_contacts if source == "contacts" else getattr(hist, source)
        rows = None
        if lf is not None:
            rows = lf.filter(pl.col("timestamp") < latest)  # THE exclusive cutoff
            if customers is not None:
                rows = rows.join(customers.lazy(), on="customer_id", how="semi")
        for step in plan.passes(source, rows, streaming=streaming):
            starts = [cutoffs - w * MICROS_PER_DAY for w in sorted(step.windows)]
            boundaries = np.unique(np.concatenate([cutoffs, *starts]))
            if rows is None:  # e.g. no contacts table: every measure is "nothing happened"
                schema = {"customer_id": pl.String, "__seg": pl.Int64}
                schema.update({plan.col(a): pl.Int64 for a in step.measures.values()})
                out.append((step, pl.DataFrame(schema=schema), boundaries))
                continue
            out.append((step, _cube(rows, step, plan, boundaries, streaming=streaming), boundaries))
    return out


def _coded(cube: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """``cube`` with ``__code`` (the customer's row in ``codes``) instead of ``customer_id``.

    Customers not in ``codes`` are not rows (e.g. contacts of someone without events at scoring time).
    """
    return cube.join(codes, on="customer_id", how="inner").drop("customer_id")


def _aggregate_features(
    keys: pl.DataFrame,
    plan: _Plan,
    cubes: list[_Cube],
    features: Sequence[Feature],
    codes: pl.DataFrame,
    cutoffs: np.ndarray,
) -> pl.DataFrame:
    """``__row`` and every aggregate feature for ``keys``.

    ``keys`` and the cubes carry ``__code``, the customer's row in ``codes`` (``customer_id``,
    ``__code``; see :func:`_coded`). Cubes are consumed one at a time: a cube is freed as soon as its features are out.
    """
    code = keys["__code"].to_numpy()
    blocks = Blocks(np.searchsorted(cutoffs, keys["__cutoff_us"].to_numpy()), len(cutoffs))  # cutoffs: sorted
    columns: dict[str, np.ndarray] = {}
    cubes.reverse()
    while cubes:
        step, cube, boundaries = cubes.pop()
        mine = [(f.name, f.spec) for f in features if isinstance(f.spec, Aggregate)]
        mine = [(name, agg) for name, agg in mine if agg.measure_key in step.measures]
        columns.update(
            feature_columns(
                cube,
                step,
                plan,
                boundaries,
                mine,
                code=code,
                blocks=blocks,
                cutoffs=cutoffs,
                n_codes=codes.height,
                sweep_segments=_SWEEP_SEGMENTS,
            )
        )
        del cube
    series = [
        pl.Series(f.name, columns.pop(f.name), nan_to_null=True) for f in features if isinstance(f.spec, Aggregate)
    ]
    return pl.DataFrame([keys["__row"], *series])


def _static_features(hist: Histories, keys: pl.DataFrame, features: Sequence[Feature]) -> pl.DataFrame:
    """Consent flags as of each cutoff and customer attributes, for ``keys`` in order."""
    out = keys.select("__row")
    consents = [f for f in features if isinstance(f.spec, Consent)]
    if consents:
        from omni_ml.identity import consent_state

        channels = [f.spec.channel for f in consents if isinstance(f.spec, Consent)]
        state = consent_state(
            hist, keys.select("customer_id", pl.col("cutoff")), channels=list(dict.fromkeys(channels))
        )
        out = out.with_columns(
            state.select(
                pl.col(f"consent_{f.spec.channel}").cast(pl.Int8).alias(f.name)
                for f in consents
                if isinstance(f.spec, Consent)
            )
        )
    attrs = [f for f in features if isinstance(f.spec, Attribute)]
    if attrs and hist.customers is not None:
        cols = list(dict.fromkeys(f.spec.column for f in attrs if isinstance(f.spec, Attribute)))
        table = hist.customers.select("customer_id", *cols).collect()
        joined = keys.select("__row", "customer_id", "__cutoff_us").join(
            table, on="customer_id", how="left", maintain_order="left"
        )
        exprs = [_attribute_expr(f.spec, f.name) for f in attrs if isinstance(f.spec, Attribute)]
        out = out.with_columns(joined.select(exprs))
    elif attrs:
        out = out.with_columns(pl.lit(None, dtype=f.output_dtype).alias(f.name) for f in attrs)
    return out


def _attribute_expr(attr: Attribute, name: str) -> pl.Expr:
    c = pl.col(attr.column)
    if attr.kind == "numeric":
        return _as_number(c).alias(name)
    if attr.kind == "boolean":
        return _as_bool(c).cast(pl.Int8).alias(name)
    if attr.kind == "date":
        moment = _as_timestamp(c).dt.epoch("us")
        days = true_div((pl.col("__cutoff_us") - moment).cast(pl.Float64), MICROS_PER_DAY)
        return pl.when(moment < pl.col("__cutoff_us")).then(days).alias(name)
    levels = pl.Series(attr.levels, dtype=pl.String)
    text = c.cast(pl.String)
    code = text.replace_strict(levels, pl.Series(range(len(levels)), dtype=pl.Int32), default=len(levels))
    return pl.when(text.is_not_null()).then(code).cast(pl.Int32).alias(name)


def unreadable_attributes(customers: pl.DataFrame, features: Sequence[Feature]) -> list[tuple[str, str, int, str]]:
    """Attribute columns with values their feature cannot read: ``(column, kind, rows, example)`` each.

    A non-null value of a ``numeric``, ``boolean`` or ``date`` attribute that the encoding turns into null
    (``'not a date'`` for a date) would silently become "unknown"; ``code`` attributes read every value.
    """
    problems: list[tuple[str, str, int, str]] = []
    seen: set[str] = set()
    for f in features:
        attr = f.spec
        if not isinstance(attr, Attribute) or attr.kind == "code" or attr.column in seen:
            continue
        seen.add(attr.column)
        if attr.column not in customers.columns:
            continue
        c = pl.col(attr.column)
        encoded = {"numeric": _as_number, "boolean": _as_bool, "date": _as_timestamp}[attr.kind](c)
        blank = c.cast(pl.String).str.strip_chars().str.len_chars() == 0
        bad = customers.filter(c.is_not_null() & ~blank.fill_null(False) & encoded.is_null())
        if bad.height:
            problems.append((attr.column, attr.kind, bad.height, str(bad[attr.column][0])))
    return problems


def _as_number(c: pl.Expr) -> pl.Expr:
    return c.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def _as_bool(c: pl.Expr) -> pl.Expr:
    low = c.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(low.is_in(["true", "t", "yes", "y", "1"]))
        .then(True)
        .when(low.is_in(["false", "f", "no", "n", "0"]))
        .then(False)
    )


def _as_timestamp(c: pl.Expr) -> pl.Expr:
    text = c.cast(pl.String).str.strip_chars().str.replace(r"[Zz]$", "+00:00")
    return pl.coalesce(
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"),
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us", time_zone="UTC"),
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us", time_zone="UTC"),
        utc_column(text.str.to_date("%Y-%m-%d", strict=False), pl.Date),
    )


def _finish(
    keys: pl.DataFrame, aggregates: pl.DataFrame, static: pl.DataFrame, features: Sequence[Feature]
) -> pl.DataFrame:
    frame = pl.concat(
        [keys.select("__row", "customer_id", "cutoff"), aggregates.drop("__row"), static.drop("__row")],
        how="horizontal",
    )
    # Polars picks other float kernels for a 1-row frame (column / literal is computed via the
    # reciprocal on longer frames), so derived features are never evaluated on a single row:
    # the same (customer, cutoff) then gets the same bits whichever path computed it.
    single = frame.height == 1
    if single:
        frame = pl.concat([frame, frame])
    for f in features:  # derived features, in definition order (each may use earlier ones)
        if isinstance(f.spec, pl.Expr):
            frame = frame.with_columns(f.spec.cast(f.output_dtype).alias(f.name))
    return frame.head(1) if single else frame


def compute_for_keys(
    hist: Histories, keys: pl.DataFrame, features: Sequence[Feature], *, streaming: bool = True
) -> pl.DataFrame:
    """Features for each ``(customer_id, cutoff)`` row of ``keys`` (validated, unique), in row order.

    Returns ``customer_id, cutoff`` and one column per feature (hidden ``__`` ones included).
    """
    customers = keys.select(pl.col("customer_id").unique().sort())
    codes = customers.with_row_index("__code").with_columns(pl.col("__code").cast(pl.Int64))
    keys = _with_row(keys).join(codes, on="customer_id", how="left", maintain_order="left")
    plan = _Plan(features, need_history=False)
    cutoffs = np.unique(keys["__cutoff_us"].to_numpy())
    cubes = [
        (step, _coded(cube, codes), b)
        for step, cube, b in _cubes(hist, plan, cutoffs, customers=customers, streaming=streaming)
    ]
    aggregates = _aggregate_features(keys, plan, cubes, features, codes, cutoffs)
    return _finish(keys, aggregates, _static_features(hist, keys, features), features)


def compute_at(
    hist: Histories, cutoffs: Sequence[dt.datetime], features: Sequence[Feature], *, streaming: bool = True
) -> pl.DataFrame:
    """Features for every customer at each cutoff, sorted by cutoff then customer_id.

    "Every customer" at ``c`` = the customers table plus anyone with an event before ``c``.
    """
    plan = _Plan(features, need_history=True)
    moments = pl.Series("cutoff", sorted(set(cutoffs)), dtype=TIMESTAMP)
    cutoff_us = _utc_us(moments)
    cubes = _cubes(hist, plan, cutoff_us, customers=None, streaming=streaming)
    history, boundaries = next((cube, b) for step, cube, b in cubes if _ANY_EVENT.measure_key in step.measures)
    candidates = history["customer_id"].unique()
    listed = pl.Series("customer_id", [], dtype=pl.String)
    if hist.customers is not None:
        listed = hist.customers.select("customer_id").collect()["customer_id"]
        candidates = pl.concat([candidates, listed]).unique()
    codes = candidates.sort().to_frame().with_row_index("__code").with_columns(pl.col("__code").cast(pl.Int64))
    # the rows: per cutoff, the listed customers and those with an event before it (their first
    # segment with an event is at most the cutoff's), so no feature is computed for a row dropped later
    del history
    cubes = [(step, _coded(cube, codes), b) for step, cube, b in cubes]
    seen = next(cube for step, cube, _ in cubes if _ANY_EVENT.measure_key in step.measures)
    first = np.full(codes.height, np.iinfo(np.int64).max)
    np.minimum.at(first, seen["__code"].to_numpy(), seen["__seg"].to_numpy())
    is_listed = codes["customer_id"].is_in(listed.implode()).fill_null(False).to_numpy()
    rows = [np.flatnonzero(is_listed | (first <= s)) for s in np.searchsorted(boundaries, cutoff_us)]
    code = np.concatenate(rows)
    keys = _with_row(
        pl.DataFrame(
            {
                "customer_id": codes["customer_id"].gather(code),
                "cutoff": moments.gather(np.repeat(np.arange(len(rows)), [len(r) for r in rows])),
                "__code": code,
            }
        )
    )
    aggregates = _aggregate_features(keys, plan, cubes, features, codes, cutoff_us)
    return _finish(keys, aggregates, _static_features(hist, keys, features), features)


def _with_row(keys: pl.DataFrame) -> pl.DataFrame:
    return keys.with_row_index("__row").with_columns(pl.col("cutoff").dt.epoch("us").alias("__cutoff_us"))
