"""Compiled (numba) inner loops of the simulator: the day step of the engine and the per-row work of events.

Each kernel does per person (or per row) exactly what the vectorised numpy code it replaced did, in
the same order and in the same float precision (``float32`` state, no fast-math), so the world is a
function of the config alone. Random numbers are never drawn here: the callers draw them from their
numpy streams and pass them in, which keeps every stream of :mod:`omni_ml.simulate.population`.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["contact_candidates", "day_step", "first_seen", "identifier_utf8", "identifier_values", "person_time_order"]

_F1 = np.float32(1.0)
_BOUND = np.float32(1.001)


@numba.njit(cache=True, nogil=True)
def day_step(
    t: int,
    core: np.ndarray,
    signup_day: np.ndarray,
    q: np.ndarray,
    lam: np.ndarray,
    browse: np.ndarray,
    pref_t: np.ndarray,
    state_b: tuple[np.ndarray, np.ndarray, np.ndarray],
    state_f: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    dsl_any: np.ndarray,
    drop_day: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    scalars: np.ndarray,
    session_cdf: np.ndarray,
    bought: tuple[np.ndarray, ...],
    sessions: tuple[np.ndarray, np.ndarray, np.ndarray],
    counts: np.ndarray,
) -> None:
    """Steps 3-6 of one engine day for every person, and the end-of-day decays (in place).

    ``state_b`` = (alive, in_market, intent_cat); ``state_f`` = (lam_mult, eff, fatigue, sup, lift);
    ``tables`` = (durable, keep, parents, child_cat, child_rows) of :class:`CategoryTables` (``child_rows``
    padded with -1); ``scalars`` (float32) = (buy_p, season, complaint_rate, complaint_effect, boost,
    lift_keep, eff_decay, fat_decay, sup_after_purchase). Purchases are appended to ``bought`` = (idx,
    cat, complaint) from ``counts[0]``; sessions to ``sessions`` = (idx, cat, scratch) from ``counts[1]``:
    the day's background sessions first, then the in-market ones (``scratch`` holds them meanwhile).
    """
    # Long on purpose: one compiled pass over the persons of a day; calls out of the kernel would cost its speed.
    alive, in_market, intent_cat = state_b
    lam_mult, eff, fatigue, sup, lift = state_f
    durable, keep, parents, child_cat, child_rows = tables
    buy_p, season, complaint_rate, complaint_effect, boost = scalars[0], scalars[1], scalars[2], scalars[3], scalars[4]
    lift_keep, eff_decay, fat_decay, sup_bought = scalars[5], scalars[6], scalars[7], scalars[8]
    b_idx, b_cat, b_complaint = bought
    s_idx, s_cat, scratch = sessions
    n_cat = pref_t.shape[0]
    n_cdf = session_cdf.shape[0]
    never_1 = 2047 - 1
    nb = counts[0]
    ns = counts[1]
    n_im = 0
    w = np.empty(n_cat, dtype=np.float32)
    for i in range(pref_t.shape[1]):
        live = alive[i] and signup_day[i] <= t
        # 3. drop-out
        if live and core[0, i] < q[i]:
            alive[i] = False
            drop_day[i] = t
            live = False
        if live:
            buying = in_market[i] and core[1, i] < buy_p
            cand = not in_market[i]
            # the category weights before today's purchase (CategoryTables.weights)
            for c in range(n_cat):
                w[c] = pref_t[c, i]
            for d in range(durable.shape[0]):
                w[durable[d]] *= sup[d, i]
            for j in range(child_cat.shape[0]):
                factor = _F1 + lift[child_rows[j, 0], i]
                for r in range(1, child_rows.shape[1]):
                    if child_rows[j, r] >= 0:
                        factor += lift[child_rows[j, r], i]
                w[child_cat[j]] *= factor
            starting = False
            if cand:
                total = w[0]
                for c in range(1, n_cat):
                    total += w[c]
                hazard = lam[i] * lam_mult[i] * season * total + eff[i]
                # 1 - exp(-h) <= h: the exact test is needed only when the uniform is below h (rare)
                u2 = core[2, i]
                if u2 <= hazard * _BOUND:
                    starting = u2 < -np.expm1(-hazard)
            # 4. purchase of an in-market person
            if buying:
                cat = intent_cat[i]
                complaint = core[4, i] < complaint_rate
                b_idx[nb] = i
                b_cat[nb] = cat
                b_complaint[nb] = complaint
                nb += 1
                if complaint:
                    lam_mult[i] *= complaint_effect
                in_market[i] = False
                for d in range(durable.shape[0]):
                    if durable[d] == cat:
                        sup[d, i] = sup_bought
                for r in range(parents.shape[0]):
                    if parents[r] == cat:
                        lift[r, i] = boost
                dsl_any[i] = 0
            # 5. new purchase intent, the category drawn in proportion to the weights
            if starting:
                cum = w[0]
                for c in range(1, n_cat):
                    cum += w[c]
                u = core[5, i] * cum
                below = 0
                acc = w[0]
                for c in range(n_cat):
                    if c > 0:
                        acc += w[c]
                    if acc < u:
                        below += 1
                intent_cat[i] = min(below, n_cat - 1)
                in_market[i] = True
            # 6. browsing
            if not in_market[i]:
                if core[3, i] < browse[i]:
                    s_idx[ns] = i
                    s_cat[ns] = -1
                    ns += 1
            else:
                k = 0
                while k < n_cdf and session_cdf[k] <= core[6, i]:
                    k += 1
                for _ in range(k):
                    scratch[n_im] = i
                    n_im += 1
        # end of day: decays
        eff[i] *= eff_decay
        fatigue[i] *= fat_decay
        for d in range(sup.shape[0]):
            sup[d, i] = (sup[d, i] - _F1) * keep[d] + _F1
        for r in range(lift.shape[0]):
            lift[r, i] *= lift_keep
        if dsl_any[i] < never_1:
            dsl_any[i] += 1
    for j in range(n_im):
        s_idx[ns] = scratch[j]
        s_cat[ns] = intent_cat[scratch[j]]
        ns += 1
    counts[0] = nb
    counts[1] = ns


@numba.njit(cache=True, nogil=True)
def person_time_order(idx: np.ndarray, ts: np.ndarray, n_persons: int) -> np.ndarray:
    """The stable order of rows by (person, timestamp): a counting sort by person, then by time within."""
    counts = np.zeros(n_persons + 1, dtype=np.int64)
    for r in range(idx.shape[0]):
        counts[idx[r] + 1] += 1
    for p in range(n_persons):
        counts[p + 1] += counts[p]
    order = np.empty(idx.shape[0], dtype=np.int64)
    pos = counts[:-1].copy()
    for r in range(idx.shape[0]):
        order[pos[idx[r]]] = r
        pos[idx[r]] += 1
    for p in range(n_persons):
        lo, hi = counts[p], counts[p + 1]
        if hi - lo > 1:
            seg = order[lo:hi]
            order[lo:hi] = seg[np.argsort(ts[seg], kind="mergesort")]
    return order


@numba.njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _hash(seed_mix: np.uint64, gid: int | np.integer, salt: int | np.integer) -> np.uint64:
    h = _mix(np.uint64(gid) + seed_mix)
    return _mix(h ^ (np.uint64(salt) * np.uint64(0x2545F4914F6CDD1D))) >> np.uint64(1)


@numba.njit(cache=True, nogil=True)
def identifier_values(
    seed_mix: np.uint64,
    idx: np.ndarray,
    kind: np.ndarray,
    day: np.ndarray,
    gid: np.ndarray,
    cookie_phase: np.ndarray,
    cookie_life: np.ndarray,
    shop: np.ndarray,
    phone_gid: np.ndarray,
) -> np.ndarray:
    """Numeric part of each row's identifier (see ``identifiers._values``); kinds as in ``events.KINDS``."""
    val = np.zeros(idx.shape[0], dtype=np.uint64)
    for r in range(idx.shape[0]):
        i = idx[r]
        k = kind[r]
        g = gid[i]
        if k == 1:  # cookie: changes every cookie_life days
            epoch = np.int64(np.floor((day[r] + cookie_phase[i]) / cookie_life[i]))
            val[r] = _hash(seed_mix, g, 1000 + epoch)
        elif k == 2:  # app device
            val[r] = _hash(seed_mix, g, 1)
        elif k == 3:  # loyalty card
            val[r] = np.uint64(1_000_000_000 + (g * 2_654_435_761 + 12_345) % 8_000_000_000)
        elif k == 4:  # the shop's default card
            val[r] = np.uint64(9_990_000_001 + shop[i])
        elif k == 5:  # email
            val[r] = _hash(seed_mix, g, 2)
        elif k == 6:  # phone (a household shares one)
            val[r] = np.uint64(10_000_000 + (phone_gid[i] * 7_777_777 + 4_242) % 90_000_000)
    return val


@numba.njit(cache=True, nogil=True)
def first_seen(
    idx: np.ndarray, kind: np.ndarray, val: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (person, kind, value) of rows sorted by person, with the earliest timestamp of each.

    Rows of kind 0 (no identifier) are skipped. Returns (idx, kind, val, ts) in order of first occurrence.
    """
    n = idx.shape[0]
    o_idx = np.empty(n, dtype=idx.dtype)
    o_kind = np.empty(n, dtype=kind.dtype)
    o_val = np.empty(n, dtype=np.uint64)
    o_ts = np.empty(n, dtype=np.int64)
    m = 0
    start = 0  # first output row of the current person
    person = -1
    for r in range(n):
        if kind[r] == 0:
            continue
        if idx[r] != person:
            person = idx[r]
            start = m
        found = -1
        for j in range(start, m):
            if o_val[j] == val[r] and o_kind[j] == kind[r]:
                found = j
                break
        if found < 0:
            o_idx[m] = idx[r]
            o_kind[m] = kind[r]
            o_val[m] = val[r]
            o_ts[m] = ts[r]
            m += 1
        elif ts[r] < o_ts[found]:
            o_ts[found] = ts[r]
    return o_idx[:m], o_kind[:m], o_val[:m], o_ts[:m]


@numba.njit(cache=True, nogil=True)
def identifier_utf8(
    kind: np.ndarray, val: np.ndarray, show: np.ndarray, affixes: np.ndarray, affix_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Arrow string buffers (int32 offsets, utf-8 bytes) of ``prefix[kind] + str(val) + suffix[kind]``.

    Rows where ``show`` is false are empty (the caller marks them null). ``affixes`` holds the utf-8 bytes
    of prefix 0, suffix 0, prefix 1, ...; ``affix_at`` the offsets of those pieces in it.
    """
    n = kind.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int32)
    digits = np.empty(20, dtype=np.uint8)
    for r in range(n):
        size = 0
        if show[r]:
            k = kind[r]
            size = affix_at[2 * k + 2] - affix_at[2 * k]
            v = val[r]
            size += 1
            while v >= np.uint64(10):
                v //= np.uint64(10)
                size += 1
        offsets[r + 1] = offsets[r] + size
    data = np.empty(offsets[n], dtype=np.uint8)
    for r in range(n):
        if not show[r]:
            continue
        k = kind[r]
        pos = offsets[r]
        for j in range(affix_at[2 * k], affix_at[2 * k + 1]):
            data[pos] = affixes[j]
            pos += 1
        v = val[r]
        m = 0
        while True:
            digits[m] = np.uint8(48 + v % np.uint64(10))
            m += 1
            v //= np.uint64(10)
            if v == np.uint64(0):
                break
        for j in range(m - 1, -1, -1):
            data[pos] = digits[j]
            pos += 1
        for j in range(affix_at[2 * k + 1], affix_at[2 * k + 2]):
            data[pos] = affixes[j]
            pos += 1
    return offsets, data


@numba.njit(cache=True, nogil=True)
def contact_candidates(
    signup_day: np.ndarray, consent: np.ndarray, dsl_any: np.ndarray, t: int, contact_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Who the historic policy may contact on day ``t``, and how likely (``engine.contact_probability``).

    Eligible: signed up before ``t`` with consent on at least one channel.
    """
    n = signup_day.shape[0]
    who = np.empty(n, dtype=np.int64)
    p = np.empty(n, dtype=np.float64)
    m = 0
    for i in range(n):
        if signup_day[i] >= t:
            continue
        ok = False
        for c in range(consent.shape[1]):
            if consent[i, c]:
                ok = True
                break
        if ok:
            tilt = 1.6 if dsl_any[i] < 60 else (1.0 if dsl_any[i] < 365 else 0.5)
            who[m] = i
            p[m] = min(max(contact_rate * tilt, 0.0), 0.95)
            m += 1
    return who[:m], p[:m]
