"""Exact ground truth as of ``end``: purchase propensity and per-channel conversion with and without contact.

Given a person's latent state at ``end`` (:class:`~omni_ml.simulate.engine.EndState`), the engine's
day is a Markov chain over *out of market*, *in market* and *gone*; until the first purchase nothing
random changes the hazards (days since purchase advance deterministically, contact effects decay), so
the probability of no purchase in the next ``days`` days is a short forward recursion, with no
Monte-Carlo error::

    dropped  += (out + in) * q;  out, in *= 1 - q          # drop-out first
    in       *= 1 - b_t                                    # an in-market purchase ends the path
    in       += out * p_t;  out *= 1 - p_t                 # new intent
    P(no purchase) = dropped + out + in                    (+ 1 for persons already gone)

with ``b_t = min(buy_hazard * weekday_t, 0.95)`` and ``p_t = 1 - exp(-(lam * complaint * season_t *
sum_c w_c(t) + contact_effect_t))``, exactly the engine's order. A contact's effect is scaled by its
send-time multiplier (:mod:`omni_ml.simulate.rhythm`); :func:`timed_purchase_probability` places each
person's contact on its own day of the window.
"""

from __future__ import annotations

import numpy as np

from omni_ml.simulate.config import SimulationConfig
from omni_ml.simulate.engine import EndState
from omni_ml.simulate.population import Calendar, CategoryTables, Population

__all__ = ["purchase_probability", "timed_purchase_probability"]


def purchase_probability(
    cfg: SimulationConfig,
    pop: Population,
    cal: Calendar,
    tables: CategoryTables,
    state: EndState,
    days: int,
    contact_channel: int | None = None,
    contact_multiplier: np.ndarray | None = None,
) -> np.ndarray:
    """P(at least one purchase in ``[end, end + days)``) per person.

    With no outbound contact, or with one contact on channel index ``contact_channel`` at ``end`` whose
    effect is scaled by ``contact_multiplier`` (per person; its send-time multiplier, default 1).
    """
    alive = state.alive.astype(np.float64)
    p_in = alive * state.in_market
    p_out = alive * ~state.in_market
    dropped = np.zeros(pop.n)
    eff = state.eff.astype(np.float32).copy()
    if contact_channel is not None:
        fm = 1.0 / (1.0 + cfg.fatigue_strength * state.fatigue)
        scale = np.float32(1.0) if contact_multiplier is None else contact_multiplier.astype(np.float32)
        eff += pop.uplift[:, contact_channel] * fm * scale
    sup, lift = state.sup.copy(), state.lift.copy()
    eff_decay = np.float32(np.exp(-1.0 / cfg.contact_decay_days))
    q = pop.q.astype(np.float64)
    for t in range(cal.n_history, min(cal.n_history + days, cal.n_total)):
        dropped += (p_out + p_in) * q
        p_out *= 1.0 - q
        p_in *= 1.0 - q
        p_in *= 1.0 - float(np.float32(min(cfg.buy_hazard * cal.weekday[t], 0.95)))
        w = tables.weights(pop.pref_t, sup, lift)
        hazard = pop.lam * state.lam_mult * cal.season[t] * w.sum(axis=0) + eff
        p_start = (-np.expm1(-hazard)).astype(np.float64)
        p_in += p_out * p_start
        p_out *= 1.0 - p_start
        eff *= eff_decay
        tables.advance(sup, lift)
    no_purchase = dropped + p_out + p_in + (1.0 - alive)
    return np.clip(1.0 - no_purchase, 0.0, 1.0)


def timed_purchase_probability(
    cfg: SimulationConfig,
    pop: Population,
    cal: Calendar,
    tables: CategoryTables,
    state: EndState,
    days: int,
    channel: np.ndarray,
    send_day: np.ndarray,
    multiplier: np.ndarray,
) -> np.ndarray:
    """P(at least one purchase in ``[end, end + days)``) with one contact per person on its own day.

    ``channel`` (channel index, ``-1``: no contact), ``send_day`` (days after ``end``) and ``multiplier``
    (the contact's send-time multiplier) per person. The contact is added at the start of its day, after
    that day's drop-out and purchases of the days before, as in the engine; the fatigue it meets is the
    fatigue at ``end`` decayed to that day. (The engine also skips a later contact whose consent was
    withdrawn between ``end`` and its day; spontaneous withdrawals are rare and ignored here.)
    """
    alive = state.alive.astype(np.float64)
    p_in = alive * state.in_market
    p_out = alive * ~state.in_market
    dropped = np.zeros(pop.n)
    eff = state.eff.astype(np.float32).copy()
    contacted = channel >= 0
    ch = np.where(contacted, channel, 0)
    fat_decay = np.exp(-1.0 / cfg.fatigue_decay_days)
    fm = 1.0 / (1.0 + cfg.fatigue_strength * state.fatigue * fat_decay ** np.maximum(send_day, 0))
    add = np.where(contacted, pop.uplift[np.arange(pop.n), ch] * fm * multiplier, 0.0).astype(np.float32)
    sup, lift = state.sup.copy(), state.lift.copy()
    eff_decay = np.float32(np.exp(-1.0 / cfg.contact_decay_days))
    q = pop.q.astype(np.float64)
    for k, t in enumerate(range(cal.n_history, min(cal.n_history + days, cal.n_total))):
        eff += np.where(send_day == k, add, np.float32(0.0))
        dropped += (p_out + p_in) * q
        p_out *= 1.0 - q
        p_in *= 1.0 - q
        p_in *= 1.0 - float(np.float32(min(cfg.buy_hazard * cal.weekday[t], 0.95)))
        w = tables.weights(pop.pref_t, sup, lift)
        hazard = pop.lam * state.lam_mult * cal.season[t] * w.sum(axis=0) + eff
        p_start = (-np.expm1(-hazard)).astype(np.float64)
        p_in += p_out * p_start
        p_out *= 1.0 - p_start
        eff *= eff_decay
        tables.advance(sup, lift)
    no_purchase = dropped + p_out + p_in + (1.0 - alive)
    return np.clip(1.0 - no_purchase, 0.0, 1.0)
