"""From a chunk's records to table rows: purchases, browsing sessions, contact responses, returns, calls.

Rows are built as numpy columns (person index, timestamp in microseconds, codes) and turned into
polars frames with typed identifiers by :mod:`omni_ml.simulate.identifiers`. Details are drawn from a
stream per (chunk, period), so the history rows never depend on what happens in the future window.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from omni_ml.data import EVENT_TYPES
from omni_ml.simulate.config import CATEGORIES, CHANNELS, PRODUCTS_PER_CATEGORY, SimulationConfig
from omni_ml.simulate.engine import ChunkRecords
from omni_ml.simulate.outcomes import call_outcomes, redemptions
from omni_ml.simulate.population import EXPAND, Calendar, Population, rng_for
from omni_ml.simulate.rhythm import RHYTHM_TIMES, Rhythm, activity_channel, draw_rhythm

__all__ = ["EVENT_CHANNELS", "EVENT_TYPES", "KINDS", "RawRows", "expand"]

EVENT_CHANNELS: tuple[str, ...] = ("store", "web", "app", *CHANNELS)
# Which channel-local identifier an event carries (besides, or instead of, the customer id).
KINDS: tuple[str, ...] = ("none", "cookie", "app", "loyalty", "default_card", "email", "phone")
_K = {k: i for i, k in enumerate(KINDS)}
_CH = {c: i for i, c in enumerate(EVENT_CHANNELS)}
_ET = {e: i for i, e in enumerate(EVENT_TYPES)}
# contact channel -> identifier kind of its opens / clicks / unsubscribes
_CONTACT_KIND = np.array([_K["email"], _K["phone"], _K["app"], _K["none"], _K["none"]])
_MEDIAN = np.array([c[2] for c in CATEGORIES])
_SD = np.array([c[3] for c in CATEGORIES])
_RETURN = np.array([c[5] for c in CATEGORIES])
US = 1_000_000
DAY_US = 86_400 * US


@dataclasses.dataclass
class RawRows:
    """Event rows as columns: ``idx`` (local person), ``ts`` (us since epoch), codes and values."""

    idx: np.ndarray
    ts: np.ndarray
    channel: np.ndarray
    event_type: np.ndarray
    amount: np.ndarray
    category: np.ndarray  # -1: none
    product: np.ndarray  # -1: none
    campaign: np.ndarray  # campaign day, FUTURE_CAMPAIGN, or -2: none
    kind: np.ndarray  # identifier kind (KINDS)

    @staticmethod
    def concat(parts: list[RawRows]) -> RawRows:
        """Stack several row sets."""
        return RawRows(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(RawRows)))

    def take(self, mask: np.ndarray) -> RawRows:
        """Rows where ``mask`` holds (or at the given positions)."""
        return RawRows(*(getattr(self, f.name)[mask] for f in dataclasses.fields(RawRows)))


def _rows(
    idx: np.ndarray, ts: np.ndarray, channel: np.ndarray | int, event_type: int, **kw: np.ndarray | int | float
) -> RawRows:
    n = idx.size
    full = lambda v, dt: np.broadcast_to(np.asarray(v, dtype=dt), (n,)).copy()  # noqa: E731
    return RawRows(
        idx=idx.astype(np.int64),
        ts=ts.astype(np.int64),
        channel=full(channel, np.int8),
        event_type=full(event_type, np.int8),
        amount=full(kw.get("amount", np.nan), np.float64),
        category=full(kw.get("category", -1), np.int16),
        product=full(kw.get("product", -1), np.int16),
        campaign=full(kw.get("campaign", -2), np.int32),
        kind=full(kw.get("kind", 0), np.int8),
    )


def expand(
    cfg: SimulationConfig,
    chunk: int,
    pop: Population,
    cal: Calendar,
    rec: ChunkRecords,
    period: int,
) -> RawRows:
    """All event rows caused by the records of one period (0: history days, 1: future days).

    Rows are not yet cut to the period's time window: a return of a December purchase may fall in the
    future window; the caller routes rows by timestamp. Times of day of visits, online purchases and
    opens follow the person's rhythm (:mod:`omni_ml.simulate.rhythm`), drawn from their own stream so the
    other details (amounts, products, returns) are those of the stream ``EXPAND``.
    """
    rng = rng_for(cfg, EXPAND, chunk, period)
    times = _Times(draw_rhythm(cfg, chunk, pop), rng_for(cfg, RHYTHM_TIMES, chunk, period))
    lo, hi = (0, cal.n_history) if period == 0 else (cal.n_history, cal.n_total)
    base_us = cal.epoch_day * DAY_US
    parts = [_purchases(cfg, rng, pop, rec.purchases, lo, hi, base_us, times)]
    parts.append(_sessions(rng, pop, rec.sessions, lo, hi, base_us, times))
    parts.append(_contact_events(rng, rec.contacts, lo, hi, base_us, times))
    parts.append(_outcome_events(cfg, chunk, pop, cal, rec, (lo, hi), base_us, parts[0]))
    return RawRows.concat(parts)


def _outcome_events(
    cfg: SimulationConfig,
    chunk: int,
    pop: Population,
    cal: Calendar,
    rec: ChunkRecords,
    period_days: tuple[int, int],
    base_us: int,
    purchase_rows: RawRows,
) -> RawRows:
    """Mail-code redemptions and call outcomes (:mod:`omni_ml.simulate.outcomes`) of the period's rows.

    ``purchase_rows`` starts with the period's purchases in record order (:func:`_purchases`); a
    redemption carries its purchase's timestamp.
    """
    lo, hi = period_days
    p_day = rec.purchases["day"]
    hit, code = redemptions(cfg, chunk, pop, cal, rec.purchases, rec.contacts)
    in_period = (p_day >= lo) & (p_day < hi)
    position = np.cumsum(in_period) - 1  # a period purchase's row in purchase_rows
    keep = in_period[hit]
    rows = position[hit[keep]]
    parts = [
        _rows(purchase_rows.idx[rows], purchase_rows.ts[rows], _CH["direct_mail"], _ET["redeem"], campaign=code[keep])
    ]
    calls, outcome, delay = call_outcomes(cfg, chunk, pop, rec.contacts, rec.drop_day)
    day = rec.contacts["day"].astype(np.int64)[calls]
    keep = (day >= lo) & (day < hi)
    ts = base_us + day * DAY_US + (rec.contacts["sec"].astype(np.int64)[calls] + delay) * US
    event = np.array([_ET["no_answer"], _ET["reached"], _ET["interested"]])[outcome]
    for e in np.unique(event[keep]):
        sel = keep & (event == e)
        parts.append(
            _rows(
                rec.contacts["idx"].astype(np.int64)[calls][sel],
                ts[sel],
                _CH["call_center"],
                int(e),
                campaign=rec.contacts["campaign"].astype(np.int64)[calls][sel],
            )
        )
    return RawRows.concat(parts)


@dataclasses.dataclass
class _Times:
    """Times of day on the persons' rhythms (a stream of its own)."""

    rhythm: Rhythm
    rng: np.random.Generator

    def of(self, idx: np.ndarray, event_channel: np.ndarray) -> np.ndarray:
        """Second of the day of activities of persons ``idx`` on event channels ``event_channel``."""
        ch = activity_channel(np.broadcast_to(event_channel, idx.shape))
        return self.rhythm.activity_seconds(self.rng, idx, ch)


def _in(rec: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    keep = (rec["day"] >= lo) & (rec["day"] < hi)
    return {k: v[keep] for k, v in rec.items()}


def _choose(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _purchases(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    pop: Population,
    rec: dict[str, np.ndarray],
    lo: int,
    hi: int,
    base_us: int,
    times: _Times,
) -> RawRows:
    p = _in(rec, lo, hi)
    idx, day, cat = p["idx"].astype(np.int64), p["day"].astype(np.int64), p["cat"].astype(np.int64)
    n = idx.size
    where = _choose(rng, pop.buy_channel[idx])  # 0 store, 1 web, 2 app
    in_hours = rng.integers(9 * 3600, 20 * 3600, n)
    _unused = rng.integers(8 * 3600, 23 * 3600, n)  # drawn so the stream's later draws stay those of before
    active = times.of(idx, where)
    opening = (active >= 9 * 3600) & (active < 20 * 3600)
    sec = np.where((where == 0) & ~opening, in_hours, active)
    ts = base_us + day * DAY_US + sec * US
    price = np.round(np.exp(np.log(_MEDIAN[cat]) + _SD[cat] * rng.standard_normal(n)) * pop.spend[idx], 2)
    price = np.maximum(price, 1.0)
    product = (PRODUCTS_PER_CATEGORY * rng.random(n) ** 2).astype(np.int64)
    store = where == 0
    default = store & ~pop.has_card[idx] & (rng.random(n) < cfg.default_card_share)
    kind = np.select(
        [where == 1, where == 2, store & pop.has_card[idx], default],
        [_K["cookie"], _K["app"], _K["loyalty"], _K["default_card"]],
        _K["none"],
    )
    parts = [_rows(idx, ts, where, _ET["purchase"], amount=price, category=cat, product=product, kind=kind)]
    # an online purchase comes with its session: visit, view of the product, cart
    on = np.flatnonzero(~store)
    if on.size:
        lead = rng.integers(300, 2400, on.size) * US
        for et, offset in (("visit", lead), ("view", lead - 60 * US), ("cart", rng.integers(60, 240, on.size) * US)):
            parts.append(
                _rows(
                    idx[on], ts[on] - offset, where[on], _ET[et], category=cat[on], product=product[on], kind=kind[on]
                )
                if et != "visit"
                else _rows(idx[on], ts[on] - offset, where[on], _ET[et], kind=kind[on])
            )
    ret = np.flatnonzero(rng.random(n) < _RETURN[cat])
    if ret.size:
        r_ts = (
            base_us
            + (day[ret] + rng.integers(2, 31, ret.size)) * DAY_US
            + rng.integers(10 * 3600, 19 * 3600, ret.size) * US
        )
        parts.append(
            _rows(
                idx[ret],
                r_ts,
                np.where(store[ret], _CH["store"], _CH["web"]),
                _ET["return"],
                amount=price[ret],
                category=cat[ret],
                product=product[ret],
            )
        )
    calls = np.flatnonzero(p["complaint"].astype(bool))
    if calls.size:
        c_ts = (
            base_us
            + (day[calls] + rng.integers(1, 11, calls.size)) * DAY_US
            + rng.integers(9 * 3600, 17 * 3600, calls.size) * US
        )
        phone = np.where(pop.has_phone[idx[calls]], _K["phone"], _K["none"])
        parts.append(_rows(idx[calls], c_ts, _CH["call_center"], _ET["service_call"], category=cat[calls], kind=phone))
    return RawRows.concat(parts)


def _sessions(
    rng: np.random.Generator,
    pop: Population,
    rec: dict[str, np.ndarray],
    lo: int,
    hi: int,
    base_us: int,
    times: _Times,
) -> RawRows:
    s = _in(rec, lo, hi)
    idx, day, cat = s["idx"].astype(np.int64), s["day"].astype(np.int64), s["cat"].astype(np.int64)
    n = idx.size
    app = rng.random(n) < pop.app_share[idx]
    channel = np.where(app, _CH["app"], _CH["web"])
    kind = np.where(app, _K["app"], _K["cookie"])
    _unused = rng.integers(7 * 3600, 23 * 3600, n)  # drawn so the stream's later draws stay those of before
    start = base_us + day * DAY_US + times.of(idx, channel) * US
    browsing_cat = np.where(cat >= 0, cat, _choose(rng, pop.pref[idx]))
    n_views = 1 + rng.poisson(np.where(cat >= 0, 2.5, 1.2))
    parts = [_rows(idx, start, channel, _ET["visit"], kind=kind)]
    v = np.repeat(np.arange(n), n_views)
    step = (np.arange(v.size) - np.repeat(np.cumsum(n_views) - n_views, n_views) + 1) * 45 * US
    view_product = (PRODUCTS_PER_CATEGORY * rng.random(v.size) ** 2).astype(np.int64)
    parts.append(
        _rows(
            idx[v],
            start[v] + step,
            channel[v],
            _ET["view"],
            category=browsing_cat[v],
            product=view_product,
            kind=kind[v],
        )
    )
    cart = rng.random(n) < np.where(cat >= 0, 0.25, 0.03)
    last = np.cumsum(n_views) - 1
    c = np.flatnonzero(cart)
    if c.size:
        parts.append(
            _rows(
                idx[c],
                start[c] + (n_views[c] + 1) * 45 * US,
                channel[c],
                _ET["cart"],
                category=browsing_cat[c],
                product=view_product[last[c]],
                kind=kind[c],
            )
        )
    return RawRows.concat(parts)


def _contact_events(
    rng: np.random.Generator, rec: dict[str, np.ndarray], lo: int, hi: int, base_us: int, times: _Times
) -> RawRows:
    c = _in(rec, lo, hi)
    idx, day, ch = c["idx"].astype(np.int64), c["day"].astype(np.int64), c["ch"].astype(np.int64)
    sent = base_us + day * DAY_US + c["sec"].astype(np.int64) * US
    code = c["campaign"].astype(np.int64)
    evt_ch = ch + len(EVENT_CHANNELS) - len(CHANNELS)
    kind = _CONTACT_KIND[ch]
    parts = [_rows(np.empty(0, np.int64), np.empty(0, np.int64), 0, 0)]
    o = np.flatnonzero(c["opened"].astype(bool))
    _unused = rng.integers(60, 6 * 3600, idx.size)  # drawn so the stream's later draws stay those of before
    # an open is the person's next active moment on the channel's rhythm after the send (at least a minute)
    sent_sec = c["sec"].astype(np.int64)
    wait = (times.of(idx, evt_ch) - sent_sec) % 86_400
    open_ts = sent + np.maximum(wait, 60) * US
    if o.size:
        parts.append(_rows(idx[o], open_ts[o], evt_ch[o], _ET["open"], campaign=code[o], kind=kind[o]))
    k = np.flatnonzero(c["clicked"].astype(bool))
    if k.size:
        click_ts = open_ts[k] + rng.integers(10, 900, k.size) * US  # an unopened click (sms) too: when active
        parts.append(_rows(idx[k], click_ts, evt_ch[k], _ET["click"], campaign=code[k], kind=kind[k]))
    u = np.flatnonzero(c["unsub"].astype(bool))
    if u.size:
        u_ts = base_us + day[u] * DAY_US + c["unsub_sec"][u].astype(np.int64) * US
        parts.append(_rows(idx[u], u_ts, evt_ch[u], _ET["unsubscribe"], campaign=code[u], kind=kind[u]))
    return RawRows.concat(parts)
