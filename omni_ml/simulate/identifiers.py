"""Typed identifiers, identity links and the identity truth of one chunk.

Each person ``gid`` has the crm id ``C{gid + 1:07d}`` and, depending on their habits, ``email:``,
``phone:`` (a household shares one), ``app:`` (app users), ``loyalty:`` (card holders) identifiers and a
browser ``cookie:`` that changes every few weeks. Store purchases of persons without a card are
sometimes scanned with their shop's default card ``loyalty:99900000NN`` (shared by many persons).
Identifier values are hashes or permutations of ``gid``, so they reveal nothing about the person.

Links (``identity_links``): at sign-up ``crm``-``email``, ``crm``-``phone``, ``crm``-``loyalty``,
``crm``-``app`` (source ``signup``); at the first session of a cookie, with probability ``link_rate``,
``cookie``-``email`` (``login``); when a default card is used, with probability 1/2,
``loyalty(default)``-``email`` (``receipt``), a link that would merge strangers if trusted blindly.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from omni_ml.simulate.config import CATEGORY_NAMES, CHANNEL_COST, CHANNELS, PRODUCTS_PER_CATEGORY, SimulationConfig
from omni_ml.simulate.events import EVENT_CHANNELS, EVENT_TYPES, KINDS, RawRows
from omni_ml.simulate.population import IDENT, Calendar, Population, rng_for

__all__ = ["customer_ids", "events_frame", "identity_truth", "links_frame"]

_PREFIX = ["", "cookie:", "app:", "loyalty:", "loyalty:", "email:u", "phone:+45"]
_SUFFIX = ["", "", "", "", "", "@mail.example", ""]
_K = {k: i for i, k in enumerate(KINDS)}
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hash(seed: int, gid: np.ndarray, salt: np.ndarray | int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(gid, dtype=np.uint64) + _mix(np.full(1, seed, dtype=np.uint64)))
        return _mix(h ^ (np.asarray(salt, dtype=np.uint64) * np.uint64(0x2545F4914F6CDD1D))) >> np.uint64(1)


def _uniform(h: np.ndarray) -> np.ndarray:
    return (_mix(h) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def customer_ids(gid: np.ndarray) -> pl.Series:
    """``C0000001`` style crm ids of global person indices."""
    return (
        pl.Series("customer_id", np.asarray(gid, dtype=np.int64) + 1).cast(pl.String).str.zfill(7).str.pad_start(8, "C")
    )


def _values(cfg: SimulationConfig, pop: Population, idx: np.ndarray, kind: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The numeric part of each row's identifier of the given kind (0 where kind is none)."""
    gid = pop.gid[idx]
    val = np.zeros(idx.size, dtype=np.uint64)
    sel = kind == _K["cookie"]
    epoch = np.floor((day[sel] + pop.cookie_phase[idx[sel]]) / pop.cookie_life[idx[sel]]).astype(np.int64)
    val[sel] = _hash(cfg.seed, gid[sel], 1000 + epoch)
    sel = kind == _K["app"]
    val[sel] = _hash(cfg.seed, gid[sel], 1)
    sel = kind == _K["loyalty"]
    val[sel] = (1_000_000_000 + (gid[sel] * 2_654_435_761 + 12_345) % 8_000_000_000).astype(np.uint64)
    sel = kind == _K["default_card"]
    val[sel] = (9_990_000_001 + pop.shop[idx[sel]]).astype(np.uint64)
    sel = kind == _K["email"]
    val[sel] = _hash(cfg.seed, gid[sel], 2)
    sel = kind == _K["phone"]
    val[sel] = (10_000_000 + (pop.phone_gid[idx[sel]] * 7_777_777 + 4_242) % 90_000_000).astype(np.uint64)
    return val


def _ident_strings(kind: np.ndarray, val: np.ndarray) -> pl.Series:
    """Identifier strings of (kind, value) pairs (null where kind is none)."""
    kind = np.asarray(kind, dtype=np.int64)
    frame = pl.DataFrame({"kind": kind, "val": np.asarray(val, dtype=np.uint64)})
    return frame.select(
        pl.when(pl.col("kind") > 0).then(
            pl.concat_str(
                [
                    pl.Series(_PREFIX).gather(pl.Series(kind)),
                    pl.col("val").cast(pl.String),
                    pl.Series(_SUFFIX).gather(pl.Series(kind)),
                ]
            )
        )
    ).to_series()


def _lookup(names: list[str | None], codes: np.ndarray) -> pl.Series:
    return pl.Series(names, dtype=pl.String).gather(pl.Series(codes.astype(np.int64)))


def events_frame(
    cfg: SimulationConfig,
    chunk: int,
    pop: Population,
    cal: Calendar,
    rows: RawRows,
    *,
    period: int,
    campaign_name: str,
    with_customer_id: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events table of ``rows`` (normalised schema) and the (gid, identifier, ts, kind) of each row.

    ``with_customer_id``: every row carries its true customer id (truth tables); otherwise a share
    ``identifier_only_share`` of the rows with a local identifier carry only that identifier.
    """
    # sort by person, then time: one int64 key (46 bits of microseconds cover 2.2 years)
    t0 = int(rows.ts.min()) if rows.ts.size else 0
    span = int(rows.ts.max()) - t0 if rows.ts.size else 0
    if span < (1 << 46) and pop.n < (1 << 17):
        order = np.argsort((rows.idx << 46) + (rows.ts - t0), kind="stable")
    else:
        order = np.lexsort((rows.ts, rows.idx))
    rows = rows.take(order)
    day = rows.ts // (86_400 * 1_000_000) - cal.epoch_day
    val = _values(cfg, pop, rows.idx, rows.kind.astype(np.int64), day)
    ident_only = rows.kind == _K["default_card"]
    if not with_customer_id:
        u = rng_for(cfg, IDENT, chunk, period).random(rows.idx.size)
        ident_only |= (rows.kind != 0) & (u < cfg.identifier_only_share)
    keep_cid = ~ident_only | with_customer_id
    show_ident = ident_only | (with_customer_id & (rows.kind != 0))
    days = [cfg.start + dt.timedelta(days=d) for d in range(cal.n_total)]
    campaign_names: list[str | None] = [*(f"cmp-{d:%Y%m%d}" for d in days), campaign_name, None]
    camp_pos = np.where(rows.campaign >= 0, rows.campaign, np.where(rows.campaign == -1, cal.n_total, cal.n_total + 1))
    products: list[str | None] = [f"{c}-{p:03d}" for c in CATEGORY_NAMES for p in range(PRODUCTS_PER_CATEGORY)]
    prod_pos = np.where(
        rows.product >= 0, rows.category.astype(np.int64) * PRODUCTS_PER_CATEGORY + rows.product, len(products)
    )
    n = rows.idx.size
    cid_pos = np.where(keep_cid, rows.idx, pop.n)
    shown = np.flatnonzero(show_ident)
    uniq, first, inverse = np.unique(val[shown], return_index=True, return_inverse=True)
    ident_names = _ident_strings(rows.kind[shown[first]], uniq).append(pl.Series([None], dtype=pl.String))
    ident_pos = np.full(n, uniq.size, dtype=np.int64)
    ident_pos[shown] = inverse
    amount = rows.amount
    frame = pl.DataFrame(
        {
            "customer_id": customer_ids(pop.gid).append(pl.Series([None], dtype=pl.String)).gather(cid_pos),
            "identifier": ident_names.gather(ident_pos),
            "timestamp": pl.Series(rows.ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "channel": _lookup(list(EVENT_CHANNELS), rows.channel),
            "event_type": _lookup(list(EVENT_TYPES), rows.event_type),
            "amount": pl.Series(amount).fill_nan(None) if n else pl.Series(amount),
            "product_id": _lookup([*products, None], prod_pos),
            "category": _lookup(
                [*CATEGORY_NAMES, None], np.where(rows.category >= 0, rows.category, len(CATEGORY_NAMES))
            ),
            "campaign_id": _lookup(campaign_names, camp_pos),
        }
    )
    seen = (
        pl.DataFrame({"gid": pop.gid[rows.idx], "kind": rows.kind.astype(np.int8), "val": val, "ts": rows.ts})
        .filter(pl.col("kind") > 0)
        .group_by("gid", "kind", "val")
        .agg(pl.col("ts").min())
    )
    return frame, seen


def contacts_frame(
    cfg: SimulationConfig,
    pop: Population,
    cal: Calendar,
    rec: dict[str, np.ndarray],
    lo: int,
    hi: int,
    campaign_name: str,
) -> pl.DataFrame:
    """The contacts table of the records with ``lo <= day < hi``."""
    keep = (rec["day"] >= lo) & (rec["day"] < hi)
    c = {k: v[keep] for k, v in rec.items()}
    order = np.lexsort((c["sec"], c["day"], pop.gid[c["idx"].astype(np.int64)]))
    c = {k: v[order] for k, v in c.items()}
    idx, day, ch = c["idx"].astype(np.int64), c["day"].astype(np.int64), c["ch"].astype(np.int64)
    ts = (cal.epoch_day + day) * 86_400_000_000 + c["sec"].astype(np.int64) * 1_000_000
    days = [cfg.start + dt.timedelta(days=d) for d in range(cal.n_total)]
    names: list[str | None] = [*(f"cmp-{d:%Y%m%d}" for d in days), campaign_name]
    code = c["campaign"].astype(np.int64)
    costs = np.array([CHANNEL_COST[x] for x in CHANNELS])
    return pl.DataFrame(
        {
            "customer_id": customer_ids(pop.gid[idx]),
            "identifier": pl.Series([None] * idx.size, dtype=pl.String),
            "timestamp": pl.Series(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "channel": _lookup(list(CHANNELS), ch),
            "campaign_id": _lookup(names, np.where(code >= 0, code, cal.n_total)),
            "cost": costs[ch],
            "assignment_probability": c["p_assign"].astype(np.float64),
        }
    )


def consents_frame(cal: Calendar, pop: Population, rec: dict[str, np.ndarray], lo: int, hi: int) -> pl.DataFrame:
    """The consents table of the records with ``lo <= day < hi`` (``lo`` may be very negative)."""
    keep = (rec["day"] >= lo) & (rec["day"] < hi)
    c = {k: v[keep] for k, v in rec.items()}
    order = np.lexsort((c["ch"], c["sec"], c["day"], pop.gid[c["idx"].astype(np.int64)]))
    c = {k: v[order] for k, v in c.items()}
    idx = c["idx"].astype(np.int64)
    ts = (cal.epoch_day + c["day"].astype(np.int64)) * 86_400_000_000 + c["sec"].astype(np.int64) * 1_000_000
    return pl.DataFrame(
        {
            "customer_id": customer_ids(pop.gid[idx]),
            "identifier": pl.Series([None] * idx.size, dtype=pl.String),
            "channel": _lookup(list(CHANNELS), c["ch"].astype(np.int64)),
            "granted": c["granted"].astype(bool),
            "timestamp": pl.Series(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "source": _lookup(["signup", "unsubscribe", "preference_centre"], c["source"].astype(np.int64)),
        }
    )


def _ident_col(kind: int, val: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit(_PREFIX[kind]), val.cast(pl.String), pl.lit(_SUFFIX[kind])])


def _person_ids(cfg: SimulationConfig, pop: Population) -> pl.DataFrame:
    """One row per (person, personal identifier) with the kind and value."""
    idx = np.arange(pop.n)
    parts = []
    for kind, has in (
        ("email", np.ones(pop.n, bool)),
        ("phone", pop.has_phone),
        ("app", pop.has_app),
        ("loyalty", pop.has_card),
    ):
        sel = idx[has]
        k = np.full(sel.size, _K[kind])
        parts.append(
            pl.DataFrame(
                {"gid": pop.gid[sel], "kind": k.astype(np.int8), "val": _values(cfg, pop, sel, k, np.zeros(sel.size))}
            )
        )
    return pl.concat(parts)


def links_frame(cfg: SimulationConfig, pop: Population, cal: Calendar, seen: pl.DataFrame) -> pl.DataFrame:
    """identity_links of the history: sign-up links, cookie logins, default-card receipts."""
    signup_ts = (cal.epoch_day + pop.signup_day.astype(np.int64)) * 86_400_000_000 + pop.signup_sec * 1_000_000
    person = _person_ids(cfg, pop)
    pos = person["gid"].to_numpy() - int(pop.gid[0])
    signup = pl.DataFrame(
        {
            "gid": person["gid"],
            "identifier_a": "crm:" + customer_ids(person["gid"].to_numpy()),
            "identifier_b": _ident_strings(person["kind"].to_numpy(), person["val"].to_numpy()),
            "ts": signup_ts[pos],
            "source": "signup",
        }
    )
    email = person.filter(pl.col("kind") == _K["email"]).select("gid", pl.col("val").alias("email"))
    first = seen.sort("gid", "kind", "val")
    cookies = first.filter(pl.col("kind") == _K["cookie"])
    cookies = cookies.filter(pl.Series(_uniform(cookies["val"].to_numpy()) < cfg.link_rate))
    cards = first.filter(pl.col("kind") == _K["default_card"])
    card_u = _uniform(cards["val"].to_numpy() ^ _mix(cards["gid"].to_numpy().astype(np.uint64)))
    cards = cards.filter(pl.Series(card_u < 0.5))
    extra = []
    for frame, kind, source in ((cookies, "cookie", "login"), (cards, "default_card", "receipt")):
        extra.append(
            frame.join(email, on="gid", how="left").select(
                pl.col("gid"),
                _ident_col(_K[kind], pl.col("val")).alias("identifier_a"),
                _ident_col(_K["email"], pl.col("email")).alias("identifier_b"),
                pl.col("ts"),
                pl.lit(source).alias("source"),
            )
        )
    out = pl.concat([signup, *extra], how="vertical_relaxed").sort("gid", "ts", "identifier_a", "identifier_b")
    return out.select(
        "identifier_a",
        "identifier_b",
        pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("timestamp"),
        "source",
    )


def identity_truth(cfg: SimulationConfig, pop: Population, seen: pl.DataFrame) -> pl.DataFrame:
    """truth/identity rows: every identifier with its true person; ``shared`` marks identifiers of several.

    Default shop cards are always shared (other chunks' persons use them too).
    """
    ids = pl.concat([_person_ids(cfg, pop), seen.select("gid", "kind", "val")]).unique()
    ids = ids.with_columns(
        ((pl.col("gid").n_unique().over("kind", "val") > 1) | (pl.col("kind") == _K["default_card"])).alias("shared")
    ).sort("kind", "val", "gid")
    cids = customer_ids(pop.gid)
    crm = pl.DataFrame({"identifier": "crm:" + cids, "customer_id": cids, "shared": np.zeros(pop.n, dtype=bool)})
    rest = pl.DataFrame(
        {
            "identifier": _ident_strings(ids["kind"].to_numpy(), ids["val"].to_numpy()),
            "customer_id": cids.gather(ids["gid"].to_numpy() - int(pop.gid[0])),
            "shared": ids["shared"],
        }
    )
    return pl.concat([crm, rest])
