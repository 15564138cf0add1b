"""What a business logs about its direct-mail and call-centre contacts: code redemptions and call outcomes.

Email, sms and push leave opens and clicks; direct mail and calls leave nothing in the other tables
but the purchases that follow. Real businesses log two more things, and so does the simulator (as
events, so that a continued world carries them like any other event):

**Mail codes** (event ``redeem`` on channel ``direct_mail`` with the mail's ``campaign_id``, at the
timestamp of the purchase that used it). Every mail piece carries a personal code valid for
``MAIL_CODE_DAYS`` days; a purchase redeems the latest unused valid code of its buyer with probability
``REDEEM_IF_DRIVEN * share + REDEEM_IF_ANYWAY * (1 - share)``, where ``share`` is the part of the
person's purchase intent in the days before the purchase that the mail's contact effect supplied (the
engine's intent hazard ``lam * season + contact effects``, the days weighted by the chance that intent
started then and the purchase followed, category weights at their mean): a code is redeemed by a
share of the buyers the mail moved and by a few who would have bought anyway.

- ``REDEEM_IF_DRIVEN = 0.45``: codes capture a minority of the orders a mailing drives; match-back
  vendors report that on average over half of mail-driven web purchases cannot be traced to their
  source without a match-back (e.g. "Match Back Processing", marketingsolutionsdirectory.com).
- ``REDEEM_IF_ANYWAY = 0.10``: a mailed code is a discount in hand, so some buyers who would have bought
  regardless use it too (an assumption: about a quarter of the redemptions in a year of history come
  from such purchases, so a redemption is evidence, not proof, of an effect).

**Call outcomes** (one event per call-centre contact, a few minutes after it, on channel
``call_center`` with the call's ``campaign_id``): ``no_answer``, ``reached`` (answered, not
interested) or ``interested`` (answered and interested in the offer).

- Answer: probability ``min(0.9, CALL_ANSWER_PER_ENGAGEMENT * engage)`` with ``engage`` the person's
  engagement multiplier of the channel (0.08 for people who ignore calls, 0.35-1 otherwise), so about
  a quarter of calls are answered: the connect rate commonly quoted for outbound calling (about 25 %;
  live-contact rates of B2C telemarketing 10-20 %).
- Interest of an answered call: ``min(0.9, INTERESTED_FLOOR + INTERESTED_SLOPE * a)`` with ``a`` the
  person's true call uplift over the channel's mean effect (responsiveness x call affinity; 0 for the
  35 % with no response at all), and ``INTERESTED_FLOOR`` for people who have gone quiet for good:
  about one answered call in seven ends ``interested``.

The contact's effect on purchases is the engine's, unchanged: an unanswered call still has its effect
(a voicemail, a missed-call notice), so the outcomes are observations correlated with the effect, not a
new mechanism, and existing worlds' purchases and truth are untouched. Every draw comes from its own
random stream (purpose ``OUTCOME_STREAM``), so the other rows of a world are the same as without
these events.
"""

from __future__ import annotations

import numba
import numpy as np

from omni_ml.simulate.config import CHANNEL_EFFECT, CHANNELS, SimulationConfig
from omni_ml.simulate.population import Calendar, Population, rng_for

__all__ = [
    "CALL_ANSWER_PER_ENGAGEMENT",
    "INTERESTED_FLOOR",
    "INTERESTED_SLOPE",
    "MAIL_CODE_DAYS",
    "OUTCOME_EVENT_TYPES",
    "REDEEM_IF_ANYWAY",
    "REDEEM_IF_DRIVEN",
    "call_outcomes",
    "redemptions",
]

OUTCOME_STREAM = 20  # purpose of this module's random streams (population.py uses 0-5)
OUTCOME_EVENT_TYPES: tuple[str, ...] = ("redeem", "no_answer", "reached", "interested")
MAIL_CODE_DAYS = 28
REDEEM_IF_DRIVEN = 0.45
REDEEM_IF_ANYWAY = 0.10
CALL_ANSWER_PER_ENGAGEMENT = 0.45
INTERESTED_FLOOR = 0.03
INTERESTED_SLOPE = 0.15
_INTENT_DAYS = 14  # days before a purchase over which the intent's start is weighed
_DM = CHANNELS.index("direct_mail")
_CC = CHANNELS.index("call_center")


def _fatigue_factors(cfg: SimulationConfig, idx: np.ndarray, day: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The engine's ``1 / (1 + fatigue_strength * F)`` at each contact (``order``: contacts by person, day)."""
    return _fatigue_kernel(idx, day, order, float(np.exp(-1.0 / cfg.fatigue_decay_days)), cfg.fatigue_strength)


@numba.njit(cache=True, nogil=True)
def _fatigue_kernel(idx: np.ndarray, day: np.ndarray, order: np.ndarray, keep: float, strength: float) -> np.ndarray:
    fm = np.ones(idx.shape[0])
    person, last, f = -1, 0, 0.0
    for r in order:
        if idx[r] != person:
            person, f = idx[r], 0.0
        else:
            f *= keep ** (day[r] - last)
        fm[r] = 1.0 / (1.0 + strength * f)
        f += 1.0
        last = day[r]
    return fm


@numba.njit(cache=True, nogil=True)
def _redeem_kernel(
    p_idx: np.ndarray,
    p_day: np.ndarray,
    u: np.ndarray,
    c_start: np.ndarray,
    c_day: np.ndarray,
    c_effect: np.ndarray,
    c_mail: np.ndarray,
    lam: np.ndarray,
    season: np.ndarray,
    buy_p: float,
    eff_keep: float,
    code_days: int,
    intent_days: int,
    driven: float,
    anyway: float,
) -> np.ndarray:
    """Contact row redeemed by each purchase (-1: none); purchases by day, contacts grouped by person."""
    out = np.full(p_idx.shape[0], -1, dtype=np.int64)
    used = np.zeros(c_day.shape[0], dtype=np.bool_)
    for j in range(p_idx.shape[0]):
        i, p = p_idx[j], p_day[j]
        lo, hi = c_start[i], c_start[i + 1]
        mail = -1
        for r in range(lo, hi):  # the latest unused valid code
            if c_day[r] >= p:
                break
            if c_mail[r] and not used[r] and p - c_day[r] <= code_days:
                mail = r
        if mail < 0:
            continue
        num = 0.0
        den = 0.0
        for s in range(max(p - intent_days, 0), p):
            k = (1.0 - buy_p) ** (p - 1 - s)
            e_all = 0.0
            e_mail = 0.0
            for r in range(lo, hi):
                if c_day[r] > s:
                    break
                e = c_effect[r] * eff_keep ** (s - c_day[r])
                e_all += e
                if r == mail:
                    e_mail = e
            num += k * e_mail
            den += k * (lam[i] * season[s] + e_all)
        share = num / den if den > 0 else 0.0
        if u[j] < driven * share + anyway * (1.0 - share):
            out[j] = mail
            used[mail] = True
    return out


def redemptions(
    cfg: SimulationConfig, chunk: int, pop: Population, cal: Calendar, purchases: dict[str, np.ndarray],
    contacts: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Which purchases redeem a mail code: ``(purchase positions, campaign code of the redeemed mail)``.

    Positions index ``purchases`` (the engine's records of both periods, in day order); the draws of a
    chunk come from one stream in that order, so the history's redemptions do not depend on the future
    window (a continued world redeems the codes of its campaign's mail the same way).
    """
    n_c = contacts["idx"].size
    c_idx = contacts["idx"].astype(np.int64)
    c_day = contacts["day"].astype(np.int64)
    c_ch = contacts["ch"].astype(np.int64)
    order = np.lexsort((c_day, c_idx))
    fm = _fatigue_factors(cfg, c_idx, c_day, order)
    effect = pop.uplift[c_idx, c_ch].astype(np.float64) * fm if n_c else np.zeros(0)
    starts = np.searchsorted(c_idx[order], np.arange(pop.n + 1)).astype(np.int64)
    p_idx = purchases["idx"].astype(np.int64)
    p_day = purchases["day"].astype(np.int64)
    u = rng_for(cfg, OUTCOME_STREAM, chunk, 0).random(p_idx.size)
    buy_p = min(cfg.buy_hazard, 0.95)
    which = _redeem_kernel(
        p_idx, p_day, u, starts, c_day[order], effect[order], c_ch[order] == _DM, pop.lam.astype(np.float64),
        cal.season.astype(np.float64), buy_p, float(np.exp(-1.0 / cfg.contact_decay_days)), MAIL_CODE_DAYS,
        _INTENT_DAYS, REDEEM_IF_DRIVEN, REDEEM_IF_ANYWAY,
    )  # fmt: skip
    hit = np.flatnonzero(which >= 0)
    return hit, contacts["campaign"].astype(np.int64)[order][which[hit]]


def call_outcomes(cfg: SimulationConfig, chunk: int, pop: Population, contacts: dict[str, np.ndarray],
                  drop_day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Outcome of each call-centre contact: ``(contact positions, outcome code, seconds after the call)``.

    Outcome codes index ``("no_answer", "reached", "interested")``. Positions index ``contacts`` (the
    engine's records of both periods, in day order); draws come from one stream in that order. A
    person who has gone quiet for good is interested only at ``INTERESTED_FLOOR``.
    """
    calls = np.flatnonzero(contacts["ch"].astype(np.int64) == _CC)
    idx = contacts["idx"].astype(np.int64)[calls]
    alive = contacts["day"].astype(np.int64)[calls] <= drop_day[idx]
    u = rng_for(cfg, OUTCOME_STREAM, chunk, 1).random((3, calls.size))
    p_answer = np.minimum(0.9, CALL_ANSWER_PER_ENGAGEMENT * pop.engage[idx, _CC].astype(np.float64))
    strength = pop.uplift[idx, _CC].astype(np.float64) / CHANNEL_EFFECT["call_center"]
    p_interest = np.minimum(0.9, INTERESTED_FLOOR + np.where(alive, INTERESTED_SLOPE * strength, 0.0))
    reached = u[0] < p_answer
    interested = reached & (u[1] < p_interest)
    delay = (60 + u[2] * 840).astype(np.int64)  # the outcome is logged 1-15 minutes after the call starts
    return calls, reached.astype(np.int64) + interested.astype(np.int64), delay
