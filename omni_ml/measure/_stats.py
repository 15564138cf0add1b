"""Statistics of a campaign measurement: difference in means with Welch and bootstrap intervals, SMD."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["diff_in_means"]


def _seed_for(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def diff_in_means(
    treated: np.ndarray,
    control: np.ndarray,
    *,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    name: str = "",
) -> dict[str, float]:
    """Difference of means (treated - control) with a Welch and a seeded percentile-bootstrap interval.

    Parameters
    ----------
    treated, control
        Outcomes per customer (0/1 conversions or revenue).
    alpha
        1 - confidence level of both intervals.
    n_boot
        Bootstrap resamples (0 skips the bootstrap: its bounds are NaN).
    seed, name
        The bootstrap stream is seeded by ``(seed, name)``: each segment has its own reproducible stream.

    Returns
    -------
    dict
        ``mean_treated, mean_control, diff, se, ci_low, ci_high, p_value, boot_low, boot_high``; the
        Welch values are NaN when a group has fewer than 2 customers.

    Examples
    --------
    >>> r = diff_in_means(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0]), n_boot=0)
    >>> round(r["diff"], 3), round(r["ci_low"], 2), round(r["ci_high"], 2)
    (1.5, -0.73, 3.73)
    """
    from scipy import stats

    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    nt, nc = t.size, c.size
    nan = float("nan")
    out = dict.fromkeys(("mean_treated", "mean_control", "diff", "se", "ci_low", "ci_high", "p_value"), nan)
    out.update(boot_low=nan, boot_high=nan)
    if nt == 0 or nc == 0:
        return out
    mt, mc = float(t.mean()), float(c.mean())
    out.update(mean_treated=mt, mean_control=mc, diff=mt - mc)
    if nt >= 2 and nc >= 2:
        vt, vc = float(t.var(ddof=1)) / nt, float(c.var(ddof=1)) / nc
        se = float(np.sqrt(vt + vc))
        out["se"] = se
        if se > 0:
            # Welch-Satterthwaite degrees of freedom on variances scaled to at most 1: the squares of
            # tiny (subnormal) variances would underflow to 0 and divide by zero.
            a, b = vt / max(vt, vc), vc / max(vt, vc)
            df = (a + b) ** 2 / (a**2 / (nt - 1) + b**2 / (nc - 1))
            q = float(stats.t.ppf(1 - alpha / 2, df))
            out.update(
                ci_low=mt - mc - q * se,
                ci_high=mt - mc + q * se,
                p_value=float(2 * stats.t.sf(abs(mt - mc) / se, df)),
            )
        else:
            out.update(ci_low=mt - mc, ci_high=mt - mc, p_value=1.0 if mt == mc else 0.0)
    if n_boot > 0:
        rng = _seed_for(seed, name)
        bt = _boot_means(rng, t, n_boot)
        bc = _boot_means(rng, c, n_boot)
        lo, hi = np.quantile(bt - bc, [alpha / 2, 1 - alpha / 2])
        out.update(boot_low=float(lo), boot_high=float(hi))
    return out


def _boot_means(rng: np.random.Generator, values: np.ndarray, n_boot: int) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement, drawn in batches of at most ~4M indices (bounded memory)."""
    n = values.size
    per = max(1, 4_000_000 // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, per):
        stop = min(n_boot, start + per)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def _smd(t: np.ndarray, c: np.ndarray) -> float:
    if t.size < 2 or c.size < 2:
        return float("nan")
    pooled = np.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2)
    diff = float(t.mean() - c.mean())
    if pooled == 0:
        return 0.0 if diff == 0 else float("inf")
    return diff / float(pooled)
