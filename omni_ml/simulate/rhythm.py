"""Daily and weekly rhythms of the simulated persons, and how the send time of a contact changes its effect.

Each person has, per contactable channel, a best hour of the day and one best weekday (all in UTC: the
simulated retailer's customers share one clock and the customers table has no ``time_zone``):

- a *mode* of the day drawn from their age band (morning 07:30, lunch 12:30, evening 19:30, late 21:30;
  young people lean late, older people early), plus ``N(0, 0.75 h)``: the best hour of ``email`` (and of
  their web visits);
- ``sms``, ``push`` and ``call_center`` (the phone in their pocket) share a *mobile* best hour, the e-mail
  hour plus ``N(0, 1 h)`` (their app visits follow it); ``direct_mail`` has no hour (it is read when it
  arrives): its hour curve is flat;
- one best weekday, uniform over Monday..Sunday.

**Visible in the data.** The time of day of visits, online purchases and opens is drawn from the person's
*activity* density: with probability 0.7 around the channel's best hour (``N(h, 1.25 h)``), otherwise
uniform over 07:00-23:00. A store purchase keeps a time within opening hours (09:00-20:00). An open is
the person's next active moment after the send (so e-mails sent at 09:00 are opened in the evening by
evening people). Background browsing is more likely on days near the best weekday: the daily browse
probability is multiplied by ``vm7(w - d; BROWSE_WEEKDAY_KAPPA)`` (below; mean 1 over the week, 1.5: the
best day about 17 times as busy as the worst). The habit of visiting on some days is stronger than
the effect of a message on those days (``kappa_weekday``).

**The effect curve** (recorded in ``truth/world.json`` under ``send_time``). A contact on channel ``c``
sent at hour ``s`` (a real number: 09:30 is 9.5) of weekday ``w`` adds ``uplift * fatigue_factor * m``
to the person's intent hazard with::

    m = c_c * vm(2 pi (s - h_c) / 24; kappa_hour) * vm7(w - d; kappa_weekday)
    vm(x; k)  = exp(k cos x) / I0(k)                          # mean 1 over the day
    vm7(j; k) = exp(k cos(2 pi j / 7)) / mean_j exp(k cos(2 pi j / 7))   # mean 1 over the week

**No free value.** ``c_c`` is the constant that makes the population's mean of ``m`` equal to 1 at the
world's default send time (``DEFAULT_SEND_HOUR`` = 09:00 UTC, the middle of the historic campaigns'
08:00-10:00 window, and the time :func:`~omni_ml.simulate.continue_world` sends a campaign without send
times): it is computed in closed form from the distribution of best hours above (the Fourier series of the
von Mises curve against the wrapped normal mixture), and the weekday factor has mean 1 on any day because
best weekdays are uniform. So a campaign sent to everyone at the default time has, on average, the effect
it had before rhythms existed; the rhythm only redistributes the effect between persons and hours, and
the value of timing is what a sender gains by moving each contact towards its person's curve.
``kappa_hour = kappa_weekday = 0`` switches the effect curve off (``m = 1``).

Random streams: the rhythms come from their own stream (``RHYTHM``) and the times of day from another
(``RHYTHM_TIMES``), so every other draw of a world (population, days, amounts, products) is unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import special

from omni_ml.simulate.config import AGE_BANDS, CHANNELS, SimulationConfig
from omni_ml.simulate.population import Population, rng_for

__all__ = [
    "DEFAULT_SEND_HOUR",
    "Rhythm",
    "curve_description",
    "draw_rhythm",
    "hour_normaliser",
    "weekday_of_day",
]

RHYTHM, RHYTHM_TIMES = 6, 7  # purposes of the random streams (after those of population.py)
DEFAULT_SEND_HOUR = 9.0
AGE_BAND_PROBS: tuple[float, ...] = (0.08, 0.2, 0.2, 0.2, 0.18, 0.14)  # population.draw_population
MODES: tuple[float, ...] = (7.5, 12.5, 19.5, 21.5)  # morning, lunch, evening, late
MODE_NAMES: tuple[str, ...] = ("morning", "lunch", "evening", "late")
# P(mode | age band), rows in the order of AGE_BANDS
MODE_PROBS: tuple[tuple[float, ...], ...] = (
    (0.10, 0.10, 0.25, 0.55),
    (0.15, 0.15, 0.45, 0.25),
    (0.30, 0.20, 0.35, 0.15),
    (0.35, 0.25, 0.30, 0.10),
    (0.45, 0.30, 0.20, 0.05),
    (0.50, 0.35, 0.15, 0.00),
)
EMAIL_SD, MOBILE_SD = 0.75, 1.0  # hours: person around the mode; mobile around e-mail
ACTIVITY_SD, ACTIVITY_FOCUS = 1.25, 0.7  # activity density around the best hour, and its weight
BROWSE_WEEKDAY_KAPPA = 1.5
_MOBILE = ("sms", "push", "call_center")
_FLAT = ("direct_mail",)


def weekday_of_day(epoch_day: int | np.ndarray) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 of days counted from 1970-01-01 (a Thursday)."""
    return (np.asarray(epoch_day, dtype=np.int64) + 3) % 7


def _weekday_table(kappa: float) -> np.ndarray:
    """``vm7(j)`` for ``j = 0..6`` (distance in days from the best weekday), mean exactly 1."""
    raw = np.exp(kappa * np.cos(2 * math.pi * np.arange(7) / 7.0))
    return raw / raw.mean()


def _hour_curve(x: np.ndarray, kappa: float) -> np.ndarray:
    """``vm(2 pi x / 24; kappa)``: mean 1 over a day (``x`` in hours)."""
    if kappa == 0:
        return np.ones_like(np.asarray(x, dtype=np.float64))
    return np.exp(kappa * np.cos(2 * math.pi * np.asarray(x, dtype=np.float64) / 24.0)) / special.i0(kappa)


def hour_normaliser(kappa: float, spread: float, send_hour: float = DEFAULT_SEND_HOUR) -> float:
    """``c`` with ``c * E_pop[vm(send_hour - h)] = 1`` for best hours ``h = mode + N(0, spread^2)``.

    Closed form: ``vm = 1 + 2 sum_n I_n(k)/I_0(k) cos(n x)`` and a wrapped normal of angular sd ``s``
    damps the ``n``-th term by ``exp(-n^2 s^2 / 2)``; modes and age bands are mixed with their weights.
    """
    if kappa == 0:
        return 1.0
    s = 2 * math.pi * spread / 24.0
    mode_weight = np.asarray(AGE_BAND_PROBS) @ np.asarray(MODE_PROBS)
    total = 0.0
    for w, mode in zip(mode_weight, MODES, strict=True):
        phi = 2 * math.pi * (send_hour - mode) / 24.0
        series = 1.0 + 2.0 * sum(
            special.ive(n, kappa) / special.ive(0, kappa) * math.cos(n * phi) * math.exp(-(n**2) * s * s / 2.0)
            for n in range(1, 40)
        )
        total += w * series
    return 1.0 / total


def _channel_spread(channel: str) -> float:
    return math.hypot(EMAIL_SD, MOBILE_SD) if channel in _MOBILE else EMAIL_SD


@dataclasses.dataclass(frozen=True)
class Rhythm:
    """The rhythms of one chunk's persons and the effect curve of the world."""

    mode: np.ndarray  # (n,) index into MODES
    best_hour: np.ndarray  # (n, 5) real-valued best hour per channel (CHANNELS order), in [0, 24)
    best_weekday: np.ndarray  # (n,) Monday = 0
    kappa_hour: float
    kappa_weekday: float
    normaliser: np.ndarray  # (5,) c per channel
    flat: np.ndarray  # (5,) bool: the channel has no hour curve

    def multiplier(self, who: np.ndarray, ch: np.ndarray, sec: np.ndarray, weekday: np.ndarray | int) -> np.ndarray:
        """``m`` of contacts to persons ``who`` on channels ``ch`` at second of day ``sec`` on ``weekday``."""
        hours = np.asarray(sec, dtype=np.float64) / 3600.0
        hour_part = np.where(
            self.flat[ch], 1.0, self.normaliser[ch] * _hour_curve(hours - self.best_hour[who, ch], self.kappa_hour)
        )
        dist = (np.asarray(weekday, dtype=np.int64) - self.best_weekday[who]) % 7
        return (hour_part * _weekday_table(self.kappa_weekday)[dist]).astype(np.float32)

    def weekday_factor(self, weekday: int) -> np.ndarray:
        """(n,) multiplier of the background browsing probability on ``weekday`` (mean 1 over the week)."""
        return _weekday_table(BROWSE_WEEKDAY_KAPPA)[(weekday - self.best_weekday) % 7].astype(np.float32)

    def best_integer_hour(self) -> np.ndarray:
        """(n, 5) the whole hour ``H`` (a send at ``H:00``) with the largest effect: the nearest to the best hour."""
        return np.rint(self.best_hour).astype(np.int64) % 24

    def activity_seconds(self, rng: np.random.Generator, who: np.ndarray, ch: np.ndarray) -> np.ndarray:
        """Second of the day of an activity of persons ``who`` on the rhythm of channels ``ch``."""
        n = who.size
        focus = rng.random(n) < ACTIVITY_FOCUS
        around = self.best_hour[who, ch] + ACTIVITY_SD * rng.standard_normal(n)
        spread = 7.0 + 16.0 * rng.random(n)
        hours = np.where(focus, around, spread) % 24.0
        return np.minimum((hours * 3600.0).astype(np.int64), 86_399)


def draw_rhythm(cfg: SimulationConfig, chunk: int, pop: Population) -> Rhythm:
    """The rhythms of chunk ``chunk``'s persons, from their own stream (other draws are unchanged)."""
    rng = rng_for(cfg, RHYTHM, chunk)
    n = pop.n
    cum = np.cumsum(np.asarray(MODE_PROBS), axis=1)
    u = rng.random(n)
    mode = np.minimum((cum[pop.age_band] < u[:, None]).sum(axis=1), len(MODES) - 1)
    email = np.asarray(MODES)[mode] + EMAIL_SD * rng.standard_normal(n)
    mobile = email + MOBILE_SD * rng.standard_normal(n)
    weekday = rng.integers(0, 7, size=n)
    best = np.stack([mobile if c in _MOBILE else email for c in CHANNELS], axis=1) % 24.0
    kh, kw = float(cfg.send_hour_kappa), float(cfg.send_weekday_kappa)
    norm = np.array([1.0 if c in _FLAT else hour_normaliser(kh, _channel_spread(c)) for c in CHANNELS])
    flat = np.array([c in _FLAT for c in CHANNELS]) | (kh == 0)
    return Rhythm(mode, best, weekday, kh, kw, norm, flat)


# channel of the rhythm followed by activity on each event channel (events.EVENT_CHANNELS order:
# store, web, app, then the contactable channels)
def activity_channel(event_channel: np.ndarray) -> np.ndarray:
    """Index into ``CHANNELS`` of the rhythm an event channel follows (web, store: e-mail; app: mobile)."""
    email, push = CHANNELS.index("email"), CHANNELS.index("push")
    table = np.array([email, email, push, *range(len(CHANNELS))], dtype=np.int64)
    mapped = table[np.asarray(event_channel, dtype=np.int64)]
    dm = CHANNELS.index("direct_mail")
    return np.where(mapped == dm, email, mapped)


def curve_description(cfg: SimulationConfig) -> dict[str, Any]:
    """The effect curve and the rhythm model, for ``truth/world.json``."""
    kh, kw = float(cfg.send_hour_kappa), float(cfg.send_weekday_kappa)
    return {
        "clock": "UTC (the simulated customers have no time_zone)",
        "default_send_hour_utc": DEFAULT_SEND_HOUR,
        "multiplier": (
            "m = c_channel * exp(kappa_hour*cos(2*pi*(s-h)/24))/I0(kappa_hour) * "
            "exp(kappa_weekday*cos(2*pi*(w-d)/7))/mean_j exp(kappa_weekday*cos(2*pi*j/7)); "
            "s = send hour (real), h = best hour of the channel, w = send weekday, d = best weekday; "
            "the contact adds uplift * fatigue_factor * m to the intent hazard"
        ),
        "kappa_hour": kh,
        "kappa_weekday": kw,
        "normaliser": {c: (1.0 if c in _FLAT else hour_normaliser(kh, _channel_spread(c))) for c in CHANNELS},
        "normalisation": "population mean of m is 1 for a send at default_send_hour_utc on any weekday",
        "flat_hour_channels": list(_FLAT),
        "multiplier_at_best_time": {
            c: (1.0 if c in _FLAT else hour_normaliser(kh, _channel_spread(c)) * float(_hour_curve(np.zeros(1), kh)[0]))
            * float(_weekday_table(kw)[0])
            for c in CHANNELS
        },
        "modes_hour": dict(zip(MODE_NAMES, MODES, strict=True)),
        "mode_probabilities_by_age_band": {a: list(p) for a, p in zip(AGE_BANDS, MODE_PROBS, strict=True)},
        "hour_sd": {"email_around_mode": EMAIL_SD, "mobile_around_email": MOBILE_SD, "activity": ACTIVITY_SD},
        "activity_focus": ACTIVITY_FOCUS,
        "browse_weekday_kappa": BROWSE_WEEKDAY_KAPPA,
        "best_weekday": "uniform over Monday..Sunday",
    }
