"""Which reason family a feature speaks for, what its value is called, and the stable reason codes.

A marketer reads one reason per *family* of behaviour, not one per column: "4 days since the last
purchase" and "4 days since the last store purchase" say the same thing. The families:

=================  ==========================================================================
family             features (of ``omni_ml.features``)
=================  ==========================================================================
``recency``        days since the last purchase / activity (overall and per channel), overdue ratio
``frequency``      purchases per window (overall, per channel), mean days between purchases
``monetary``       revenue per window, average order value
``browsing``       visits, product views, browsing trend, carts
``engagement_<c>`` per contact channel ``c``: contacts, opens, clicks, their rates, last contact
``contact``        contacts on any channel (contact pressure)
``service``        returns, returned amount, service calls
``consent``        consent flags
``tenure``         days since the first activity / purchase, date attributes (e.g. signup date)
``products``       purchases, views and last purchase per product category
``profile``        other customer attributes
=================  ==========================================================================

Features that depend on the cutoff only (the ``time_of_year`` family, or any derived feature whose
only input is ``cutoff``) are *as-of constant*: the same for everyone scored at one moment. They are no
reason about a customer and belong to the baseline (see :mod:`omni_ml.explanation._said`).

A reason code is ``<PREFIX>_<LEVEL>``: the family's prefix (``RECENCY``, ``EMAIL`` for
``engagement_email``, ...) and the level of the family's most telling feature against the training
population (its median at the latest training cutoff): ``SHORT``/``LONG`` for days-since features,
``HIGH``/``LOW``/``TYPICAL`` for amounts and counts, ``ENGAGED``/``UNENGAGED`` for opens and clicks,
``GRANTED``/``NOT_GRANTED`` for consent and ``NONE`` when there is nothing yet (no purchase, no contact).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "REASON_FAMILIES",
    "as_of_constant",
    "family_prefix",
    "reason_codes",
    "reason_family",
    "reason_family_label",
]

#: The reason families, in the order of the docstring table (``engagement`` stands for ``engagement_<c>``).
REASON_FAMILIES = (
    "recency",
    "frequency",
    "monetary",
    "browsing",
    "engagement",
    "contact",
    "service",
    "consent",
    "tenure",
    "products",
    "profile",
)

_ENGAGEMENT = re.compile(
    r"^(?:days_since_last_contact_(?P<a>[a-z0-9_]+)|(?:contacts|opens|clicks|open_rate|click_rate)_(?P<b>[a-z0-9_]+)_\d+d)$"
)
_ANY_CONTACTS = re.compile(r"^contacts_\d+d$")
_DAYS = re.compile(r"^(days_since_|tenure_days$|interpurchase_days$|attr_.*_days$)")
_ENGAGED = re.compile(r"^(opens|clicks|open_rate|click_rate)_")


def _engagement_channel(name: str) -> str | None:
    found = _ENGAGEMENT.match(name)
    if found is None:
        return None
    return found.group("a") or found.group("b")


def reason_family(name: str, family: str) -> str | None:
    """The reason family of feature ``name`` of feature-set family ``family``; ``None`` when as-of constant.

    Examples
    --------
    >>> reason_family("days_since_last_purchase_store", "rfm_channel")
    'recency'
    >>> reason_family("open_rate_email_90d", "engagement")
    'engagement_email'
    >>> reason_family("cutoff_day_of_year", "time_of_year") is None
    True
    """
    if family == "time_of_year":
        return None
    if family in ("engagement", "contact_pressure"):
        if _ANY_CONTACTS.match(name):
            return "contact"
        channel = _engagement_channel(name)
        return f"engagement_{channel}" if channel else "contact"
    if family in ("rfm", "rfm_channel", "interpurchase"):
        if name.startswith("days_since_first"):
            return "tenure"
        if name.startswith("days_since_last") or name == "purchase_overdue_ratio":
            return "recency"
        if name.startswith(("revenue", "avg_order_value")):
            return "monetary"
        return "frequency"
    if family in ("browsing", "cart"):
        return "browsing"
    if family == "returns_service":
        return "service"
    if family == "rfm_category":
        return "products"
    if family == "customer":
        return "tenure" if name.endswith("_days") else "profile"
    if family in ("consent", "tenure"):
        return family
    return family


def reason_family_label(reason_family_name: str) -> str:
    """Words for a reason family: ``engagement_direct_mail`` -> ``direct mail engagement``.

    Examples
    --------
    >>> reason_family_label("engagement_email"), reason_family_label("recency")
    ('email engagement', 'recency')
    """
    if reason_family_name.startswith("engagement_"):
        return reason_family_name.removeprefix("engagement_").replace("_", " ") + " engagement"
    if reason_family_name.startswith("history_"):
        return reason_family_name.removeprefix("history_").replace("_", " ") + " response history"
    return reason_family_name.replace("_", " ")


def family_prefix(reason_family_name: str) -> str:
    """The code prefix of a reason family: ``engagement_direct_mail`` -> ``DIRECT_MAIL``, ``recency`` -> ``RECENCY``.

    Examples
    --------
    >>> family_prefix("engagement_email"), family_prefix("service")
    ('EMAIL', 'SERVICE')
    """
    return reason_family_name.removeprefix("engagement_").upper()


_INDEX: dict[int, tuple[Any, dict[str, Any]]] = {}


def feature_index(feature_set: Any) -> dict[str, Any]:
    """Feature name -> ``Feature`` of a FeatureSet (cached; ``{}`` for a describer without ``features``)."""
    if feature_set is None:
        return {}
    held = _INDEX.get(id(feature_set))
    if held is not None and held[0] is feature_set:
        return held[1]
    index = {f.name: f for f in getattr(feature_set, "features", ())}
    if len(_INDEX) > 32:
        _INDEX.clear()
    _INDEX[id(feature_set)] = (feature_set, index)
    return index


def as_of_constant(feature_set: Any, names: list[str]) -> list[str]:
    """The features among ``names`` that depend on the cutoff only (the same for everyone at one moment)."""
    if feature_set is None:
        return [n for n in names if n.startswith("cutoff_")]
    index = feature_index(feature_set)
    out: list[str] = []
    for name in names:
        feature = index.get(name)
        if feature is None:
            continue
        if feature.family == "time_of_year":
            out.append(name)
            continue
        spec = feature.spec
        if isinstance(spec, pl.Expr):
            roots = set(spec.meta.root_names())
            if roots and roots <= {"cutoff", *out}:
                out.append(name)
    return out


def codes_of(
    names: list[str],
    feature_index: npt.NDArray[np.int64],
    family_index: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    labels: list[str],
    medians: dict[str, float] | None,
    coded: set[str] | None = None,
) -> list[str]:
    """Codes of flattened (feature, family) picks; ``labels[family_index]`` is the reason family.

    Features in ``coded`` hold category codes (no order): their level is ``KNOWN`` or ``NONE``. The
    rules of the module docstring, vectorised.
    """
    if feature_index.size == 0:
        return []
    coded = coded or set()
    med = np.array(
        [np.nan if medians is None or n in coded else medians.get(n, np.nan) for n in names], dtype=np.float64
    )
    is_days = np.array([bool(_DAYS.match(n)) for n in names])
    is_engaged = np.array([bool(_ENGAGED.match(n)) for n in names])
    zero_is_none = np.array([not _DAYS.match(n) and not re.search("ratio|trend|rate", n) for n in names])
    is_consent = np.array([lab == "consent" for lab in labels])
    j, g, v = feature_index, family_index, values
    m = med[j]
    missing = np.isnan(v)
    with np.errstate(invalid="ignore"):
        lvl = np.select(
            [
                is_consent[g] & ~missing & (v >= 1),
                is_consent[g],
                missing,
                zero_is_none[j] & (v == 0),
                np.isnan(m),
                is_days[j] & (v <= m),
                is_days[j],
                is_engaged[j] & (v > m),
                is_engaged[j],
                v > m,
                v < m,
            ],
            list(range(11)),
            default=11,
        )
    words = ["GRANTED", "NOT_GRANTED", "NONE", "NONE", "KNOWN", "SHORT", "LONG", "ENGAGED", "UNENGAGED", "HIGH", "LOW"]
    table = np.array([f"{family_prefix(lab)}_{w}" for lab in labels for w in [*words, "TYPICAL"]], dtype=object)
    return table[g * 12 + lvl].tolist()  # type: ignore[no-any-return]


_MEANING = {
    "SHORT": "{what}: the most telling number of days is at or below the training population's median",
    "LONG": "{what}: the most telling number of days is above the training population's median",
    "HIGH": "the most telling {what} value is above the training population's median",
    "LOW": "the most telling {what} value is below the training population's median",
    "TYPICAL": "the most telling {what} value equals the training population's median",
    "ENGAGED": "opens or clicks above the training population's median",
    "UNENGAGED": "opens or clicks at or below the training population's median",
    "NONE": "nothing recorded yet ({what})",
    "GRANTED": "consent granted",
    "NOT_GRANTED": "consent not granted",
    "KNOWN": "{what} (no reference population stored with the model)",
}
_GENERIC = ("SHORT", "LONG", "HIGH", "LOW", "TYPICAL", "NONE", "KNOWN")
_CHANNEL_CODES = {
    "ENGAGED": "opened or clicked {channel} messages: 'opened 4 of 6 {channel} messages in the last 365 days'",
    "RESPONDED": "bought within the response window after past {channel} contacts: 'bought within 7 days after 2 of 3'",
    "CONTACTABLE": "recently reached on {channel} without fatigue: days since the last {channel} contact",
    "ANSWERED": "answered past calls (call outcomes logged in contacts.outcome)",
    "NO_ANSWER": "did not answer past calls (call outcomes logged in contacts.outcome)",
    "BEHAVIOUR": "a customer behaviour makes a contact on {channel} pay off more than on others",
}


def reason_codes(channels: tuple[str, ...] | list[str] | None = None) -> pl.DataFrame:
    """The table of stable reason codes (``code, kind, family, meaning``) a campaign tool can template.

    Parameters
    ----------
    channels
        Contact channels whose ``<CHANNEL>_*`` codes to list (default: the contract's contactable channels).

    Examples
    --------
    >>> table = reason_codes(["email"])
    >>> "RECENCY_SHORT" in table["code"].to_list(), "EMAIL_ENGAGED" in table["code"].to_list()
    (True, True)
    """
    if channels is None:
        from omni_ml.data import CONTACTABLE_CHANNELS

        channels = CONTACTABLE_CHANNELS
    rows: list[tuple[str, str, str, str]] = []
    families = [f for f in REASON_FAMILIES if f != "engagement"] + [f"engagement_{c}" for c in channels]
    for fam in families:
        what = fam.replace("engagement_", "").replace("_", " ")
        levels: tuple[str, ...] = _GENERIC
        if fam == "consent":
            levels = ("GRANTED", "NOT_GRANTED")
        elif fam.startswith("engagement_"):
            levels = ("ENGAGED", "UNENGAGED", *_GENERIC)
        for lv in levels:
            rows.append((f"{family_prefix(fam)}_{lv}", "propensity", fam, _MEANING[lv].format(what=what)))
    for ch in channels:
        for lv, meaning in _CHANNEL_CODES.items():
            rows.append(
                (f"{ch.upper()}_{lv}", "channel", f"engagement_{ch}", meaning.format(channel=ch.replace("_", " ")))
            )
    rows.append(
        (
            "ANY_RESPONDED",
            "channel",
            "history_all",
            "bought within the response window after past contacts on any channel",
        )
    )
    rows += [
        (
            "COST_LOWER",
            "channel",
            "cost",
            "allowed and cheaper than the next best channel: 'sms is allowed and costs 0.08; "
            "direct mail would cost 0.90'",
        ),
        ("ONLY_CONSENT", "channel", "consent", "the only channel the customer consented to"),
        ("VALUE_HIGHER", "channel", "value", "the highest expected value net of cost among the allowed channels"),
    ]
    return pl.DataFrame(rows, schema=["code", "kind", "family", "meaning"], orient="row").unique(
        "code", keep="first", maintain_order=True
    )
