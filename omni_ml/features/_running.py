"""Running values of a cube, read at cutoffs and window starts, turned into aggregate features.

A cube (``_engine._cube``) holds one source's measures per ``(customer, segment)``, where the
sorted boundaries (every cutoff and every window start) cut the time line into segments. The
value of a measure "before boundary ``b``" is its running value over the customer's segments
``<= index(b)``; a window value is the difference of the running values at the cutoff and at the
window start. Two ways to read them, giving identical numbers (only speed differs):

* **sweep** (up to ``_engine._SWEEP_SEGMENTS`` segments): walk the segments in time order, keeping one
  dense running array per measure indexed by customer code (adding a segment's counts and sums,
  taking the latest / earliest timestamp). At a window start the key rows of that cutoff copy
  what they need; at the cutoff itself their features are computed at once. No sort, no search,
  and per cutoff only vectors of customers: the many-cutoffs path costs little more than one
  cutoff beyond writing its (larger) output.
* **search** (many segments, e.g. a distinct cutoff per contact): sort the cube by
  ``(code, segment)``, accumulate per customer, and binary-search each key's last segment
  ``<= index(b)``.

Nulls: a customer without a matching row has count and sum 0 and a null "days since". Sums are
integers (``MONEY_SCALE`` units) until the final exact division, so values do not depend on how
the time line was cut.
"""

from __future__ import annotations

import mmap
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from omni_ml.features._spec import Aggregate

if TYPE_CHECKING:  # pragma: no cover
    from omni_ml.features._engine import _Pass, _Plan

__all__ = ["MICROS_PER_DAY", "MONEY_SCALE", "Blocks", "feature_columns", "money_units"]

MICROS_PER_DAY = 86_400_000_000
MONEY_SCALE = 10_000  # sums use integer 1/10,000 units: exact, associative, order-independent
_NONE_LAST = np.iinfo(np.int64).min  # "no row yet" for a latest timestamp (below any timestamp)
_NONE_FIRST = np.iinfo(np.int64).max  # "no row yet" for an earliest timestamp (above any timestamp)


def money_units(amount: pl.Expr) -> pl.Expr:
    """``amount`` in whole 1/10,000 units (Int64, nulls stay null): sums of these are exact in any order.

    A float sum's last bits depend on the order of its terms, which a parallel group-by does not fix; the
    sum of integer units, divided once by :data:`MONEY_SCALE`, gives the same number for any order.
    """
    return (amount.cast(pl.Float64) * MONEY_SCALE).round().cast(pl.Int64)


def _empty(kind: str) -> int:
    return {"last": _NONE_LAST, "first": _NONE_FIRST}.get(kind, 0)


class Blocks:
    """The key rows of each cutoff: a slice when the keys are sorted by cutoff, else an index array."""

    def __init__(self, cutoff_index: np.ndarray, n_cutoffs: int) -> None:
        self.cutoff_index = cutoff_index
        self.n_rows = len(cutoff_index)
        self.sorted = bool(np.all(cutoff_index[1:] >= cutoff_index[:-1]))
        self.order = None if self.sorted else np.argsort(cutoff_index, kind="stable")
        ordered = cutoff_index if self.order is None else cutoff_index[self.order]
        self.end = np.searchsorted(ordered, np.arange(n_cutoffs), side="right")

    def rows(self, k: int) -> slice | np.ndarray:
        start = int(self.end[k - 1]) if k else 0
        part = slice(start, int(self.end[k]))
        return part if self.order is None else self.order[part]


def _output(n: int, dtype: type[np.generic]) -> np.ndarray:
    """An uninitialised output column in plain anonymous memory (polars takes it without a copy).

    Not ``np.empty``: numpy asks for transparent huge pages on large arrays, and on a busy machine
    the kernel then compacts memory on first touch, which makes filling large feature columns much slower
    (measured in ``benchmarks/RESULTS.md``, section "Features").
    """
    size = n * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype) if size else np.empty(0, dtype=dtype)


def _fill(agg: Aggregate, now: np.ndarray, cut: np.ndarray | int, dest: np.ndarray) -> None:
    """Write a feature into ``dest`` from running values at the cutoff (``now``).

    For a window, ``dest`` holds the running values at the window start on entry: whole numbers
    (int32 counts, or float64 sums below 2**53 units), so the difference is exact. Divisions are
    numpy's exact IEEE divisions whatever the length (polars may divide by a scalar through its
    reciprocal on longer frames, see ``_engine.true_div``).
    """
    if agg.kind in ("last", "first"):
        np.subtract(cut, now, out=dest, casting="unsafe")  # wraps where missing: replaced below
        np.divide(dest, float(MICROS_PER_DAY), out=dest)
        dest[now == _empty(agg.kind)] = np.nan  # no such row before the cutoff: null
        return
    if agg.window is None:
        dest[...] = now
    else:
        np.subtract(now, dest, out=dest, casting="unsafe")
    if agg.kind == "sum":
        np.divide(dest, float(MONEY_SCALE), out=dest)


def _dtype(agg: Aggregate) -> type[np.generic]:
    return np.int32 if agg.kind == "count" else np.float64


def _numpy(cube: pl.DataFrame, step: _Pass, plan: _Plan) -> dict[str, np.ndarray]:
    return {
        plan.col(a): cube[plan.col(a)].fill_null(_empty(a.kind)).cast(pl.Int64).to_numpy()
        for a in step.measures.values()
    }


def feature_columns(
    cube: pl.DataFrame,
    step: _Pass,
    plan: _Plan,
    boundaries: np.ndarray,
    mine: Sequence[tuple[str, Aggregate]],
    *,
    code: np.ndarray,
    blocks: Blocks,
    cutoffs: np.ndarray,
    n_codes: int,
    sweep_segments: int,
) -> dict[str, np.ndarray]:
    """The features ``mine`` (all measured by ``step``) for every key row, as numpy arrays.

    ``cube`` has ``__code`` (the customer's code, ``< n_codes``), ``__seg`` and one column per
    measure; ``code`` and ``blocks`` describe the key rows; ``cutoffs`` are sorted and distinct.
    Days-since features are NaN where null. Up to ``sweep_segments`` segments the running values
    are swept, beyond that binary-searched.
    """
    if len(boundaries) + 1 <= sweep_segments:
        return _sweep(cube, step, plan, boundaries, mine, code, blocks, cutoffs, n_codes)
    return _search(cube, step, plan, boundaries, mine, code, blocks, cutoffs)


def _segments_at(boundaries: np.ndarray, cutoffs: np.ndarray, offset: int) -> np.ndarray:
    """Per cutoff, the last segment before ``cutoff - offset days`` (a boundary, so exact)."""
    return np.searchsorted(boundaries, cutoffs - offset * MICROS_PER_DAY, side="left")


def _sweep(
    cube: pl.DataFrame,
    step: _Pass,
    plan: _Plan,
    boundaries: np.ndarray,
    mine: Sequence[tuple[str, Aggregate]],
    code: np.ndarray,
    blocks: Blocks,
    cutoffs: np.ndarray,
    n_codes: int,
) -> dict[str, np.ndarray]:
    seg = cube["__seg"].to_numpy().astype(np.int32)
    order = np.argsort(seg, kind="stable")
    ends = np.searchsorted(seg[order], np.arange(len(boundaries) + 1), side="right")
    row_code = cube["__code"].to_numpy()[order]
    updates = {col: values[order] for col, values in _numpy(cube, step, plan).items()}
    kinds = {plan.col(a): a.kind for a in step.measures.values()}
    running = {col: np.full(n_codes, _empty(kind), dtype=np.int64) for col, kind in kinds.items()}
    events: dict[int, list[tuple[int, int]]] = defaultdict(list)  # segment -> (window or 0, cutoff index)
    for w in (*sorted(step.windows), 0):  # a start is always in an earlier segment than its cutoff
        for k, s in enumerate(_segments_at(boundaries, cutoffs, w)):
            events[int(s)].append((w, k))
    out = {name: _output(blocks.n_rows, _dtype(agg)) for name, agg in mine}
    start = 0
    for s in range(max(events) + 1):
        rows = slice(start, int(ends[s]))
        start = int(ends[s])
        codes = row_code[rows]
        for col, kind in kinds.items():
            acc, new = running[col], updates[col][rows]
            if kind in ("count", "sum"):
                acc[codes] += new  # a customer has at most one row per segment
            elif kind == "last":
                acc[codes] = np.maximum(acc[codes], new)
            else:
                acc[codes] = np.minimum(acc[codes], new)
        for w, k in events.get(s, ()):
            keys = blocks.rows(k)
            at = code[keys]
            if w:  # a window start: the window's features hold the running values until the cutoff
                for name, agg in mine:
                    if agg.window == w:  # sums < 2**53 units: exact in the float64 column too
                        out[name][keys] = running[plan.col(agg)][at]
                continue
            now = {col: running[col][at] for col in running}
            for name, agg in mine:
                dest = out[name][keys]  # a view when the keys are sorted by cutoff, else a copy
                _fill(agg, now[plan.col(agg)], int(cutoffs[k]), dest)
                if not isinstance(keys, slice):
                    out[name][keys] = dest
    return out


def _search(
    cube: pl.DataFrame,
    step: _Pass,
    plan: _Plan,
    boundaries: np.ndarray,
    mine: Sequence[tuple[str, Aggregate]],
    code: np.ndarray,
    blocks: Blocks,
    cutoffs: np.ndarray,
) -> dict[str, np.ndarray]:
    stride = len(boundaries) + 1
    cutoff_index = blocks.cutoff_index
    cut = cutoffs[cutoff_index]
    row_code, seg = cube["__code"].to_numpy(), cube["__seg"].to_numpy()
    order = np.lexsort((seg, row_code))
    row_code, seg = row_code[order], seg[order]
    n = len(order)
    index = np.arange(n)
    first = np.ones(n, dtype=bool)
    first[1:] = row_code[1:] != row_code[:-1]  # a customer's first segment
    group_start = np.maximum.accumulate(np.where(first, index, 0)) if n else index
    running: dict[str, np.ndarray] = {}
    kinds = {plan.col(a): a.kind for a in step.measures.values()}
    for col, values in _numpy(cube, step, plan).items():
        v = values[order]
        if kinds[col] in ("count", "sum"):
            total = np.cumsum(v)
            running[col] = total - (total - v)[group_start]  # restarted per customer
        elif kinds[col] == "last":  # segments are in time order: the latest so far is the last row seen
            seen = np.maximum.accumulate(np.where((v != _NONE_LAST) | first, index, 0)) if n else index
            running[col] = v[seen]
        else:  # the earliest so far is the customer's first row with a value, once reached
            starts = np.flatnonzero(first)
            earliest = np.minimum.reduceat(np.where(v != _NONE_FIRST, index, n), starts) if n else index
            at = np.repeat(earliest, np.diff(np.append(starts, n)))
            running[col] = np.where(at <= index, v[np.clip(at, 0, n - 1)], _NONE_FIRST)
    key = row_code * stride + seg
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # offset -> (row of the last segment <= it, found)

    def value(col: str, offset: int) -> np.ndarray:
        if not n:
            return np.full(blocks.n_rows, _empty(kinds[col]), dtype=np.int64)
        if offset not in found:
            segment = _segments_at(boundaries, cutoffs, offset)[cutoff_index]
            pos = np.clip(np.searchsorted(key, code * stride + segment, side="right") - 1, 0, None)
            found[offset] = (pos, (row_code[pos] == code) & (seg[pos] <= segment))
        pos, hit = found[offset]
        return np.where(hit, running[col][pos], _empty(kinds[col]))

    now = {plan.col(agg): value(plan.col(agg), 0) for _, agg in mine}
    out = {}
    for name, agg in mine:
        out[name] = _output(blocks.n_rows, _dtype(agg))
        if agg.window is not None:
            out[name][...] = value(plan.col(agg), agg.window)
        _fill(agg, now[plan.col(agg)], cut, out[name])
    return out
