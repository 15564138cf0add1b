"""The simulator's settings: one frozen :class:`SimulationConfig` with documented defaults, and presets.

Fixed facts of the simulated retailer (categories, prices, complements, channel
costs and effects) are module constants below; the knobs a study varies are
fields of :class:`SimulationConfig`. Every rate is per person per day unless
its name says otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

from omni_ml.data import CONTACTABLE_CHANNELS
from omni_ml.exceptions import ConfigError

__all__ = [
    "CATEGORIES",
    "CHANNEL_COST",
    "COMPLEMENTS",
    "PRESETS",
    "SimulationConfig",
    "preset",
]

# (name, Dirichlet prior weight of the category in people's preferences, median price, log-sd of price,
#  replacement days of a durable good (0: not durable), probability a purchase is returned)
CATEGORIES: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("phones", 1.0, 450.0, 0.5, 600.0, 0.06),
    ("accessories", 1.5, 25.0, 0.6, 0.0, 0.04),
    ("tv", 0.6, 650.0, 0.5, 1500.0, 0.05),
    ("audio", 0.8, 120.0, 0.7, 0.0, 0.08),
    ("computers", 0.7, 800.0, 0.4, 900.0, 0.06),
    ("gaming", 0.9, 55.0, 0.5, 0.0, 0.05),
    ("appliances", 0.7, 380.0, 0.6, 1800.0, 0.04),
    ("home", 1.5, 40.0, 0.7, 0.0, 0.10),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c[0] for c in CATEGORIES)
# After a purchase in the first category the second becomes much more likely for a few weeks.
COMPLEMENTS: tuple[tuple[str, str], ...] = (
    ("phones", "accessories"),
    ("computers", "accessories"),
    ("tv", "audio"),
    ("appliances", "home"),
)
PRODUCTS_PER_CATEGORY = 40

CHANNELS: tuple[str, ...] = CONTACTABLE_CHANNELS  # email, sms, push, direct_mail, call_center
CHANNEL_COST: dict[str, float] = {"email": 0.02, "sms": 0.08, "push": 0.01, "direct_mail": 0.90, "call_center": 4.0}
# Extra daily purchase-intent hazard right after a contact, for a person of average responsiveness.
CHANNEL_EFFECT: dict[str, float] = {
    "email": 0.010,
    "sms": 0.020,
    "push": 0.012,
    "direct_mail": 0.022,
    "call_center": 0.060,
}
# Share of people who ignore a channel entirely (zero uplift and no opens there).
CHANNEL_IGNORE: dict[str, float] = {"email": 0.45, "sms": 0.30, "push": 0.40, "direct_mail": 0.30, "call_center": 0.35}
# Probability of consent at sign-up (push needs the app).
CONSENT_AT_SIGNUP: dict[str, float] = {
    "email": 0.75,
    "sms": 0.45,
    "push": 0.60,
    "direct_mail": 0.55,
    "call_center": 0.25,
}
# The historic campaign policy's preference among consented channels (before exploration).
POLICY_WEIGHT: dict[str, float] = {"email": 6.0, "sms": 2.0, "push": 3.0, "direct_mail": 0.6, "call_center": 0.15}
# Open / click probabilities of an engaged person (0 where the channel has no such event).
OPEN_RATE: dict[str, float] = {"email": 0.45, "sms": 0.0, "push": 0.30, "direct_mail": 0.0, "call_center": 0.0}
CLICK_RATE: dict[str, float] = {"email": 0.25, "sms": 0.12, "push": 0.20, "direct_mail": 0.0, "call_center": 0.0}
UNSUBSCRIBE_WEIGHT: dict[str, float] = {"email": 1.0, "sms": 1.5, "push": 1.0, "direct_mail": 0.5, "call_center": 2.0}
# Mon..Sun multipliers of the in-market buying hazard (mean 1).
WEEKDAY: tuple[float, ...] = (0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.0)
REGIONS: tuple[str, ...] = ("capital", "central", "south", "zealand", "north")
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated world; the same config and seed give the same bytes.

    Parameters
    ----------
    n_customers
        Number of persons (each has a crm customer id ``C0000001`` ...).
    start, end
        The history covers ``[start, end)``; the truth is computed as of ``end``.
    future_days
        Length ``H`` of the future window ``[end, end + H)`` of the truth tables.
    seed
        Root of every random stream (numpy ``SeedSequence``; chunk ``k`` and day ``d`` get their own streams).
    chunk_size
        Persons simulated together (memory is bounded by one chunk). Results depend on it, so it is config.
    signup_years_before_start
        Existing customers signed up uniformly in the years before ``start``.
    share_new_customers
        Share of persons who sign up during the history ``[start, end - 14 days)``.
    purchases_per_year
        Mean purchase-intent rate of an active person (before seasonality, preferences and contacts).
    rate_shape
        Gamma shape of the per-person rate: small values make people very different (heterogeneity).
    mean_lifetime_days
        Mean days until a person goes quiet for good (per-person daily drop-out hazard ~ Beta).
    buy_hazard
        Daily probability that an in-market person buys (mean days in market ``1 / buy_hazard``).
    season_amplitude, holiday_boost
        Yearly cosine seasonality (peak in December) and the extra lift from 15 November to 24 December.
    complement_boost, complement_decay_days
        Right after buying a phone, accessories are ``1 + complement_boost`` times as likely, decaying with
        this time constant (see ``COMPLEMENTS``).
    identifier_only_share
        Share of events on channels with a local identifier (cookie, app device, loyalty card, email, phone)
        that carry only that identifier and no customer_id.
    link_rate
        Probability that a new cookie is ever linked to the person by a login.
    cookie_lifetime_days
        Mean lifetime of a browser cookie.
    household_share
        Share of persons living in 2-4 person households that share one phone number.
    default_card_share
        Share of store purchases of persons without a loyalty card scanned with the shop's default card.
    n_shops
        Number of shops (each has one default loyalty card).
    campaign_days_per_week
        Mean number of historic campaign days per week.
    contact_rate
        Mean probability that a consented person is contacted on a campaign day.
    exploration
        Share of the historic policy's channel choice that is uniform over consented channels.
    zero_uplift_share
        Share of persons on whom contacts have no effect at all (sure things and lost causes).
    contact_decay_days
        Time constant of a contact's effect on the intent hazard.
    fatigue_strength
        Response multiplier is ``1 / (1 + fatigue_strength * F)`` with ``F`` the recent contact count
        (decaying with ``fatigue_decay_days``).
    fatigue_decay_days
        Time constant of the recent-contact count.
    unsubscribe_rate
        Base probability that a contact leads to an unsubscribe; grows with ``F ** 2``.
    consent_change_rate
        Daily hazard of a spontaneous consent grant (or a withdrawal at a fifth of it) per channel.
    browse_rate
        Mean background web/app sessions per day of a person not in market.
    in_market_sessions
        Mean extra sessions per day while a person is in market (browsing rises before a purchase).
    complaint_rate, complaint_effect
        Probability that a purchase leads to a service call, and the factor it applies to the person's rate.
    send_hour_kappa, send_weekday_kappa
        Concentration of the send-time effect curve around each person's best hour and best weekday (von
        Mises; 0 switches the curve off). See :mod:`omni_ml.simulate.rhythm`.
    """

    n_customers: int = 30_000
    start: dt.date = dt.date(2024, 1, 1)
    end: dt.date = dt.date(2025, 1, 1)
    future_days: int = 30
    seed: int = 0
    chunk_size: int = 50_000
    signup_years_before_start: float = 3.0
    share_new_customers: float = 0.2
    purchases_per_year: float = 4.0
    rate_shape: float = 0.7
    mean_lifetime_days: float = 1000.0
    buy_hazard: float = 0.35
    season_amplitude: float = 0.2
    holiday_boost: float = 0.6
    complement_boost: float = 8.0
    complement_decay_days: float = 21.0
    identifier_only_share: float = 0.3
    link_rate: float = 0.85
    cookie_lifetime_days: float = 60.0
    household_share: float = 0.04
    default_card_share: float = 0.25
    n_shops: int = 5
    campaign_days_per_week: float = 2.0
    contact_rate: float = 0.12
    exploration: float = 0.2
    zero_uplift_share: float = 0.35
    contact_decay_days: float = 2.5
    fatigue_strength: float = 0.35
    fatigue_decay_days: float = 14.0
    unsubscribe_rate: float = 0.003
    consent_change_rate: float = 0.0008
    browse_rate: float = 0.04
    in_market_sessions: float = 0.7
    complaint_rate: float = 0.03
    complaint_effect: float = 0.6
    send_hour_kappa: float = 0.6
    send_weekday_kappa: float = 0.25

    def __post_init__(self) -> None:
        problems: list[str] = []
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            problems.append(f"seed={self.seed!r} must be an integer in 0..2**63-1")
        for name in ("n_customers", "chunk_size", "n_shops"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.future_days < 7:
            problems.append(f"future_days={self.future_days!r} must be >= 7 (channel truth looks 7 days ahead)")
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
                problems.append(f"{name}={value!r} must be a datetime.date (e.g. 2025-01-01)")
        if not problems and (self.end - self.start).days < 28:
            problems.append(f"end={self.end} must be at least 28 days after start={self.start}")
        shares = (
            "share_new_customers",
            "identifier_only_share",
            "link_rate",
            "household_share",
            "default_card_share",
            "contact_rate",
            "exploration",
            "zero_uplift_share",
            "unsubscribe_rate",
            "complaint_rate",
            "complaint_effect",
            "season_amplitude",
        )
        for name in shares:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name}={v!r} must be within [0, 1]")
        if not 0.0 < self.buy_hazard <= 0.9:
            problems.append(f"buy_hazard={self.buy_hazard!r} must be within (0, 0.9]")
        if self.exploration <= 0.0:
            problems.append("exploration must be > 0 so every consented channel has a positive assignment probability")
        positives = (
            "purchases_per_year",
            "rate_shape",
            "mean_lifetime_days",
            "complement_decay_days",
            "cookie_lifetime_days",
            "contact_decay_days",
            "fatigue_decay_days",
            "signup_years_before_start",
        )
        for name in positives:
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)!r} must be > 0")
        for name in (
            "holiday_boost",
            "complement_boost",
            "fatigue_strength",
            "consent_change_rate",
            "browse_rate",
            "send_hour_kappa",
            "send_weekday_kappa",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)!r} must be >= 0")
        if self.campaign_days_per_week < 0 or self.campaign_days_per_week > 7:
            problems.append(f"campaign_days_per_week={self.campaign_days_per_week!r} must be within [0, 7]")
        if self.in_market_sessions < 0:
            problems.append(f"in_market_sessions={self.in_market_sessions!r} must be >= 0")
        if problems:
            msg = (
                "SimulationConfig: " + "; ".join(problems) + ". Hint: start from preset('small') and change one field."
            )
            raise ConfigError(msg)

    @property
    def history_days(self) -> int:
        """Days in the history ``[start, end)``."""
        return (self.end - self.start).days

    @property
    def total_days(self) -> int:
        """Days simulated: history plus the future window."""
        return self.history_days + self.future_days

    def replace(self, **changes: Any) -> SimulationConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (dates as ISO strings)."""
        out = dataclasses.asdict(self)
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in out.items()}


PresetName = Literal["small", "default", "large"]
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"n_customers": 2_500},
    # two years of history, so training cutoffs include the same season one year earlier (issue 6)
    "default": {"n_customers": 30_000, "start": dt.date(2023, 1, 1)},
    "large": {"n_customers": 1_000_000, "chunk_size": 100_000},
}


def preset(name: PresetName | str, **overrides: Any) -> SimulationConfig:
    """The named preset, with optional field overrides.

    ``small`` (2,500 persons, one year: seconds; tests and notebooks), ``default`` (30,000 persons, two
    years 2023-01-01..2025-01-01; model quality benchmarks), ``large`` (1,000,000 persons, one year;
    scale benchmarks).

    Examples
    --------
    >>> preset("small").n_customers
    2500
    >>> preset("small", seed=3).seed
    3
    """
    if name not in PRESETS:
        msg = f"unknown simulation preset {name!r}; choose one of {sorted(PRESETS)}."
        raise ConfigError(msg)
    return SimulationConfig(**{**PRESETS[name], **overrides})
