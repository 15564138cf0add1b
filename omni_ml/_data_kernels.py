"""Numba kernels behind :mod:`omni_ml.data`: distinct counts, repeated keys and small group counts.

Validation of a histories table needs three set operations over every row: "which timestamps
repeat" (candidates for exact duplicate rows), "how many distinct customer ids" and "how many rows
per channel / event type". polars answers them with general hash tables; these kernels answer them
over 64-bit keys (timestamps, or polars' 64-bit hashes of strings) with a radix-partitioned
open-addressing table that stays in cache, which is several times cheaper on large tables
(``benchmarks/bench_load.py``). Imported lazily: numba compiles on first use (cached on disk).
"""

from __future__ import annotations

from typing import Literal

import numba
import numpy as np

__all__ = ["distinct", "small_groups"]

_ROWS_PER_PARTITION = 1 << 14  # ~16k keys -> a 32k-slot table of 16-byte entries fits in L2
_NO_MASK, _REPEATED, _FIRST = 0, 1, 2
_MODES = {"none": _NO_MASK, "repeated": _REPEATED, "first": _FIRST}


@numba.njit(cache=True, nogil=True)
def _fmix(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """MurmurHash3's 64-bit finaliser: spreads nearby keys (timestamps) over all bits.

    It is a bijection of 64-bit integers, so two keys are equal exactly when their mixes are:
    the tables below store and compare mixes only.
    """
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


@numba.njit(cache=True, nogil=True)
def _distinct(keys: np.ndarray, mode: int) -> tuple[int, np.ndarray]:  # pragma: no cover
    n = keys.size
    want_mask = mode != _NO_MASK
    bits = 0
    while (n >> bits) > _ROWS_PER_PARTITION and bits < 16:
        bits += 1
    parts = 1 << bits
    shift = np.uint64(64 - bits) if bits > 0 else np.uint64(0)
    # 1. mix and count per partition (top bits of the mix)
    offsets = np.zeros(parts + 1, np.int64)
    for i in range(n):
        p = (_fmix(keys[i]) >> shift) if bits > 0 else np.uint64(0)
        offsets[p + 1] += 1
    largest = 0
    for q in range(parts):
        largest = max(largest, offsets[q + 1])
        offsets[q + 1] += offsets[q]
    # 2. scatter (mix, row) into contiguous partitions: phase 3 then reads sequentially
    part_hash = np.empty(n, np.uint64)
    part_row = np.empty(n if want_mask else 0, np.int64)
    fill = offsets[:parts].copy()
    for i in range(n):
        h = _fmix(keys[i])
        p = (h >> shift) if bits > 0 else np.uint64(0)
        j = fill[p]
        part_hash[j] = h
        if want_mask:
            part_row[j] = i
        fill[p] = j + 1
    # 3. one small open-addressing table per partition, reused
    cap = 16
    while cap < 2 * largest:
        cap *= 2
    slot_mask = np.uint64(cap - 1)
    table_key = np.empty(cap, np.uint64)
    table_row = np.full(cap, -1, np.int64)
    marked = np.zeros(n if want_mask else 0, np.bool_)
    distinct = 0
    for q in range(parts):
        for j in range(offsets[q], offsets[q + 1]):
            k = part_hash[j]
            s = k & slot_mask
            while True:
                r = table_row[s]
                if r < 0:
                    table_row[s] = part_row[j] if want_mask else 0
                    table_key[s] = k
                    distinct += 1
                    if mode == _FIRST:
                        marked[part_row[j]] = True
                    break
                if table_key[s] == k:
                    if mode == _REPEATED:
                        marked[part_row[j]] = True
                        marked[r] = True
                    break
                s = (s + np.uint64(1)) & slot_mask
        # Empty the table for the next partition: every slot written lies in a run that starts at
        # the home slot of one of this partition's keys, so clearing from each home slot suffices.
        for j in range(offsets[q], offsets[q + 1]):
            s = part_hash[j] & slot_mask
            while table_row[s] >= 0:
                table_row[s] = -1
                s = (s + np.uint64(1)) & slot_mask
    return distinct, marked


@numba.njit(cache=True, nogil=True)
def _small_groups(keys: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    cap = 16
    while cap < 4 * limit:
        cap *= 2
    slot_mask = np.uint64(cap - 1)
    table_key = np.empty(cap, np.uint64)
    table_group = np.full(cap, -1, np.int64)
    first = np.empty(limit, np.int64)
    counts = np.zeros(limit, np.int64)
    groups = 0
    for i in range(keys.size):
        k = keys[i]
        s = _fmix(k) & slot_mask
        while True:
            g = table_group[s]
            if g < 0:
                if groups == limit:
                    return first[:0], counts[:0]  # too many groups: the caller falls back
                table_group[s] = groups
                table_key[s] = k
                first[groups] = i
                counts[groups] = 1
                groups += 1
                break
            if table_key[s] == k:
                counts[g] += 1
                break
            s = (s + np.uint64(1)) & slot_mask
    return first[:groups], counts[:groups]


def distinct(keys: np.ndarray, *, mask: Literal["none", "repeated", "first"] = "repeated") -> tuple[int, np.ndarray]:
    """Number of distinct values in ``keys`` (64-bit) and a row mask.

    ``mask="repeated"`` marks the rows whose value occurs more than once, ``"first"`` the first
    row of each distinct value, ``"none"`` returns an empty mask (cheaper).

    Examples
    --------
    >>> keys = np.array([5, 7, 5, 9], dtype=np.int64)
    >>> n, repeated = distinct(keys)
    >>> n, repeated.tolist()
    (3, [True, False, True, False])
    >>> distinct(keys, mask="first")[1].tolist()
    [True, True, False, True]
    """
    if keys.size == 0:
        return 0, np.zeros(0, np.bool_)
    return _distinct(np.ascontiguousarray(keys).view(np.uint64), _MODES[mask])


def small_groups(keys: np.ndarray, *, limit: int = 4096) -> tuple[np.ndarray, np.ndarray] | None:
    """First row and row count of each distinct 64-bit key in order of first appearance; ``None`` over ``limit``.

    Examples
    --------
    >>> first, counts = small_groups(np.array([3, 3, 8, 3], dtype=np.uint64))
    >>> first.tolist(), counts.tolist()
    ([0, 2], [3, 1])
    """
    first, counts = _small_groups(np.ascontiguousarray(keys).view(np.uint64), limit)
    if keys.size and first.size == 0:
        return None
    return first, counts
