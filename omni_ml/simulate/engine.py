"""The day-step engine: one chunk of persons lived day by day, vectorised over persons.

State per person: alive (drop-out is for good), in market for a category (browsing rises, a purchase
follows at ``buy_hazard`` per day), days since the last purchase per category (durable goods are not
bought again soon; complements become likely), a complaint factor on the rate, the decaying effect of
recent contacts, a recent-contact count (fatigue) and consent per channel.

One day, in this order (the truth recursion in :mod:`omni_ml.simulate.truth` follows the same order):

1. sign-ups of the day become active (consent records at sign-up);
2. outbound contacts (historic policy on campaign days, or the campaign applied at ``end``) add
   ``uplift * fatigue_factor`` to the person's contact effect; opens, clicks and unsubscribes follow;
3. drop-out with probability ``q``;
4. an in-market person buys with probability ``min(buy_hazard * weekday, 0.95)``;
5. a person not in market (and who did not just buy) starts intent with probability
   ``1 - exp(-(lam * complaint_factor * season * sum_c w_c + contact_effect))`` where ``w_c`` are the
   category weights; the category is drawn proportionally to ``w_c``;
6. browsing sessions; end of day: spontaneous consent changes, decays, days since purchase + 1.

Every per-person decision of a day (drop-out, purchase, intent and its category, complaint, browsing)
uses seven uniforms per person drawn from the day's own stream, and the responses to contacts use a
separate stream, so a campaign changes a person's future only through its effect, and leaves the
days of everyone else's purchases untouched (common random numbers). Row details (times, amounts,
products) are drawn afterwards per chunk and period, and may be re-drawn when the set of rows changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from omni_ml.simulate.config import (
    CHANNELS,
    CLICK_RATE,
    OPEN_RATE,
    POLICY_WEIGHT,
    UNSUBSCRIBE_WEIGHT,
    SimulationConfig,
)
from omni_ml.simulate.kernels import contact_candidates, day_step
from omni_ml.simulate.population import (
    DAY_CORE,
    DAY_MISC,
    NEVER,
    PUSH,
    Calendar,
    CategoryTables,
    Population,
    rng_for,
)
from omni_ml.simulate.rhythm import DEFAULT_SEND_HOUR, draw_rhythm, weekday_of_day

__all__ = ["ChunkRecords", "EndState", "run_chunk"]

_OPEN = np.array([OPEN_RATE[c] for c in CHANNELS], dtype=np.float32)
_CLICK = np.array([CLICK_RATE[c] for c in CHANNELS], dtype=np.float32)
_HAS_OPEN = _OPEN > 0
_POLICY_W = np.array([POLICY_WEIGHT[c] for c in CHANNELS])
_UNSUB_W = np.array([UNSUBSCRIBE_WEIGHT[c] for c in CHANNELS], dtype=np.float32)
_DM = CHANNELS.index("direct_mail")
FUTURE_CAMPAIGN = -1  # campaign code of contacts applied at `end` by continue_world


@dataclasses.dataclass
class EndState:
    """The latent state of every person at the start of day ``n_history`` (the moment ``end``)."""

    alive: np.ndarray
    in_market: np.ndarray
    sup: np.ndarray
    lift: np.ndarray
    lam_mult: np.ndarray
    eff: np.ndarray
    fatigue: np.ndarray
    consent: np.ndarray
    dsl_any: np.ndarray


class _Log:
    """Column-wise record log: lists of arrays per column, concatenated at the end."""

    def __init__(self, *columns: str) -> None:
        self.cols: dict[str, list[np.ndarray]] = {c: [] for c in columns}

    def add(self, **values: np.ndarray | int | float) -> None:
        size = next(np.size(v) for v in values.values() if np.ndim(v) > 0)
        for k, v in values.items():
            self.cols[k].append(np.broadcast_to(np.asarray(v), (size,)) if np.ndim(v) == 0 else np.asarray(v))

    def frame(self) -> dict[str, np.ndarray]:
        return {k: (np.concatenate(v) if v else np.empty(0)) for k, v in self.cols.items()}


@dataclasses.dataclass
class ChunkRecords:
    """Everything a chunk did, as arrays of local person index ``idx`` and ``day`` (both periods)."""

    purchases: dict[str, np.ndarray]
    sessions: dict[str, np.ndarray]
    contacts: dict[str, np.ndarray]
    consents: dict[str, np.ndarray]
    drop_day: np.ndarray
    end_state: EndState


def run_chunk(
    cfg: SimulationConfig,
    chunk: int,
    pop: Population,
    cal: Calendar,
    tables: CategoryTables,
    campaign: np.ndarray | None = None,
    send_day: np.ndarray | None = None,
    send_sec: np.ndarray | None = None,
    campaigns: Mapping[int, np.ndarray] | None = None,
) -> ChunkRecords:
    """Live the chunk's persons through ``[start, end + H)``.

    ``campaign`` (optional, length ``n``): channel index per person contacted in the future window
    (``-1``: none); ``send_day`` the day of that contact counted from ``end`` (default 0) and ``send_sec``
    its second of the day (default ``DEFAULT_SEND_HOUR``). A contact due on a later day is sent only if
    the person is still consented to its channel that day (the sender checks consent at send time).
    ``campaigns`` (optional): day index -> such an array, each sent on its day at the default send time
    (campaign code = the day), for worlds continued over several cycles
    (:func:`omni_ml.simulate.continuation.continue_histories`).
    """
    # Long on purpose: one day loop over ~20 state arrays that live across days, in the order the RNG streams fix.
    n = pop.n
    rhythm = draw_rhythm(cfg, chunk, pop)
    if campaign is not None:
        send_day = np.zeros(n, dtype=np.int64) if send_day is None else np.asarray(send_day, dtype=np.int64)
        if send_sec is None:
            send_sec = np.full(n, int(DEFAULT_SEND_HOUR * 3600), dtype=np.int64)
    alive = pop.alive0 & (pop.signup_day < 0) | (pop.signup_day >= 0)
    in_market = np.zeros(n, dtype=bool)
    intent_cat = np.zeros(n, dtype=np.int32)
    sup, lift = tables.initial(pop.dslp0)
    dsl_any = np.minimum(pop.dslp0.min(axis=0), NEVER).astype(np.int32)
    lam_mult = np.ones(n, dtype=np.float32)
    eff = np.zeros(n, dtype=np.float32)
    fatigue = np.zeros(n, dtype=np.float32)
    consent = pop.consent0 & (pop.signup_day < 0)[:, None]
    drop_day = np.full(n, cal.n_total, dtype=np.int32)
    eff_decay = np.float32(np.exp(-1.0 / cfg.contact_decay_days))
    fat_decay = np.float32(np.exp(-1.0 / cfg.fatigue_decay_days))

    # purchases (idx, cat, complaint, day) and sessions (idx, cat, day), appended by the day kernel
    b_buf: tuple[np.ndarray, ...] = (
        np.empty(n, np.int32),
        np.empty(n, np.int32),
        np.empty(n, np.bool_),
        np.empty(n, np.int32),
    )
    s_buf: tuple[np.ndarray, ...] = (np.empty(16 * n, np.int32), np.empty(16 * n, np.int32), np.empty(16 * n, np.int32))
    scratch = np.empty(13 * n, dtype=np.int32)
    counts = np.zeros(2, dtype=np.int64)
    kernel_tables = tables.kernel_arrays()
    # buy_p and season (set per day), complaint rate and effect, complement boost, its daily factor, the
    # daily factors of contact effect and fatigue, the durable suppression right after a purchase
    scalars = np.array(
        [0, 0, cfg.complaint_rate, cfg.complaint_effect, tables.boost, tables.lift_keep, eff_decay, fat_decay, 0.05],
        dtype=np.float32,
    )
    contacts = _Log("idx", "day", "ch", "p_assign", "campaign", "sec", "opened", "clicked", "unsub", "unsub_sec")
    consents = _Log("idx", "day", "ch", "granted", "sec", "source")

    # Consent at sign-up of existing customers (records dated before start), and the schedule of
    # spontaneous consent changes (geometric waiting times; a grant is five times as likely as a withdrawal).
    rng0 = rng_for(cfg, DAY_MISC, chunk, 1_000_000)
    old = np.flatnonzero(pop.signup_day < 0)
    for c in range(len(CHANNELS)):
        who = old[pop.consent0[old, c]]
        consents.add(idx=who, day=pop.signup_day[who], ch=c, granted=True, sec=pop.signup_sec[who], source=0)
    next_change = np.maximum(pop.signup_day, 0)[:, None] + _waits(rng0, cfg, pop.consent0)
    next_any = next_change.min(axis=1)
    by_signup = np.argsort(pop.signup_day, kind="stable")
    lam_s = cfg.in_market_sessions
    session_pmf = [math.exp(-lam_s) * lam_s**k / math.factorial(k) for k in range(12)]
    session_cdf = np.cumsum(session_pmf).astype(np.float32)
    signup_sorted = pop.signup_day[by_signup]

    end_state: EndState | None = None
    for t in range(cal.n_total):
        if t == cal.n_history:
            end_state = EndState(
                alive.copy(),
                in_market.copy(),
                sup.copy(),
                lift.copy(),
                lam_mult.copy(),
                eff.copy(),
                fatigue.copy(),
                consent.copy(),
                dsl_any.copy(),
            )
        core = rng_for(cfg, DAY_CORE, chunk, t).random((7, n), dtype=np.float32)
        misc = rng_for(cfg, DAY_MISC, chunk, t)
        signing = by_signup[np.searchsorted(signup_sorted, t) : np.searchsorted(signup_sorted, t, side="right")]
        if signing.size:
            consent[signing] = pop.consent0[signing]
            for c in range(len(CHANNELS)):
                who = signing[pop.consent0[signing, c]]
                consents.add(idx=who, day=t, ch=c, granted=True, sec=pop.signup_sec[who], source=0)

        # 2. outbound contacts
        sent: tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray] | None = None
        if cal.campaign[t]:
            sent = _historic_policy(cfg, misc, pop, consent, dsl_any, t)
        elif t >= cal.n_history and campaign is not None and send_day is not None and send_sec is not None:
            who = np.flatnonzero((campaign >= 0) & (send_day == t - cal.n_history))
            if t > cal.n_history:  # consent may have changed since `end`
                who = who[consent[who, campaign[who]]]
            sent = (who, campaign[who].astype(np.int64), np.ones(who.size), FUTURE_CAMPAIGN, send_sec[who])
        elif campaigns is not None and t in campaigns:
            who = np.flatnonzero(campaigns[t] >= 0)
            at = np.full(who.size, int(DEFAULT_SEND_HOUR * 3600), dtype=np.int64)
            sent = (who, campaigns[t][who].astype(np.int64), np.ones(who.size), t, at)
        if sent is not None and sent[0].size:
            who, ch, p_assign, code, sec = sent
            fm = 1.0 / (1.0 + cfg.fatigue_strength * fatigue[who])
            timing = rhythm.multiplier(who, ch, sec, weekday_of_day(cal.epoch_day + t))
            eff[who] += pop.uplift[who, ch] * fm * timing
            reply = rng_for(cfg, DAY_MISC, chunk, t, 1)  # own stream: a campaign leaves `misc` untouched
            u = reply.random((3, who.size), dtype=np.float32)
            eng = pop.engage[who, ch] * fm
            here = alive[who]
            opened = here & _HAS_OPEN[ch] & (u[0] < _OPEN[ch] * eng)
            clicked = here & (opened | ~_HAS_OPEN[ch]) & (u[1] < _CLICK[ch] * eng)
            p_unsub = cfg.unsubscribe_rate * _UNSUB_W[ch] * (1.0 + 0.15 * fatigue[who] ** 2)
            unsub = here & (u[2] < p_unsub)
            unsub_sec = np.minimum(sec + reply.integers(1800, 8 * 3600, size=who.size), 86_399)
            consent[who[unsub], ch[unsub]] = False
            consents.add(idx=who[unsub], day=t, ch=ch[unsub], granted=False, sec=unsub_sec[unsub], source=1)
            fatigue[who] += 1.0
            contacts.add(
                idx=who,
                day=t,
                ch=ch,
                p_assign=p_assign,
                campaign=code,
                sec=sec,
                opened=opened,
                clicked=clicked,
                unsub=unsub,
                unsub_sec=unsub_sec,
            )

        # 3.-6. drop-out, purchases, new intent, browsing; decays at the end of the day (compiled)
        if counts[1] + 13 * n > s_buf[0].size:  # room for a full day (at most 13 sessions per person)
            s_buf = _grow(s_buf, int(counts[1]) + 13 * n)
        if counts[0] + n > b_buf[0].size:
            b_buf = _grow(b_buf, int(counts[0]) + n)
        nb0, ns0 = int(counts[0]), int(counts[1])
        scalars[0] = min(cfg.buy_hazard * cal.weekday[t], 0.95)
        scalars[1] = cal.season[t]
        day_step(
            t,
            core,
            pop.signup_day,
            pop.q,
            pop.lam,
            pop.browse * rhythm.weekday_factor(int(weekday_of_day(cal.epoch_day + t))),
            pop.pref_t,
            (alive, in_market, intent_cat),
            (lam_mult, eff, fatigue, sup, lift),
            dsl_any,
            drop_day,
            kernel_tables,
            scalars,
            session_cdf,
            b_buf[:3],
            (s_buf[0], s_buf[1], scratch),
            counts,
        )
        b_buf[3][nb0 : counts[0]] = t
        s_buf[2][ns0 : counts[1]] = t

        # end of day: spontaneous consent changes (after noon, so after the day's contacts)
        due = np.flatnonzero(next_any == t)
        hit_rows, cols = np.nonzero(next_change[due] == t)
        rows = due[hit_rows]
        if rows.size:
            granted = ~consent[rows, cols]
            allowed = ~granted | (alive[rows] & ((cols != PUSH) | pop.has_app[rows]))
            r, c, g = rows[allowed], cols[allowed], granted[allowed]
            consent[r, c] = g
            consents.add(idx=r, day=t, ch=c, granted=g, sec=misc.integers(12 * 3600, 86_400, size=r.size), source=2)
            next_change[rows, cols] = t + _waits(misc, cfg, consent[rows, cols])
            next_any[due] = next_change[due].min(axis=1)

    if end_state is None:  # pragma: no cover - future_days >= 1 is validated
        msg = "internal: the end state was never reached"
        raise RuntimeError(msg)
    return ChunkRecords(
        purchases={
            "idx": b_buf[0][: counts[0]],
            "day": b_buf[3][: counts[0]],
            "cat": b_buf[1][: counts[0]],
            "complaint": b_buf[2][: counts[0]],
        },
        sessions={"idx": s_buf[0][: counts[1]], "day": s_buf[2][: counts[1]], "cat": s_buf[1][: counts[1]]},
        contacts=contacts.frame(),
        consents=consents.frame(),
        drop_day=drop_day,
        end_state=end_state,
    )


def _grow(buffers: tuple[np.ndarray, ...], need: int) -> tuple[np.ndarray, ...]:
    """The same buffers with room for at least ``need`` rows (contents kept)."""
    size = max(need, 2 * buffers[0].size)
    grown = []
    for a in buffers:
        b = np.empty(size, dtype=a.dtype)
        b[: a.size] = a
        grown.append(b)
    return tuple(grown)


def _waits(rng: np.random.Generator, cfg: SimulationConfig, consented: np.ndarray) -> np.ndarray:
    """Days until the next spontaneous change: grants at ``consent_change_rate``, withdrawals at a fifth."""
    rate = np.where(consented, cfg.consent_change_rate / 5.0, cfg.consent_change_rate)
    if cfg.consent_change_rate <= 0:
        return np.full(consented.shape, 10**8, dtype=np.int64)
    return rng.geometric(np.clip(rate, 1e-9, 1.0)).astype(np.int64)


def contact_probability(cfg: SimulationConfig, dsl_any: np.ndarray) -> np.ndarray:
    """The historic logging policy's P(contacted on a campaign day) of consented persons.

    Recent buyers are targeted more: ``1.6x`` within 60 days of a purchase, ``0.5x`` after a year.
    """
    tilt = np.where(dsl_any < 60, 1.6, np.where(dsl_any < 365, 1.0, 0.5))
    return np.clip(cfg.contact_rate * tilt, 0.0, 0.95)


def channel_probabilities(cfg: SimulationConfig, consent: np.ndarray, spend: np.ndarray) -> np.ndarray:
    """The historic logging policy's P(channel | contacted), ``(n, 5)``.

    Channels are weighted by ``POLICY_WEIGHT`` among consented ones (high spenders get more direct mail);
    with probability ``exploration`` the channel is uniform over consented channels, so every consented
    channel has a positive assignment probability and off-policy evaluation is possible.
    """
    w = _POLICY_W[None, :] * consent
    w[:, _DM] *= np.where(spend > 1.3, 3.0, 1.0)
    n_ok = consent.sum(axis=1, keepdims=True)
    probs = (1.0 - cfg.exploration) * w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    probs += cfg.exploration * consent / np.maximum(n_ok, 1)
    return probs


def _historic_policy(
    cfg: SimulationConfig,
    misc: np.random.Generator,
    pop: Population,
    consent: np.ndarray,
    dsl_any: np.ndarray,
    t: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    eligible, p_eligible = contact_candidates(pop.signup_day, consent, dsl_any, t, cfg.contact_rate)
    u = misc.random((2, eligible.size))
    chosen = u[0] < p_eligible
    who = eligible[chosen]
    p_contact = p_eligible[chosen]
    probs = channel_probabilities(cfg, consent[who], pop.spend[who])
    cum = np.cumsum(probs, axis=1)
    ch = np.minimum((cum < (u[1, chosen] * cum[:, -1])[:, None]).sum(axis=1), len(CHANNELS) - 1)
    p_assign = p_contact * probs[np.arange(who.size), ch]
    sec = misc.integers(8 * 3600, 10 * 3600, size=who.size)
    return who, ch.astype(np.int64), p_assign, t, sec
