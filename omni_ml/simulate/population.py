"""Who lives in the simulated world: per-person parameters of one chunk, the calendar, and random streams.

Every random draw comes from a numpy ``SeedSequence`` keyed by ``(seed, purpose, chunk, ...)``; a
chunk's persons and each simulated day have their own streams, so the history of a chunk never depends
on its future, and two runs with the same config give the same numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np

from omni_ml.simulate.config import (
    AGE_BANDS,
    CATEGORIES,
    CATEGORY_NAMES,
    CHANNEL_EFFECT,
    CHANNEL_IGNORE,
    CHANNELS,
    COMPLEMENTS,
    CONSENT_AT_SIGNUP,
    REGIONS,
    WEEKDAY,
    SimulationConfig,
)

__all__ = ["Calendar", "Population", "draw_population", "rng_for"]

# Purposes of random streams (first element of the spawn key after the seed).
PEOPLE, DAY_CORE, DAY_MISC, EXPAND, IDENT, CALENDAR = 0, 1, 2, 3, 4, 5
NEVER = 2047  # "days since last purchase" of a category never bought (table size - 1)
PUSH = CHANNELS.index("push")


def rng_for(cfg: SimulationConfig, *key: int) -> np.random.Generator:
    """The random stream of ``(cfg.seed, *key)``: independent of every other key."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(cfg.seed, spawn_key=key)))


@dataclasses.dataclass(frozen=True)
class Calendar:
    """Day-level facts shared by all chunks: day ``0`` is ``start``; ``n_history`` is the index of ``end``."""

    n_history: int
    n_total: int
    season: np.ndarray  # intent-hazard multiplier per day
    weekday: np.ndarray  # in-market buying multiplier per day
    campaign: np.ndarray  # bool: the historic policy sends a campaign that day
    epoch_day: int  # days from 1970-01-01 to start

    @classmethod
    def build(cls, cfg: SimulationConfig) -> Calendar:
        """Seasonality (cosine peaking mid-December plus a holiday lift), weekday rhythm, campaign days."""
        n = cfg.total_days
        start_ord = cfg.start.toordinal()
        ords = start_ord + np.arange(n)
        epoch_day = start_ord - 719163  # date(1970, 1, 1).toordinal()
        dates = [dt.date.fromordinal(int(o)) for o in ords]
        doy = np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)
        season = 1.0 + cfg.season_amplitude * np.cos(2 * math.pi * (doy - 350.0) / 365.25)
        holiday = np.array([(d.month == 11 and d.day >= 15) or (d.month == 12 and d.day <= 24) for d in dates])
        season = season + cfg.holiday_boost * holiday
        weekday = np.asarray(WEEKDAY)[np.array([d.weekday() for d in dates])]
        rng = rng_for(cfg, CALENDAR)
        campaign = rng.random(n) < cfg.campaign_days_per_week / 7.0
        campaign[cfg.history_days :] = False  # no historic policy in the future window
        return cls(cfg.history_days, n, season.astype(np.float32), weekday.astype(np.float32), campaign, epoch_day)


@dataclasses.dataclass(frozen=True)
class Population:
    """Static parameters of the persons of one chunk.

    Arrays of length ``n``; ``(n, k)`` for per-category or per-channel values.
    """

    gid: np.ndarray  # global person index; customer id is C{gid + 1:07d}
    signup_day: np.ndarray  # day index of sign-up (negative: before start)
    signup_sec: np.ndarray  # second of the day of sign-up
    alive0: np.ndarray  # still active at start (existing customers may already have gone quiet)
    lam: np.ndarray  # base purchase-intent hazard per day
    q: np.ndarray  # daily drop-out hazard
    pref: np.ndarray  # (n, C) category preferences, rows sum to 1
    pref_t: np.ndarray  # (C, n) the same, category-major (fast daily sums)
    spend: np.ndarray  # price multiplier
    has_app: np.ndarray
    has_card: np.ndarray
    has_phone: np.ndarray
    phone_gid: np.ndarray  # whose phone number the person uses (a household shares one)
    buy_channel: np.ndarray  # (n, 3) probabilities of store, web, app for a purchase
    app_share: np.ndarray  # share of sessions in the app
    browse: np.ndarray  # background sessions per day
    uplift: np.ndarray  # (n, 5) extra intent hazard right after a contact per channel
    engage: np.ndarray  # (n, 5) open / click propensity multiplier per channel
    consent0: np.ndarray  # (n, 5) consent at sign-up
    dslp0: np.ndarray  # (C, n) days since last purchase per category at start (category-major)
    cookie_life: np.ndarray
    cookie_phase: np.ndarray
    shop: np.ndarray  # home shop index
    region: np.ndarray
    age_band: np.ndarray

    @property
    def n(self) -> int:
        """Persons in the chunk."""
        return int(self.gid.shape[0])


def draw_population(cfg: SimulationConfig, chunk: int, offset: int, n: int) -> Population:
    """Draw the persons ``offset .. offset + n - 1`` (chunk ``chunk``) from their own random stream."""
    rng = rng_for(cfg, PEOPLE, chunk)
    n_cat = len(CATEGORIES)
    hist = cfg.history_days
    new = rng.random(n) < cfg.share_new_customers
    before = -rng.integers(1, max(2, int(cfg.signup_years_before_start * 365)), size=n)
    during = rng.integers(0, max(1, hist - 14), size=n)
    signup_day = np.where(new, during, before).astype(np.int32)
    signup_sec = rng.integers(10 * 3600, 20 * 3600, size=n).astype(np.int64)

    lam = rng.gamma(cfg.rate_shape, cfg.purchases_per_year / 365.0 / cfg.rate_shape, size=n)
    a = 1.5
    q = rng.beta(a, a * (cfg.mean_lifetime_days - 1.0), size=n)
    tenure = np.maximum(0, -signup_day)
    alive0 = rng.random(n) < np.exp(np.log1p(-q) * tenure)

    alpha = np.array([c[1] for c in CATEGORIES])
    pref = rng.gamma(np.broadcast_to(alpha, (n, n_cat)), 1.0)
    pref /= pref.sum(axis=1, keepdims=True)
    spend = rng.lognormal(0.0, 0.3, size=n)

    has_app = rng.random(n) < 0.45
    has_card = rng.random(n) < 0.55
    has_phone = rng.random(n) < 0.85
    gid = offset + np.arange(n, dtype=np.int64)
    phone_gid = gid.copy()
    in_household = np.flatnonzero(rng.random(n) < cfg.household_share)
    pos = 0
    while pos + 1 < in_household.size:  # households of 2-4 consecutive chosen persons share the first one's phone
        size = int(rng.integers(2, 5))
        members = in_household[pos : pos + size]
        if members.size >= 2:
            phone_gid[members] = gid[members[0]]
            has_phone[members] = True
        pos += size

    ch_alpha = np.stack([np.full(n, 2.0), np.full(n, 1.5), np.where(has_app, 1.5, 1e-3)], axis=1)
    buy_channel = rng.gamma(ch_alpha, 1.0)
    buy_channel[~has_app, 2] = 0.0
    buy_channel /= buy_channel.sum(axis=1, keepdims=True)
    app_share = np.where(has_app, rng.beta(3.0, 2.0, size=n), 0.0)
    mean_lam = cfg.purchases_per_year / 365.0
    browse = cfg.browse_rate * rng.gamma(2.0, 0.5, size=n) * np.sqrt(lam / mean_lam + 0.05)

    responsive = rng.random(n) >= cfg.zero_uplift_share
    resp = np.where(responsive, rng.gamma(2.0, 0.5, size=n), 0.0)
    ignore = rng.random((n, len(CHANNELS))) < np.array([CHANNEL_IGNORE[c] for c in CHANNELS])
    affinity = np.where(ignore, 0.0, rng.gamma(2.0, 0.5, size=(n, len(CHANNELS))))
    effect = np.array([CHANNEL_EFFECT[c] for c in CHANNELS])
    uplift = (effect[None, :] * affinity * resp[:, None]).astype(np.float32)
    engage = np.where(ignore, 0.08, np.minimum(1.0, 0.35 + 0.45 * affinity)).astype(np.float32)

    consent0 = rng.random((n, len(CHANNELS))) < np.array([CONSENT_AT_SIGNUP[c] for c in CHANNELS])
    consent0[:, PUSH] &= has_app

    dslp0 = rng.integers(0, 1500, size=(n, n_cat))
    ever = rng.random((n, n_cat)) < 0.5
    dslp0 = np.where(ever & (signup_day[:, None] < 0), np.minimum(dslp0, tenure[:, None] + 30), NEVER)
    dslp0 = np.ascontiguousarray(np.minimum(dslp0, NEVER).T.astype(np.int32))

    cookie_life = np.maximum(3.0, rng.gamma(2.0, cfg.cookie_lifetime_days / 2.0, size=n))
    cookie_phase = rng.random(n) * cookie_life
    return Population(
        gid=gid,
        signup_day=signup_day,
        signup_sec=signup_sec,
        alive0=alive0,
        lam=lam.astype(np.float32),
        q=q.astype(np.float32),
        pref=pref.astype(np.float32),
        pref_t=np.ascontiguousarray(pref.T.astype(np.float32)),
        spend=spend,
        has_app=has_app,
        has_card=has_card,
        has_phone=has_phone,
        phone_gid=phone_gid,
        buy_channel=buy_channel,
        app_share=app_share,
        browse=browse.astype(np.float32),
        uplift=uplift,
        engage=engage,
        consent0=consent0,
        dslp0=dslp0,
        cookie_life=cookie_life,
        cookie_phase=cookie_phase,
        shop=rng.integers(0, cfg.n_shops, size=n),
        region=rng.integers(0, len(REGIONS), size=n),
        age_band=rng.choice(len(AGE_BANDS), size=n, p=[0.08, 0.2, 0.2, 0.2, 0.18, 0.14]),
    )


@dataclasses.dataclass(frozen=True)
class CategoryTables:
    """Turns purchase history into category weights with two small per-person states.

    ``sup`` (one row per durable category): after a purchase a durable good is unlikely to be bought
    again; ``sup = 1 - 0.95 exp(-days / replacement_days)``, kept as ``1 - (1 - sup) * exp(-1 / R)`` per
    day. ``lift`` (one row per category that has complements): ``complement_boost exp(-days / decay)``.
    The weight of category ``c`` is ``pref_c * sup_c * (1 + sum of lifts of its parents)``.
    """

    durable: np.ndarray  # category indices of durable goods
    keep: np.ndarray  # (D, 1) daily factor of 1 - sup
    parents: np.ndarray  # category indices with complements
    children: tuple[tuple[int, tuple[int, ...]], ...]  # (child category, rows of `parents` lifting it)
    boost: float
    lift_keep: np.float32

    @classmethod
    def build(cls, cfg: SimulationConfig) -> CategoryTables:
        """The durable goods and complements of ``CATEGORIES`` / ``COMPLEMENTS`` for this config."""
        durable = np.array([i for i, c in enumerate(CATEGORIES) if c[4] > 0], dtype=np.int64)
        keep = np.array([[np.exp(-1.0 / CATEGORIES[i][4])] for i in durable], dtype=np.float32)
        parent_names = list(dict.fromkeys(p for p, _ in COMPLEMENTS))
        parents = np.array([CATEGORY_NAMES.index(p) for p in parent_names], dtype=np.int64)
        child_names = list(dict.fromkeys(c for _, c in COMPLEMENTS))
        children = tuple(
            (CATEGORY_NAMES.index(c), tuple(parent_names.index(p) for p, cc in COMPLEMENTS if cc == c))
            for c in child_names
        )
        lift_keep = np.float32(np.exp(-1.0 / cfg.complement_decay_days))
        return cls(durable, keep, parents, children, cfg.complement_boost, lift_keep)

    def initial(self, dslp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(sup, lift)`` from (C, n) days since the last purchase (``NEVER``: never bought)."""
        d = dslp.astype(np.float64)
        never = dslp >= NEVER
        rep = np.array([CATEGORIES[i][4] for i in self.durable])[:, None]
        sup = np.where(never[self.durable], 1.0, 1.0 - 0.95 * np.exp(-d[self.durable] / rep))
        decay = -1.0 / np.log(float(self.lift_keep))
        lift = np.where(never[self.parents], 0.0, self.boost * np.exp(-d[self.parents] / decay))
        return sup.astype(np.float32), lift.astype(np.float32)

    def weights(self, pref_t: np.ndarray, sup: np.ndarray, lift: np.ndarray) -> np.ndarray:
        """(C, n) unnormalised intent weight of each category."""
        w = pref_t.copy()
        w[self.durable] *= sup
        for child, rows in self.children:
            factor = 1.0 + lift[rows[0]]
            for r in rows[1:]:
                factor += lift[r]
            w[child] *= factor
        return w

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(durable, keep, parents, child_cat, child_rows)`` for :func:`~omni_ml.simulate.kernels.day_step`.

        ``child_rows[j]`` lists the rows of ``lift`` lifting ``child_cat[j]``, padded with ``-1``.
        """
        width = max((len(rows) for _, rows in self.children), default=1)
        child_rows = np.full((len(self.children), width), -1, dtype=np.int64)
        for j, (_, rows) in enumerate(self.children):
            child_rows[j, : len(rows)] = rows
        child_cat = np.array([c for c, _ in self.children], dtype=np.int64)
        return self.durable, np.ascontiguousarray(self.keep[:, 0]), self.parents, child_cat, child_rows

    def advance(self, sup: np.ndarray, lift: np.ndarray) -> None:
        """One day passes (in place)."""
        sup -= 1.0
        sup *= self.keep
        sup += 1.0
        lift *= self.lift_keep
