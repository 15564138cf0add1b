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
import pyarrow as pa

from omni_ml.simulate.columns import codes, timestamps
from omni_ml.simulate.config import CATEGORY_NAMES, CHANNEL_COST, CHANNELS, PRODUCTS_PER_CATEGORY, SimulationConfig
from omni_ml.simulate.events import EVENT_CHANNELS, EVENT_TYPES, KINDS, RawRows
from omni_ml.simulate.kernels import first_seen, identifier_utf8, identifier_values, person_time_order
from omni_ml.simulate.outcomes import OUTCOME_EVENT_TYPES
from omni_ml.simulate.population import IDENT, Calendar, Population, rng_for

__all__ = ["consents_table", "contacts_table", "customer_ids", "events_table", "identity_truth", "links_frame"]

_PREFIX = ["", "cookie:", "app:", "loyalty:", "loyalty:", "email:u", "phone:+45"]
_SUFFIX = ["", "", "", "", "", "@mail.example", ""]
_K = {k: i for i, k in enumerate(KINDS)}
OUTCOME_CODES = np.array([EVENT_TYPES.index(e) for e in OUTCOME_EVENT_TYPES], dtype=np.int8)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(h: np.ndarray) -> np.ndarray:
    return (_mix(h) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def customer_ids(gid: np.ndarray) -> pl.Series:
    """``C0000001`` style crm ids of global person indices."""
    return (
        pl.Series("customer_id", np.asarray(gid, dtype=np.int64) + 1).cast(pl.String).str.zfill(7).str.pad_start(8, "C")
    )


def _values(cfg: SimulationConfig, pop: Population, idx: np.ndarray, kind: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The numeric part of each row's identifier of the given kind (0 where kind is none)."""
    return identifier_values(
        _mix(np.full(1, cfg.seed, dtype=np.uint64))[0],
        np.asarray(idx, dtype=np.int64),
        np.asarray(kind, dtype=np.int64),
        np.asarray(day, dtype=np.int64),
        pop.gid,
        pop.cookie_phase,
        pop.cookie_life,
        np.asarray(pop.shop, dtype=np.int64),
        pop.phone_gid,
    )


def _affixes() -> tuple[np.ndarray, np.ndarray]:
    pieces = [x.encode() for pair in zip(_PREFIX, _SUFFIX, strict=True) for x in pair]
    return np.frombuffer(b"".join(pieces), dtype=np.uint8), np.cumsum([0, *map(len, pieces)]).astype(np.int64)


_AFFIXES, _AFFIX_AT = _affixes()


def _ident_array(kind: np.ndarray, val: np.ndarray, show: np.ndarray | None = None) -> pa.Array:
    """Identifier strings of (kind, value) pairs (null where kind is none or ``show`` is false)."""
    kind = np.asarray(kind, dtype=np.int64)
    valid = kind > 0 if show is None else show & (kind > 0)
    offsets, data = identifier_utf8(kind, np.asarray(val, dtype=np.uint64), valid, _AFFIXES, _AFFIX_AT)
    n_null = int(kind.size - np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if n_null else None
    return pa.Array.from_buffers(pa.string(), kind.size, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)], n_null)


def _ident_strings(kind: np.ndarray, val: np.ndarray) -> pl.Series:
    """Identifier strings of (kind, value) pairs (null where kind is none)."""
    return pl.Series(_ident_array(kind, val))


def _campaign_names(cfg: SimulationConfig, cal: Calendar, campaign_name: str) -> list[str]:
    """Names of campaign codes: one per day (``cmp-YYYYMMDD``), then the continued campaign's."""
    return [*(f"cmp-{cfg.start + dt.timedelta(days=d):%Y%m%d}" for d in range(cal.n_total)), campaign_name]


def events_table(
    cfg: SimulationConfig,
    chunk: int,
    pop: Population,
    cal: Calendar,
    rows: RawRows,
    *,
    period: int,
    campaign_name: str,
    with_customer_id: bool,
) -> tuple[pa.Table, pl.DataFrame]:
    """The events table of ``rows`` (normalised schema) and the (gid, kind, val, ts) each identifier was first seen.

    ``with_customer_id``: every row carries its true customer id (truth tables); otherwise a share
    ``identifier_only_share`` of the rows with a local identifier carry only that identifier.
    Rows are ordered by person, then time (stable).
    """
    rows = rows.take(person_time_order(rows.idx, rows.ts, pop.n))
    day = rows.ts // (86_400 * 1_000_000) - cal.epoch_day
    kind = rows.kind.astype(np.int64)
    val = _values(cfg, pop, rows.idx, kind, day)
    ident_only = kind == _K["default_card"]
    if not with_customer_id:
        # one uniform per row in order, outcome events (redemptions, call outcomes) excluded: they carry
        # no identifier, and leaving them out keeps every other row's draw as before they existed
        u = np.ones(rows.idx.size)
        other = ~np.isin(rows.event_type, OUTCOME_CODES)
        u[other] = rng_for(cfg, IDENT, chunk, period).random(int(other.sum()))
        ident_only |= (kind != 0) & (u < cfg.identifier_only_share)
    show_ident = ident_only | (with_customer_id & (kind != 0))
    products = [f"{c}-{p:03d}" for c in CATEGORY_NAMES for p in range(PRODUCTS_PER_CATEGORY)]
    category = rows.category.astype(np.int64)
    no_cat = category < 0
    no_product = rows.product < 0
    product = np.where(no_product, 0, category * PRODUCTS_PER_CATEGORY + rows.product)
    table = pa.table(
        {
            "customer_id": codes(_customer_id_array(pop.gid), rows.idx, None if with_customer_id else ident_only),
            "identifier": _ident_array(kind, val, show_ident),
            "timestamp": timestamps(rows.ts),
            "channel": codes(EVENT_CHANNELS, rows.channel),
            "event_type": codes(EVENT_TYPES, rows.event_type),
            "amount": pa.array(rows.amount, from_pandas=True),
            "product_id": codes(products, product, no_product),
            "category": codes(CATEGORY_NAMES, np.where(no_cat, 0, category), no_cat),
            "campaign_id": codes(
                _campaign_names(cfg, cal, campaign_name),
                np.where(rows.campaign >= 0, rows.campaign, cal.n_total),
                rows.campaign == -2,
            ),
        }
    )
    s_idx, s_kind, s_val, s_ts = first_seen(rows.idx, rows.kind, val, rows.ts)
    seen = pl.DataFrame({"gid": pop.gid[s_idx], "kind": s_kind.astype(np.int8), "val": s_val, "ts": s_ts})
    return table, seen


def _customer_id_array(gid: np.ndarray) -> pa.Array:
    return customer_ids(gid).to_arrow().cast(pa.string())


def contacts_table(
    cfg: SimulationConfig,
    pop: Population,
    cal: Calendar,
    rec: dict[str, np.ndarray],
    lo: int,
    hi: int,
    campaign_name: str,
) -> pa.Table:
    """The contacts table of the records with ``lo <= day < hi``, by person, day and second."""
    keep = (rec["day"] >= lo) & (rec["day"] < hi)
    c = {k: v[keep] for k, v in rec.items()}
    ts = (cal.epoch_day + c["day"].astype(np.int64)) * 86_400_000_000 + c["sec"].astype(np.int64) * 1_000_000
    order = person_time_order(c["idx"].astype(np.int64), ts, pop.n)  # by person, day, second
    c = {k: v[order] for k, v in c.items()}
    idx, ch, ts = c["idx"].astype(np.int64), c["ch"].astype(np.int64), ts[order]
    code = c["campaign"].astype(np.int64)
    costs = np.array([CHANNEL_COST[x] for x in CHANNELS])
    return pa.table(
        {
            "customer_id": codes(_customer_id_array(pop.gid), idx),
            "identifier": pa.nulls(idx.size, pa.string()),
            "timestamp": timestamps(ts),
            "channel": codes(CHANNELS, ch),
            "campaign_id": codes(_campaign_names(cfg, cal, campaign_name), np.where(code >= 0, code, cal.n_total)),
            "cost": costs[ch],
            "assignment_probability": c["p_assign"].astype(np.float64),
        }
    )


def consents_table(cal: Calendar, pop: Population, rec: dict[str, np.ndarray], lo: int, hi: int) -> pa.Table:
    """The consents table of the records with ``lo <= day < hi`` (``lo`` may be very negative)."""
    keep = (rec["day"] >= lo) & (rec["day"] < hi)
    c = {k: v[keep] for k, v in rec.items()}
    order = np.lexsort((c["ch"], c["sec"], c["day"], c["idx"]))
    c = {k: v[order] for k, v in c.items()}
    idx = c["idx"].astype(np.int64)
    ts = (cal.epoch_day + c["day"].astype(np.int64)) * 86_400_000_000 + c["sec"].astype(np.int64) * 1_000_000
    return pa.table(
        {
            "customer_id": codes(_customer_id_array(pop.gid), idx),
            "identifier": pa.nulls(idx.size, pa.string()),
            "channel": codes(CHANNELS, c["ch"]),
            "granted": c["granted"].astype(bool),
            "timestamp": timestamps(ts),
            "source": codes(["signup", "unsubscribe", "preference_centre"], c["source"]),
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
