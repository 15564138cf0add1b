"""A stable 64-bit hash of customer ids: chunk buckets, file order and the control group.

Why not ``polars.Expr.hash``: polars documents that its hash may change between versions, and a
customer's control-group membership for a campaign seed must never change with a library upgrade
(measurement compares treated and control customers months later). This hash is defined here, in
terms of bytes, and reproducible in any language:

``stable_hash(id, seed) = splitmix64_mix(fnv1a_64(utf8(id), basis = 0xCBF29CE484222325 xor splitmix64_mix(seed)))``

FNV-1a walks the UTF-8 bytes; the splitmix64 finaliser (Steele, Lea & Flood 2014) spreads short,
similar ids ("C0000001", "C0000002") over all 64 bits. :func:`reference_hash` is the plain-Python
definition that the tests compare the compiled version against.

Uses of the hash
----------------
* **Bucket** of ``N`` chunks: ``floor(h * N / 2**64)`` with ``h = stable_hash(id, BUCKET_SEED)``.
  Buckets are *ranges* of the hash, so chunk ``i`` holds exactly the ids whose hash lies in the
  ``i``-th of ``N`` equal ranges; concatenating chunks in order, each sorted by ``(h, id)``, gives a
  file sorted by ``(h, id)`` whatever ``N`` is.
* **Control group**: ``u = (stable_hash(id, campaign_seed) >> 11) / 2**53`` is uniform on
  ``[0, 1)``; a customer is held out when ``u < control_fraction``. Raising the fraction only adds
  customers to the control group; a new campaign seed draws a new, independent group.
* **Exploration** (``omni-ml score --explore F``): the same hash with the campaign seed xor
  :data:`EXPLORE_SALT` gives a second uniform, independent of the control group's; a customer
  outside the control group explores when it is ``< F``. A third, with :data:`DRAW_SALT`, draws the
  explored action: option ``floor(u * K)`` of the customer's ``K`` allowed options.
"""

from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pyarrow as pa

__all__ = [
    "BUCKET_SEED",
    "DRAW_SALT",
    "EXPLORE_SALT",
    "bucket_expr",
    "bucket_of",
    "reference_hash",
    "stable_hash",
    "uniform_from_hash",
]

BUCKET_SEED = 0x5EED_0B0C
EXPLORE_SALT = 0xE5_91_0E_E5_91_0E
"""Xor-ed into the campaign seed for the exploration group (independent of the control group)."""
DRAW_SALT = 0xD3_A3_D3_A3_D3_A3
"""Xor-ed into the campaign seed for the explored action."""
_FNV_BASIS = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


@numba.njit(nogil=True, cache=True)
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(nogil=True, cache=True)
def _fnv1a_mixed(
    offsets: np.ndarray, data: np.ndarray, start: int, seed: np.uint64, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    prime = np.uint64(_FNV_PRIME)
    basis = np.uint64(_FNV_BASIS) ^ _mix(seed)
    for i in range(out.shape[0]):
        h = basis
        for j in range(offsets[start + i], offsets[start + i + 1]):
            h = (h ^ np.uint64(data[j])) * prime
        out[i] = _mix(h)


def _py_mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def reference_hash(value: str, seed: int = 0) -> int:
    """Plain-Python definition of :func:`stable_hash` for one id (slow; the specification).

    Examples
    --------
    >>> reference_hash("C0001", seed=7) == stable_hash(pl.Series(["C0001"]), seed=7)[0]
    True
    """
    h = _FNV_BASIS ^ _py_mix(seed & _MASK)
    for byte in value.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return _py_mix(h)


def stable_hash(ids: pl.Series, seed: int = 0) -> pl.Series:
    """Hash every id (String) to a UInt64 that never changes between library versions.

    A null id hashes like the empty string (resolved histories have no null customer ids).

    Examples
    --------
    >>> h = stable_hash(pl.Series("customer_id", ["a", "b", "a"]), seed=1)
    >>> h.dtype, h[0] == h[2], h[0] == h[1]
    (UInt64, True, False)
    """
    arr = ids.cast(pl.String).to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):  # pragma: no cover - to_arrow of a Series is one chunk
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    out = np.empty(len(arr), dtype=np.uint64)
    if len(arr):
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        _fnv1a_mixed(offsets, data, arr.offset, np.uint64(seed & _MASK), out)
    return pl.Series(ids.name, out, dtype=pl.UInt64)


def uniform_from_hash(hashes: pl.Series) -> pl.Series:
    """Map UInt64 hashes to floats uniform on ``[0, 1)`` (the top 53 bits)."""
    top = hashes.to_numpy() >> np.uint64(11)
    return pl.Series(hashes.name, top.astype(np.float64) * 2.0**-53, dtype=pl.Float64)


def bucket_of(hashes: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket (0..n_buckets-1) of each UInt64 hash: ``floor(top * n_buckets / 2**32)`` of its top 32 bits ``top``.

    The buckets are ``n_buckets`` ranges of the top 32 bits that differ in size by at most one value (so by
    at most 2**32 hashes); :func:`bucket_expr` computes the same buckets in polars.

    Examples
    --------
    >>> bucket_of(np.array([0, 2**63, 2**64 - 1], dtype=np.uint64), 4).tolist()
    [0, 2, 3]
    """
    # Top 32 bits times N < 2**32 fits in 64 bits; this is not floor(h * N / 2**64) (the low bits can carry).
    return ((hashes >> np.uint64(32)) * np.uint64(n_buckets)) >> np.uint64(32)


def _hash_column(ids: pl.Series) -> pl.Series:
    return stable_hash(ids, BUCKET_SEED)


def bucket_expr(column: str, n_buckets: int) -> pl.Expr:
    """Polars expression: the bucket (UInt64) of each row's ``column`` among ``n_buckets``.

    Usable in a lazy ``filter`` over a scan, so that a chunk reads only its customers' rows.
    """
    h = pl.col(column).map_batches(_hash_column, return_dtype=pl.UInt64, is_elementwise=True)
    return ((h // (1 << 32)) * n_buckets) // (1 << 32)
