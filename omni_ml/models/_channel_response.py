"""How each customer responded to past contacts, as of a moment: the channel model's response-history features.

The person-level part of a contact's effect (how much *this* person buys more after being contacted)
shows in the logs only through purchases after past contacts. Raw conversion after contact mixes that
with how often the person buys anyway, so each customer's conversions after contacts are compared
with the conversions their own baseline would give: the purchase rate on days *not* within a response
window after a contact (shrunk towards a weak prior), turned into the chance of a purchase in one
window. Per channel and over all channels this gives the expected conversions, the excess per contact
(shrunk towards zero, i.e. towards the channel's mean effect, which the model learns from the arm) and
the ratio of observed to expected conversions (smoothed).

The counts are hidden feature-engine features (names start with ``__resp_``, :meth:`ResponseSpec.features`)
over two derived sources, so they join any other feature list in one engine plan and the engine's
``timestamp < cutoff`` is their only time rule:

* :class:`ContactOutcomes`: one row per contact on the channels, stamped with the moment its response
  window closes (``contact + window_days``): a contact counts once ``timestamp + window_days < cutoff``;
  ``converted`` (0/1, :func:`omni_ml.labels.contact_outcomes`) and ``overlap``, the whole seconds of its
  window already inside the previous contact's window (so the days inside response windows are
  ``contacts x window - overlaps``: the length of the union of the closed windows);
* :class:`BaselinePurchaseDays`: one row per purchase day outside any response window (no contact on
  the channels in the ``window_days`` before its first purchase), stamped with that first purchase.

:meth:`ResponseSpec.frame` turns the engine's columns into the response-history columns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from omni_ml import _time
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.features import Feature, build_feature_frames, count, days_since_first, total
from omni_ml.features._spec import DerivedSource

__all__ = ["BaselinePurchaseDays", "ContactOutcomes", "ResponseSpec", "response_history"]

# Weak prior of the baseline purchase rate: PRIOR_PURCHASES purchases in PRIOR_DAYS days.
PRIOR_PURCHASES = 0.5
PRIOR_DAYS = 60.0
# Shrinkage of the excess per contact (pseudo-contacts with zero excess) and of the observed / expected ratio.
EXCESS_SHRINK = 3.0
LIFT_SMOOTHING = 1.0
_PREFIX = "__resp_"
_FAMILY = "response"
_SECONDS_PER_DAY = 86_400


@dataclasses.dataclass(frozen=True)
class ContactOutcomes(DerivedSource):
    """Contacts on ``channels`` stamped with the moment their ``window_days`` response window closes.

    Columns: ``customer_id``, ``timestamp`` (contact + window), ``channel``, ``converted`` (Int8 0/1: a
    purchase in ``[contact, contact + window)``), ``overlap`` (Int64 whole seconds of the window that lie
    in the previous contact's window on the channels; 0 for the first).
    """

    channels: tuple[str, ...]
    window_days: int

    @property
    def key(self) -> str:
        """``outcomes(<channels>;<window>d)``."""
        return f"outcomes({','.join(self.channels)};{self.window_days}d)"

    def rows(self, hist: Histories, before: dt.datetime) -> pl.LazyFrame | None:
        """The contacts whose window closed by ``before`` (their outcomes are complete by then)."""
        from omni_ml.labels import contact_outcomes

        if hist.contacts is None:
            return None
        window = dt.timedelta(days=self.window_days)
        window_s = self.window_days * _SECONDS_PER_DAY
        outcomes = contact_outcomes(hist, self.window_days, as_of=before, incomplete="drop")
        gap = (pl.col("timestamp") - pl.col("timestamp").shift(1).over("customer_id")).dt.total_seconds()
        return (
            outcomes.filter(pl.col("channel").is_in(list(self.channels)))
            .select("customer_id", pl.col("timestamp").cast(TIMESTAMP), "channel", pl.col("converted").cast(pl.Int8))
            .sort("customer_id", "timestamp")
            .with_columns(
                (window_s - pl.min_horizontal(gap, pl.lit(window_s))).fill_null(0).cast(pl.Int64).alias("overlap"),
                (pl.col("timestamp") + window).alias("timestamp"),
            )
            .lazy()
        )


@dataclasses.dataclass(frozen=True)
class BaselinePurchaseDays(DerivedSource):
    """Purchase days outside any response window of a contact on ``channels``, stamped with their first purchase.

    A day is outside when no contact on the channels falls in the ``window_days`` up to and including its
    first purchase. Columns: ``customer_id``, ``timestamp``.
    """

    channels: tuple[str, ...]
    window_days: int

    @property
    def key(self) -> str:
        """``baseline(<channels>;<window>d)``."""
        return f"baseline({','.join(self.channels)};{self.window_days}d)"

    def rows(self, hist: Histories, before: dt.datetime) -> pl.LazyFrame | None:
        """The purchase days whose first purchase is before ``before``."""
        purchases = (
            hist.events.filter(_time.before(before) & (pl.col("event_type") == "purchase"))
            .group_by("customer_id", pl.col("timestamp").dt.truncate("1d").alias("__day"))
            .agg(pl.col("timestamp").min().cast(TIMESTAMP))
            .sort("timestamp")
            .collect()
        )
        if hist.contacts is None:
            return purchases.select("customer_id", "timestamp").lazy()
        contacts = (
            hist.contacts.filter(pl.col("channel").is_in(list(self.channels)) & _time.before(before))
            .select("customer_id", pl.col("timestamp").cast(TIMESTAMP).alias("__contact"))
            .sort("__contact")
            .collect()
        )
        window = dt.timedelta(days=self.window_days)
        return (
            purchases.join_asof(
                contacts,
                left_on="timestamp",
                right_on="__contact",
                by="customer_id",
                strategy="backward",
                check_sortedness=False,
            )
            .filter(pl.col("__contact").is_null() | (pl.col("timestamp") - pl.col("__contact") >= window))
            .select("customer_id", "timestamp")
            .lazy()
        )


@dataclasses.dataclass(frozen=True)
class ResponseSpec:
    """What the response-history columns depend on: the channels, the response window and the baseline columns.

    :meth:`features` are the hidden engine features; :meth:`frame` reads them back as the columns of
    :func:`response_history`.
    """

    channels: tuple[str, ...]
    window_days: int = 7
    baseline: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))

    @property
    def names(self) -> list[str]:
        """The columns of :meth:`frame`, in order."""
        groups = [*self.channels, "all"]
        counts = [f"resp_{what}_{c}" for c in groups for what in ("contacts", "conversions")]
        if not self.baseline:  # the counts and rates only, in their historic order
            return [*counts, *[f"resp_rate_{c}" for c in groups]]
        derived = [f"resp_{what}_{c}" for c in groups for what in ("rate", "expected", "excess", "lift")]
        return [*counts, "resp_baseline_days", "resp_baseline_rate", *derived]

    def features(self) -> list[Feature]:
        """The hidden engine features behind the columns (read back with :meth:`frame`)."""
        outcomes = ContactOutcomes(self.channels, self.window_days)
        converted = pl.col("converted") == 1
        specs = []
        for c in self.channels:
            on = pl.col("channel") == c
            specs += [
                (f"contacts_{c}", count(on, source=outcomes), f"Closed {c} contact windows"),
                (f"conversions_{c}", count(on & converted, source=outcomes), f"Converted {c} contact windows"),
            ]
        specs += [
            ("contacts_all", count(source=outcomes), "Closed contact windows"),
            ("conversions_all", count(converted, source=outcomes), "Converted contact windows"),
        ]
        if self.baseline:
            base = BaselinePurchaseDays(self.channels, self.window_days)
            specs += [
                ("overlap", total("overlap", source=outcomes), "Seconds of closed windows inside earlier windows"),
                ("base_purchases", count(source=base), "Purchase days outside response windows"),
                ("first", days_since_first(), "Days since the first event"),
            ]
        return [Feature(f"{_PREFIX}{name}", spec, text, family=_FAMILY) for name, spec, text in specs]

    def frame(self, computed: pl.DataFrame) -> pl.DataFrame:
        """The response-history columns (:attr:`names`) from engine output holding :meth:`features` (row order kept)."""
        groups = [*self.channels, "all"]
        counts = computed.select(
            pl.col(f"{_PREFIX}{what}_{c}").alias(f"resp_{what}_{c}")
            for c in groups
            for what in ("contacts", "conversions")
        )
        if not self.baseline:
            return counts.with_columns(_rate(c) for c in groups)
        # days observed since the first event, minus the days inside the closed response windows (whole seconds)
        window_s = self.window_days * _SECONDS_PER_DAY
        overlap_s = np.rint(computed[f"{_PREFIX}overlap"].to_numpy()).astype(np.int64)
        covered_s = computed[f"{_PREFIX}contacts_all"].to_numpy().astype(np.int64) * window_s - overlap_s
        out = counts.with_columns(
            computed[f"{_PREFIX}base_purchases"].alias("__base_purchases"),
            computed[f"{_PREFIX}first"].alias("__days"),
            pl.Series("__covered", covered_s.astype(np.float64) / float(_SECONDS_PER_DAY)),
        )
        days = pl.col("__days").fill_null(0.0).clip(lower_bound=0.0)
        out = out.with_columns(pl.max_horizontal(days - pl.col("__covered"), pl.lit(0.0)).alias("resp_baseline_days"))
        rate = (pl.col("__base_purchases") + PRIOR_PURCHASES) / (pl.col("resp_baseline_days") + PRIOR_DAYS)
        p_window = 1.0 - (-float(self.window_days) * rate).exp()
        out = out.with_columns((30.0 * rate).alias("resp_baseline_rate"), p_window.alias("__p0"))
        per_channel = []
        for c in groups:
            n, conv = pl.col(f"resp_contacts_{c}"), pl.col(f"resp_conversions_{c}")
            expected = n * pl.col("__p0")
            per_channel += [
                _rate(c),
                expected.alias(f"resp_expected_{c}"),
                ((conv - expected) / (n + EXCESS_SHRINK)).alias(f"resp_excess_{c}"),
                ((conv + LIFT_SMOOTHING) / (expected + LIFT_SMOOTHING)).alias(f"resp_lift_{c}"),
            ]
        return out.with_columns(per_channel).select(self.names)


def _rate(c: str) -> pl.Expr:
    n, conv = pl.col(f"resp_contacts_{c}"), pl.col(f"resp_conversions_{c}")
    return pl.when(n > 0).then(conv / n).alias(f"resp_rate_{c}")


def response_history(
    hist: Histories, keys: pl.DataFrame, channels: Sequence[str], window_days: int = 7, *, baseline: bool = False
) -> pl.DataFrame:
    """How each customer responded to past contacts, as of each key's cutoff (one row per key, in order).

    For every channel ``c`` and for ``all`` channels together (the last three only with ``baseline=True``):

    - ``resp_contacts_<c>``: contacts whose response window closed before the cutoff;
    - ``resp_conversions_<c>``: of those, how many were followed by a purchase within the window;
    - ``resp_rate_<c>``: their ratio (null without contacts);
    - ``resp_expected_<c>``: conversions the person's baseline alone would give (contacts x the chance of
      a purchase in one window at the baseline rate);
    - ``resp_excess_<c>``: ``(conversions - expected) / (contacts + 3)``, the shrunk excess per contact;
    - ``resp_lift_<c>``: ``(conversions + 1) / (expected + 1)``.

    With ``baseline=True`` also ``resp_baseline_rate`` (purchases per 30 days on days outside any
    response window, with a weak prior of 0.5 purchases in 60 days) and ``resp_baseline_days`` (days
    observed outside response windows since the customer's first event). Only contacts with
    ``timestamp + window_days < cutoff`` and purchases with ``timestamp < cutoff`` count.

    The counts are computed by the feature engine (:meth:`ResponseSpec.features`) and read back by
    :meth:`ResponseSpec.frame`; to build them in one plan with other features, add the spec's features to
    the list given to :func:`omni_ml.features.build_feature_frames`.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a"], "timestamp": [dt.datetime(2025, 1, 3)], "amount": [10.0]})
    >>> co = pl.DataFrame({"customer_id": ["a", "a"], "timestamp": [dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 20)],
    ...                    "channel": ["sms", "sms"]})
    >>> keys = pl.DataFrame({"customer_id": ["a", "a"], "cutoff": [dt.datetime(2025, 1, 8), dt.datetime(2025, 1, 9)]})
    >>> response_history(Histories.from_frames(ev, contacts=co), keys, ["sms"]).select(
    ...     "resp_contacts_sms", "resp_conversions_sms").rows()
    [(0, 0), (1, 1)]
    """
    spec = ResponseSpec(tuple(channels), window_days, baseline)
    computed = build_feature_frames(hist, keys.select("customer_id", "cutoff"), spec.features())
    return spec.frame(computed)
