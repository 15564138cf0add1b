"""Hour and weekday profiles of engagement: local time zones, the small mixture models and their grid fits."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import polars as pl

from omni_ml._time import before
from omni_ml.data import Histories
from omni_ml.exceptions import SchemaError

HOURS, WEEKDAYS = 24, 7
ALL = "__all__"  # the profile of every engagement, for rows without a channel
_HOUR_GRID = np.arange(4 * HOURS) / 4.0  # candidate best hours, every quarter of an hour
_HOUR_SDS = np.array([0.75, 1.0, 1.25, 1.5, 2.0, 2.5])
_HOUR_SHARES = np.linspace(0.1, 0.9, 9)
_HOUR_CHOICE_KAPPA = 3.0  # the send hour maximises the posterior mean of exp(k cos(2 pi (s - h) / 24))
_WEEKDAY_KAPPAS = np.linspace(0.0, 3.0, 13)
_WEEKDAY_SHARES = np.linspace(0.1, 1.0, 10)


def _zone_of(hist: Histories) -> pl.LazyFrame | None:
    """``customer_id, time_zone`` when the customers table has a ``time_zone`` column."""
    if hist.customers is None or "time_zone" not in hist.customers.collect_schema().names():
        return None
    return hist.customers.select("customer_id", pl.col("time_zone").cast(pl.String))


def _check_zones(zones: pl.DataFrame) -> None:
    bad = [z for z in zones["time_zone"].drop_nulls().unique().sort().to_list() if not _known_zone(z)]
    if bad:
        rows = zones.filter(pl.col("time_zone").is_in(bad))
        msg = (
            f"customers.time_zone: {rows.height:,} of {zones.height:,} rows name an unknown time zone "
            f"(e.g. {bad[0]!r} for customer {rows['customer_id'][0]!r}). Hint: use IANA names such as "
            "'Europe/Copenhagen' (null means UTC)."
        )
        raise SchemaError(msg)


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _localise(frame: pl.DataFrame, zones: pl.DataFrame | None, column: str = "timestamp") -> pl.DataFrame:
    """``frame`` with ``local`` (naive local wall time of ``column``) and ``time_zone`` (UTC when unknown)."""
    if zones is None:
        return frame.with_columns(
            pl.col(column).dt.replace_time_zone(None).alias("local"), pl.lit("UTC").alias("time_zone")
        )
    frame = frame.join(zones, on="customer_id", how="left", maintain_order="left")
    frame = frame.with_columns(pl.col("time_zone").fill_null("UTC"))
    return _local_wall(frame, column)


def _local_wall(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``frame`` (with a ``time_zone`` column) with ``local``: the naive wall time of ``column`` there."""
    parts = []
    for name in sorted(frame["time_zone"].unique().to_list()):
        part = frame.filter(pl.col("time_zone") == name)
        parts.append(
            part.with_columns(pl.col(column).dt.convert_time_zone(name).dt.replace_time_zone(None).alias("local"))
        )
    return pl.concat(parts) if parts else frame.with_columns(pl.col(column).dt.replace_time_zone(None).alias("local"))


def _next_purchase(hist: Histories, t: dt.datetime, events: pl.DataFrame) -> pl.Series:
    """Per row of ``events`` the customer's first purchase after the row's timestamp and before ``t`` (or null)."""
    buys = (
        hist.events.filter(before(t) & (pl.col("event_type") == "purchase") & pl.col("customer_id").is_not_null())
        .filter(pl.col("customer_id").is_in(events["customer_id"].unique().implode()))
        .select("customer_id", pl.col("timestamp").alias("next_buy"))
        .unique()
        .sort("next_buy")
        .collect()
    )
    rows = events.select("customer_id", "timestamp").with_row_index("row").sort("timestamp")
    joined = rows.join_asof(
        buys,
        left_on="timestamp",
        right_on="next_buy",
        by="customer_id",
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,  # both sides are sorted by time, hence within every customer
    )
    return joined.sort("row")["next_buy"]


def _circular_smooth(p: np.ndarray, sd: float) -> np.ndarray:
    """Rows of ``p`` convolved with a wrapped Gaussian kernel of ``sd`` bins (rows keep their sums)."""
    k = p.shape[-1]
    if sd <= 0:
        return p
    offsets = np.arange(k)
    dist = np.minimum(offsets, k - offsets).astype(np.float64)
    kernel = np.exp(-0.5 * (dist / sd) ** 2)
    kernel /= kernel.sum()
    spectrum = np.fft.rfft(p, axis=-1) * np.fft.rfft(kernel)
    return np.fft.irfft(spectrum, n=k, axis=-1)


def _hour_rhythm(sd: float) -> np.ndarray:
    """``[hour bin, candidate best hour]``: P(an event in the bin | best hour), a wrapped normal of ``sd`` hours."""
    dist = (np.arange(HOURS)[:, None] + 0.5 - _HOUR_GRID[None, :] + 12.0) % 24.0 - 12.0
    dens = np.exp(-0.5 * (dist / sd) ** 2)
    return dens / dens.sum(axis=0, keepdims=True)


def _hour_loglik(counts: np.ndarray, profile: np.ndarray, sd: float, share: float) -> np.ndarray:
    """``(n, 96)`` log-likelihood of hour counts (rows sharing one ``profile``) given each candidate best hour.

    An event falls in hour bin ``b`` with probability ``share * N(b | h, sd) + (1 - share) * profile[b]``: a
    share follows the person's day around their best hour ``h``, the rest the segment's day.
    """
    return _rowwise(counts, np.log(share * _hour_rhythm(sd) + (1.0 - share) * profile[:, None]))


def _rowwise(rows: np.ndarray, table: np.ndarray, block: int = 1024) -> np.ndarray:
    """``rows @ table`` summed row by row in a fixed order: a row's result never depends on its batch (chunk)."""
    out = np.empty((rows.shape[0], table.shape[1]))
    for lo in range(0, rows.shape[0], block):
        out[lo : lo + block] = (rows[lo : lo + block, :, None] * table[None, :, :]).sum(axis=1)
    return out


def _fit_hour(counts: np.ndarray, profile: np.ndarray) -> tuple[float, float]:
    """``(sd, share)`` maximising the marginal likelihood of the rows (prior: ``profile``) on a grid."""
    used = counts.sum(axis=1) >= 2
    if used.sum() < 5:
        return 1.5, 0.7
    c = counts[used]
    log_prior = np.log(_at_grid(profile))
    best, best_score = (1.5, 0.7), -np.inf
    for sd in _HOUR_SDS:
        for share in _HOUR_SHARES:
            ll = _hour_loglik(c, profile, float(sd), float(share)) + log_prior[None, :]
            top = ll.max(axis=1, keepdims=True)
            score = float((top[:, 0] + np.log(np.exp(ll - top).sum(axis=1))).sum())
            if score > best_score + 1e-9:
                best, best_score = (float(sd), float(share)), score
    return best


def _smoothed(profile: np.ndarray, sd: float) -> np.ndarray:
    """Hour profile(s) smoothed circularly by ``sd`` hours, kept positive and summing to 1."""
    p = np.clip(_circular_smooth(np.atleast_2d(profile), sd), 1e-9, None)
    p = p / p.sum(axis=1, keepdims=True)
    return p if np.ndim(profile) == 2 else p[0]


def _at_grid(profile: np.ndarray) -> np.ndarray:
    """A 24-bin hour profile read at the candidate best hours (circular interpolation), summing to 1."""
    values = np.clip(np.interp(_HOUR_GRID, np.arange(HOURS) + 0.5, profile, period=HOURS), 1e-9, None)
    return values / values.sum()


def _weekday_table(kappa: float) -> np.ndarray:
    """``exp(kappa cos(2 pi j / 7))`` for ``j = 0..6`` days from the best weekday, scaled to mean 1."""
    raw = np.exp(kappa * np.cos(2 * np.pi * np.arange(WEEKDAYS) / WEEKDAYS))
    return raw / raw.mean()


_DIST = (np.arange(WEEKDAYS)[:, None] - np.arange(WEEKDAYS)[None, :]) % WEEKDAYS  # [weekday w, best weekday D]


def _weekday_loglik(counts: np.ndarray, profile: np.ndarray, kappa: float, share: float) -> np.ndarray:
    """``(n, 7)`` log-likelihood of each row's weekday counts given its best weekday ``D`` (columns).

    An event falls on weekday ``w`` with probability ``share * vm7(w - D; kappa) / 7 + (1 - share) *
    profile[w]``: a share follows the person's week, the rest the segment's (the retailer's) week.
    """
    rhythm = share * _weekday_table(kappa)[_DIST] / WEEKDAYS  # [w, D]
    mix = rhythm[None, :, :] + (1.0 - share) * profile[:, :, None]
    return (counts[:, :, None] * np.log(mix)).sum(axis=1)


def _fit_weekday(counts: np.ndarray, profile: np.ndarray) -> tuple[float, float]:
    """``(kappa, share)`` maximising the marginal likelihood of the rows (uniform prior over ``D``) on a grid."""
    used = counts.sum(axis=1) >= 2
    if used.sum() < 5:
        return 1.0, 0.5
    c, p = counts[used], np.clip(profile[used], 1e-6, None)
    p = p / p.sum(axis=1, keepdims=True)
    best, best_score = (0.0, 1.0), -np.inf
    for kappa in _WEEKDAY_KAPPAS:
        for share in _WEEKDAY_SHARES:
            ll = _weekday_loglik(c, p, float(kappa), float(share))
            top = ll.max(axis=1, keepdims=True)
            score = float((top[:, 0] + np.log(np.exp(ll - top).mean(axis=1))).sum())
            if score > best_score + 1e-9:
                best, best_score = (float(kappa), float(share)), score
    return best


def _entropy(p: np.ndarray) -> float:
    q = p[p > 0]
    return float(-(q * np.log2(q)).sum())
