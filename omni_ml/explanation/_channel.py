"""Why this channel? Reasons for "contact on c rather than not", from a fitted ChannelModel.

The channel decision rests on the incremental effect ``P(convert | contact on c) - P(convert | no
contact)``. Its reasons are the SHAP values of that *difference* (:func:`explain_difference`): for the
S-learner, the one booster evaluated with the arm set to ``c`` and to ``no_contact``; for the T-learner,
the two arms' boosters on the same rows. They add up exactly to the log-odds effect; the probability
units use the same secant approximation as every other reason (module ``_reasons``), here between
``P(convert | no contact)`` and ``P(convert | contact on c)``, so they add up to the estimated uplift.

Texts come from the channel model's FeatureSet; the model's own columns read:

* the arm itself: ``"contact by sms"`` (the part of the effect no customer feature explains);
* an arm-aligned column (``arm:open_rate_{arm}_90d``): the channel's own feature, e.g. the sms open rate;
* past-response columns of :func:`~omni_ml.models.channel.response_history`, per channel or over all
  channels: counts and rate (``"3 past sms contacts with a known outcome"``, ``"38% of past sms contacts
  followed by a purchase"``) and, compared with the person's own usual purchase rate, the purchases that
  rate alone would give (``"0.42 purchases expected after past email contacts from their usual rate"``),
  the excess (``"+6.5 purchases per 100 past sms contacts above their usual rate"``) and the ratio
  (``"bought 1.9x as often after past sms contacts as usual"``); the usual rate itself
  (``"usually buys 0.8 times a month on days not just after a contact"``) and how long it was observed.

A neutral value (excess 0, ratio 1: no past contact with a known outcome, or exactly as many purchases
as the usual rate gives) reads ``"no sign yet that past sms contacts change how often they buy"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from omni_ml.explanation._reasons import By, FeatureDescriber, Units, _keys_frame, explain_difference

__all__ = ["explain_channel"]

_RESPONSE = re.compile(r"^resp_(contacts|conversions|rate|expected|excess|lift)_(.+)$")
_BASELINE = re.compile(r"^resp_baseline_(rate|days)$")


class _ChannelDescriber:
    """Renders the channel model's booster columns for one channel (see the module docstring)."""

    def __init__(self, feature_set: FeatureDescriber | None, names: dict[str, str], channel: str) -> None:
        self.feature_set = feature_set
        self.names = names
        self.channel = channel

    def _feature(self, name: str) -> str:
        return self.names.get(name, name)

    def render(self, name: str, value: Any) -> str:
        feature = self._feature(name)
        if feature == "arm":
            return f"contact by {self.channel.replace('_', ' ')}"
        found = _BASELINE.match(feature)
        if found:
            return _render_baseline(found.group(1), value)
        found = _RESPONSE.match(feature)
        if found:
            return _render_response(found.group(1), found.group(2), value)
        if self.feature_set is None:
            raise KeyError(feature)
        return self.feature_set.render(feature, value)

    def family_of(self, name: str) -> str:
        feature = self._feature(name)
        if feature == "arm":
            return "channel"
        if _BASELINE.match(feature) or _RESPONSE.match(feature):
            return "response_history"
        if self.feature_set is None:
            raise KeyError(feature)
        return self.feature_set.family_of(feature)

    def describe(self, name: str) -> str:
        feature = self._feature(name)
        if feature == "arm":
            return self.render(name, None)
        found = _BASELINE.match(feature)
        if found:
            return _DESCRIBE_BASELINE[found.group(1)]
        found = _RESPONSE.match(feature)
        if found:
            return _DESCRIBE_RESPONSE[found.group(1)].format(contacts=_contacts(found.group(2)))
        if self.feature_set is None:
            return feature
        return self.feature_set.describe(feature)


_DESCRIBE_RESPONSE = {
    "contacts": "{contacts} whose response window has closed",
    "conversions": "{contacts} followed by a purchase within the response window",
    "rate": "share of {contacts} followed by a purchase",
    "expected": "purchases after {contacts} that the customer's usual purchase rate alone would give",
    "excess": "purchases per 100 {contacts} above the customer's usual rate (shrunk towards 0)",
    "lift": "how many times as often the customer bought after {contacts} as their usual rate gives",
}
_DESCRIBE_BASELINE = {
    "rate": "the customer's usual purchases per month, on days not just after a contact",
    "days": "days of history on which the usual purchase rate was observed (not just after a contact)",
}


def _contacts(channel: str) -> str:
    """``"past sms contacts"``; ``"past contacts on any channel"`` for the ``all`` columns."""
    return "past contacts on any channel" if channel == "all" else f"past {channel.replace('_', ' ')} contacts"


def _number(value: float) -> str:
    """Two significant digits, no trailing zeros: 0.42, 1.9, 12, 130."""
    return np.format_float_positional(value, precision=2, unique=True, fractional=False, trim="-")


def _render_response(what: str, channel: str, value: Any) -> str:
    contacts = _contacts(channel)
    if value is None or value != value:
        return f"no {contacts} with a known outcome"
    v = float(value)
    if what == "rate":
        return f"{v:.0%} of {contacts} followed by a purchase"
    if what == "contacts":
        count = int(v)
        return f"{count} {contacts.replace('contacts', 'contact' if count == 1 else 'contacts')} with a known outcome"
    if what == "conversions":
        count = int(v)
        return f"{count} purchase{'' if count == 1 else 's'} within days of {contacts}"
    if what == "expected":
        if v == 0.0:  # the usual rate is always > 0, so no contacts
            return f"no {contacts} with a known outcome"
        shown = _number(v)
        return f"{shown} purchase{'' if shown == '1' else 's'} expected after {contacts} from their usual rate"
    neutral = f"no sign yet that {contacts} change how often they buy"
    if what == "excess":
        per_100 = 100.0 * v
        if v == 0.0:
            return neutral
        if round(per_100, 1) == 0.0:
            return f"about as many purchases after {contacts} as their usual rate gives"
        if per_100 > 0:
            return f"+{_number(per_100)} purchases per 100 {contacts} above their usual rate"
        return f"{_number(-per_100)} fewer purchases per 100 {contacts} than their usual rate"
    # lift: observed / expected conversions (smoothed)
    if v == 1.0:
        return neutral
    if round(v, 1) == 1.0:
        return f"bought about as often after {contacts} as usual"
    return f"bought {_number(v)}x as often after {contacts} as usual"


def _render_baseline(what: str, value: Any) -> str:
    if value is None or value != value:
        return "no purchase history yet"
    v = float(value)
    if what == "rate":
        return f"usually buys {_number(v)} times a month on days not just after a contact"
    days = int(round(v))
    return f"{days} day{'' if days == 1 else 's'} of history not just after a contact"


def explain_channel(
    model: Any,
    X: Any,
    channels: Sequence[str | None] | pl.Series,
    *,
    feature_set: FeatureDescriber | None = None,
    top_k: int = 3,
    keys: pl.DataFrame | Sequence[Any] | None = None,
    units: Units = "probability",
    by: By = "feature",
) -> pl.DataFrame:
    """Top-k reasons per row for contacting on that row's channel rather than not contacting.

    Parameters
    ----------
    model
        A fitted :class:`~omni_ml.models.ChannelModel`.
    X
        The channel model's input rows (:func:`omni_ml.models.channel.channel_features`).
    channels
        Per row, the channel to explain (e.g. the decision's ``best_channel``); rows with ``None``,
        ``"no_contact"`` or a channel the model did not estimate get null reasons.
    feature_set
        Defaults to ``model.feature_set_``.
    top_k, keys, units, by
        As for :func:`omni_ml.explanation.explain`; ``keys`` defaults to a ``row`` index.

    Returns
    -------
    polars.DataFrame
        One row per row of ``X``, in order: keys, ``channel``, and the columns of
        :func:`explain_difference` (``score_*`` = contacted on the channel, ``base_*`` = not contacted,
        ``reason_1..k`` ...). Over all features, contributions (+ offset) add up to the estimated effect.

    Examples
    --------
    >>> from omni_ml.models import ChannelModel
    >>> rng = np.random.default_rng(0)
    >>> x = pl.DataFrame({"opens": rng.poisson(1.0, 3000).astype(float), "age": rng.normal(40, 9, 3000)})
    >>> arm = rng.choice(["no_contact", "email"], size=3000)
    >>> p = 0.05 + 0.2 * ((arm == "email") & (x["opens"].to_numpy() > 1))
    >>> m = ChannelModel(n_estimators=40, random_state=0).fit(x, arm, (rng.random(3000) < p).astype(int))
    >>> out = explain_channel(m, x.head(2), ["email", "no_contact"], top_k=2)
    >>> out["channel"].to_list(), out["reason_1"][1] is None
    (['email', None], True)
    """
    fs = feature_set if feature_set is not None else getattr(model, "feature_set_", None)
    wanted = pl.Series("channel", list(channels), dtype=pl.String)
    n = wanted.len()
    key_frame = _keys_frame(X, keys, n)
    frame = X if isinstance(X, pl.DataFrame) else pl.DataFrame(np.asarray(X), schema=list(model.feature_names_))
    if frame.height != n:
        msg = f"X has {frame.height:,} rows but channels has {n:,}. Hint: one channel per row of X."
        raise ValueError(msg)
    parts: list[pl.DataFrame] = []
    for channel in model.channels_:
        rows = (wanted == channel).fill_null(False)
        if not rows.any():
            continue
        index = rows.arg_true()
        booster_c, x_c, booster_0, x_0 = model.arm_inputs(frame[index], channel)
        part = explain_difference(
            booster_c,
            x_c,
            x_0,
            model_b=None if booster_0 is booster_c else booster_0,
            feature_set=_ChannelDescriber(fs, model.explanation_names(channel), channel),
            top_k=top_k,
            keys=pl.DataFrame({"__row": index}),
            units=units,
            by=by,
        )
        parts.append(part.with_columns(pl.lit(channel, dtype=pl.String).alias("channel")))
    rows_frame = pl.DataFrame({"__row": pl.int_range(n, eager=True, dtype=pl.UInt32)})
    if parts:
        found = pl.concat(parts, how="vertical_relaxed").with_columns(pl.col("__row").cast(pl.UInt32))
        rows_frame = rows_frame.join(found, on="__row", how="left", maintain_order="left")
    missing = [c for c in ["channel", *(f"reason_{i}" for i in range(1, top_k + 1))] if c not in rows_frame.columns]
    rows_frame = rows_frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in missing)
    body = rows_frame.drop("__row")
    return pl.concat([key_frame, body.select("channel", pl.exclude("channel"))], how="horizontal")
