"""The right time: per customer and channel the hour, weekday and day of the campaign period to send.

:class:`SendTimeModel` learns, as of a cutoff, how a customer's engagement is spread over the hours of
the day and the days of the week, and recommends ``send_hour`` (0-23), ``send_weekday`` (1 = Monday) and
``send_on`` (a date within the campaign period) for the channel a decision chose.

**Hour and weekday (small mixture models, fitted by marginal likelihood).** The engagement events
(``visit, open, click, purchase`` for the hour; ``visit`` for the weekday by default: purchases follow the
retailer's weekly buying cycle and opens the days the campaigns were sent, rather than the person's week)
strictly before the cutoff, within ``lookback_days``, are counted per customer into 24 hour bins and 7
weekday bins, in the customer's own time zone (``customers.time_zone``, an IANA name) or UTC. A visit
followed by a purchase of the customer within ``weekday_purchase_gap_days`` (7) does not count for the
weekday: it belongs to a buying episode, whose days follow the retailer's week. Events on the chosen
channel count 1, events on other channels ``other_channel_weight`` (1 by default: on the simulated worlds
one pooled profile per person beat channel-specific ones, see ``benchmarks/RESULTS.md``).

- *Hour.* Each event falls in hour bin ``b`` with probability ``share * N(b | h, sd) + (1 - share) *
  segment[b]``: a share of a person's activity is spread (a wrapped normal) around their best hour ``h``,
  the rest follows their segment's hour profile (circularly smoothed by ``smoothing_hours``), which is also
  the prior of ``h`` on a quarter-hour grid. ``sd`` and ``share`` are the values on a grid that maximise the
  marginal likelihood of all customers' counts (empirical Bayes). ``send_hour`` is the whole hour ``s``
  with the largest posterior mean of ``exp(3 cos(2 pi (s - h) / 24))`` (close to the posterior mode).
- *Weekday.* Each counted visit falls on weekday ``w`` with probability ``share * vm7(w - D; kappa) / 7 +
  (1 - share) * segment[w]``, ``vm7(j; k) = exp(k cos(2 pi j / 7))`` scaled to mean 1 over the week and
  ``D`` the person's best weekday (uniform prior); ``kappa`` and ``share`` maximise the marginal likelihood
  on a grid. ``send_weekday`` is the posterior mode of ``D``.

A customer without any engagement gets the prior's choice: the segment's busiest hour and weekday, a
segment without data the population's: never null.

The segment is the ``customers`` column named by ``segment_by``; ``"auto"`` picks the text column with
2-50 values whose hour profiles carry the most information about the hour of an event (the largest drop
in entropy, at least ``min_information`` bits), or none.

**Day of the campaign period.** ``send_on`` is the day ``d`` of ``[as_of, as_of + period_days)`` (in the
customer's time zone) with the highest ``hazard_d * weekday_d * wait_discount ** d``: ``weekday_d`` is the
posterior mean of ``vm7(weekday(d) - D; weekday_effect_kappa)``, the assumed effect of the send weekday
(1 on average; a flat posterior, as for a customer without weekday evidence, leaves the day to the hazard
and to the discount of waiting), and ``hazard_d =
cycle_d * (1 + browsing_d)`` the customer's purchase hazard relative to today's. ``cycle_d = ((s + d + 1) /
(s + 1)) ** cycle_weight`` with ``s`` the days since their last purchase, capped at their mean gap between
purchases (shrunk to the population's): a Weibull hazard rising until the next purchase is due, flat after
(so a recent buyer with a 30-day cycle waits); ``browsing_d = browsing_weight * visits of the last 3 days *
exp(-d / 2)`` (a customer browsing now goes today). Ties go to the earliest day.

**Rules at the send time.** A day is allowed only if, at its send instant, the customer has fewer than
``max_contacts_7d`` / ``max_contacts_30d`` contacts in the 7 / 30 days before it, the last contact is more
than ``cooldown_days`` back (:class:`~omni_ml.policy.PolicyConfig`, the windows of
:func:`~omni_ml.policy.history_facts`), and the instant is not before ``as_of``; a customer whose cool-down
ends on day 3 gets day 3 or later. Consent is the state as of ``as_of``: a decision on a channel without
consent raises :class:`~omni_ml.exceptions.ConsentError`. Without any allowed day ``send_on`` is null and
``send_time_rule`` says why (``no_allowed_day``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from omni_ml._time import as_utc, before, window
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError
from omni_ml.policy import NO_CONTACT, PolicyConfig, check_consent
from omni_ml.timing._profiles import (
    _DIST,
    _HOUR_CHOICE_KAPPA,
    _HOUR_GRID,
    ALL,
    HOURS,
    WEEKDAYS,
    _at_grid,
    _check_zones,
    _entropy,
    _fit_hour,
    _fit_weekday,
    _hour_loglik,
    _localise,
    _next_purchase,
    _rowwise,
    _smoothed,
    _weekday_loglik,
    _weekday_table,
    _zone_of,
)
from omni_ml.timing._schedule import best_allowed_day, purchase_hazard

__all__ = ["SendTimeModel", "TimingConfig", "weekday_hour_counts"]


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """Settings of :class:`SendTimeModel` (defaults documented in the module docstring).

    Parameters
    ----------
    period_days
        Length of the campaign period ``send_on`` is chosen in.
    lookback_days
        Engagement older than this (before the cutoff) is ignored.
    hour_event_types, weekday_event_types
        Event types counted as engagement for the hour and for the weekday.
    other_channel_weight
        Weight of engagement on other channels than the chosen one (1: one profile of the person for
        every channel; lower values make the profile channel-specific).
    segment_by
        ``customers`` column of the segment, ``"auto"`` or ``None`` (the population only).
    min_information
        Bits of information about the hour a segment column must carry to be chosen by ``"auto"``.
    smoothing_hours
        Standard deviation (in hours) of the circular smoothing of the segment's hour profile (the prior of
        the best hour and the part of the activity that does not follow it).
    cycle_weight, browsing_weight
        Shape - 1 of the rising purchase hazard after a purchase, and the weight of browsing now.
    wait_discount
        Factor per day of waiting applied to a day's score (in ``(0, 1]``; 1: waiting is free).
    weekday_effect_kappa
        Concentration of the assumed effect of the send weekday around the customer's best weekday (the
        ``weekday_d`` term of ``send_on``: ``exp(k cos(2 pi (w - D) / 7))`` scaled to mean 1 over the week,
        averaged over the posterior of ``D``; 0: the weekday does not move the day).
    weekday_purchase_gap_days
        A visit followed by a purchase of the customer within this many days does not count for the
        weekday (it belongs to a buying episode, which follows the retailer's week rather than the
        person's); 0: every visit counts.
    """

    period_days: int = 7
    lookback_days: int = 365
    hour_event_types: tuple[str, ...] = ("visit", "open", "click", "purchase")
    weekday_event_types: tuple[str, ...] = ("visit",)
    other_channel_weight: float = 1.0
    segment_by: str | None = "auto"
    min_information: float = 0.01
    smoothing_hours: float = 1.5
    cycle_weight: float = 1.0
    browsing_weight: float = 0.5
    wait_discount: float = 0.95
    weekday_effect_kappa: float = 0.5
    weekday_purchase_gap_days: float = 7.0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.period_days <= 366:
            problems.append(f"period_days must be within 1..366 (got {self.period_days})")
        if self.lookback_days < 1:
            problems.append(f"lookback_days must be >= 1 (got {self.lookback_days})")
        for name in (
            "other_channel_weight",
            "smoothing_hours",
            "cycle_weight",
            "browsing_weight",
            "min_information",
            "weekday_effect_kappa",
            "weekday_purchase_gap_days",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not 0 < self.wait_discount <= 1:
            problems.append(f"wait_discount must be within (0, 1] (got {self.wait_discount})")
        if problems:
            msg = "TimingConfig: " + "; ".join(problems) + ". Hint: see the TimingConfig docstring for defaults."
            raise ConfigError(msg)


def weekday_hour_counts(
    hist: Histories,
    as_of: dt.datetime,
    *,
    config: TimingConfig | None = None,
    customers: Sequence[str] | pl.Series | None = None,
) -> pl.DataFrame:
    """Engagement events strictly before ``as_of`` (within the lookback) with their local hour and weekday.

    Returns
    -------
    polars.DataFrame
        ``customer_id, channel, event_type, timestamp, local_hour (0-23), local_weekday (1 = Monday),
        for_hour, for_weekday`` (whether the event counts for the hour / weekday profile).
    """
    cfg = config or TimingConfig()
    t = as_utc(as_of)
    types = sorted(set(cfg.hour_event_types) | set(cfg.weekday_event_types))
    lf = hist.events.filter(
        window(pl.lit(t - dt.timedelta(days=cfg.lookback_days)).cast(TIMESTAMP), end=t)
        & pl.col("event_type").is_in(types)
        & pl.col("customer_id").is_not_null()
    )
    if customers is not None:
        lf = lf.filter(pl.col("customer_id").is_in(pl.Series(list(customers), dtype=pl.String).implode()))
    events = lf.select("customer_id", "channel", "event_type", "timestamp").collect()
    zones = _zone_of(hist)
    zone_frame = zones.collect() if zones is not None else None
    if zone_frame is not None:
        _check_zones(zone_frame)
    local = _localise(events, zone_frame)
    for_weekday = pl.col("event_type").is_in(list(cfg.weekday_event_types))
    if cfg.weekday_purchase_gap_days > 0 and local.height:
        local = local.with_columns(_next_purchase(hist, t, local).alias("next_buy"))
        gap = (pl.col("next_buy") - pl.col("timestamp")).dt.total_seconds() / 86_400.0
        for_weekday = for_weekday & ~(gap <= cfg.weekday_purchase_gap_days).fill_null(False)
    return local.select(
        "customer_id",
        "channel",
        "event_type",
        "timestamp",
        pl.col("local").dt.hour().cast(pl.Int8).alias("local_hour"),
        pl.col("local").dt.weekday().cast(pl.Int8).alias("local_weekday"),
        pl.col("event_type").is_in(list(cfg.hour_event_types)).alias("for_hour"),
        for_weekday.alias("for_weekday"),
    )


def _zones_for(hist: Histories, ids: pl.Series) -> pl.Series:
    """Each customer's IANA time zone (``customers.time_zone``, checked), ``UTC`` when unknown."""
    zones_lf = _zone_of(hist)
    zones = zones_lf.collect() if zones_lf is not None else None
    if zones is not None:
        _check_zones(zones)
    return (
        ids.to_frame().join(zones, on="customer_id", how="left", maintain_order="left")["time_zone"].fill_null("UTC")
        if zones is not None
        else pl.Series(["UTC"] * ids.len(), dtype=pl.String)
    )


class SendTimeModel:
    """Send-time recommendations: ``send_hour``, ``send_weekday`` and ``send_on`` per customer (module docstring).

    Parameters
    ----------
    config
        :class:`TimingConfig`; its defaults when ``None``.

    Attributes
    ----------
    segment_by_
        The segment column used (``None``: the population only).
    hour_sd_, hour_share_
        Spread (hours) of a person's activity around their best hour, and the share of it that does so.
    weekday_kappa_, weekday_share_
        Concentration of a person's visits around their best weekday, and the share of visits that does so.
    population_hour_, population_weekday_
        ``{channel: profile}`` of the population (``"__all__"``: every engagement).
    segment_hour_, segment_weekday_
        ``{(segment value, channel): profile}``.
    mean_gap_days_
        The population's mean days between purchases.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> stamps = [dt.datetime(2025, 1, d, 19 + d % 2) for d in range(6, 12)] + [dt.datetime(2025, 1, 7, 8)]
    >>> ev = pl.DataFrame({"customer_id": ["a"] * 6 + ["b"], "timestamp": stamps,
    ...                    "channel": ["email"] * 7, "event_type": ["open"] * 7})
    >>> hist = Histories.from_frames(ev)
    >>> model = SendTimeModel().fit(hist, dt.datetime(2025, 1, 13))
    >>> decisions = pl.DataFrame({"customer_id": ["a", "b"], "best_channel": ["email", "no_contact"]})
    >>> model.recommend(hist, dt.datetime(2025, 1, 13), decisions)["send_hour"].to_list()
    [20, 9]
    """

    def __init__(self, *, config: TimingConfig | None = None) -> None:
        self.config = config

    # ------------------------------------------------------------------ fit

    def fit(self, hist: Histories, as_of: str | dt.date | dt.datetime) -> SendTimeModel:
        """Learn the segment profiles, the hour and weekday mixtures and the purchase gap as of ``as_of``."""
        cfg = self.config or TimingConfig()
        moment = as_utc(as_of)
        events = weekday_hour_counts(hist, moment, config=cfg)
        segments = self._segments(hist)
        self.segment_by_ = self._choose_segment(events, segments, cfg)
        seg = self._segment_of(events.select("customer_id").unique(), segments)
        channels = [ALL, *sorted(events["channel"].drop_nulls().unique().to_list())]
        self.channels_ = tuple(channels)
        self.population_hour_: dict[str, list[float]] = {}
        self.population_weekday_: dict[str, list[float]] = {}
        self.segment_hour_: dict[tuple[str, str], list[float]] = {}
        self.segment_weekday_: dict[tuple[str, str], list[float]] = {}
        hour_counts, week_counts, ids = self._counts(events, ALL, cfg)
        seg_of_id = ids.to_frame().join(seg, on="customer_id", how="left", maintain_order="left")["segment"]
        seg_of_id = seg_of_id.fill_null("")
        for channel in channels:
            hc, wc, _ = (hour_counts, week_counts, ids) if channel == ALL else self._counts(events, channel, cfg, ids)
            pop_h = (hc.sum(axis=0) + 1.0) / (hc.sum() + HOURS)
            pop_w = (wc.sum(axis=0) + 1.0) / (wc.sum() + WEEKDAYS)
            self.population_hour_[channel] = pop_h.tolist()
            self.population_weekday_[channel] = pop_w.tolist()
            for value in sorted(set(seg_of_id.to_list()) - {""}):
                rows = (seg_of_id == value).to_numpy()
                # a segment's profile: its counts plus 50 pseudo-events of the population's
                sh = (hc[rows].sum(axis=0) + 50.0 * pop_h) / (hc[rows].sum() + 50.0)
                sw = (wc[rows].sum(axis=0) + 50.0 * pop_w) / (wc[rows].sum() + 50.0)
                self.segment_hour_[(value, channel)] = sh.tolist()
                self.segment_weekday_[(value, channel)] = sw.tolist()
        prior_w = np.array([self._profile(self.segment_weekday_, self.population_weekday_, s, ALL) for s in seg_of_id])
        self.hour_sd_, self.hour_share_ = (
            _fit_hour(hour_counts, _smoothed(np.asarray(self.population_hour_[ALL]), cfg.smoothing_hours))
            if ids.len()
            else (1.5, 0.7)
        )
        self.weekday_kappa_, self.weekday_share_ = _fit_weekday(week_counts, prior_w) if ids.len() else (1.0, 0.5)
        self.mean_gap_days_ = self._mean_gap(hist, moment)
        self.as_of_ = moment
        return self

    @staticmethod
    def _segments(hist: Histories) -> pl.DataFrame | None:
        if hist.customers is None:
            return None
        return hist.customers.collect()

    def _choose_segment(self, events: pl.DataFrame, customers: pl.DataFrame | None, cfg: TimingConfig) -> str | None:
        if customers is None or cfg.segment_by is None:
            return None
        if cfg.segment_by != "auto":
            if cfg.segment_by not in customers.columns:
                msg = (
                    f"TimingConfig.segment_by: customers has no column {cfg.segment_by!r} "
                    f"(columns: {customers.columns[:8]}). Hint: segment_by='auto' or None."
                )
                raise ConfigError(msg)
            return cfg.segment_by
        hourly = events.filter("for_hour")
        if hourly.height == 0:
            return None
        overall = np.bincount(hourly["local_hour"].to_numpy(), minlength=HOURS).astype(np.float64)
        base = _entropy(overall / overall.sum())
        best, best_gain = None, cfg.min_information
        for name, dtype in customers.schema.items():
            if name in ("customer_id", "time_zone") or dtype not in (pl.String, pl.Categorical, pl.Boolean):
                continue
            values = customers[name].cast(pl.String)
            if not 2 <= values.n_unique() <= 50:
                continue
            joined = hourly.join(
                customers.select("customer_id", values.alias("segment")), on="customer_id", how="left"
            ).with_columns(pl.col("segment").fill_null(""))
            table = joined.group_by("segment", "local_hour").len()
            cond = 0.0
            for _, part in table.group_by("segment"):
                counts = np.bincount(
                    part["local_hour"].to_numpy(), weights=part["len"].to_numpy(), minlength=HOURS
                ).astype(np.float64)
                cond += counts.sum() / overall.sum() * _entropy((counts + 1.0) / (counts.sum() + HOURS))
            gain = base - cond
            if gain > best_gain:
                best, best_gain = name, gain
        return best

    def _segment_of(self, ids: pl.DataFrame, customers: pl.DataFrame | None) -> pl.DataFrame:
        if customers is None or self.segment_by_ is None or self.segment_by_ not in customers.columns:
            return ids.with_columns(pl.lit("").alias("segment"))
        seg = customers.select("customer_id", pl.col(self.segment_by_).cast(pl.String).alias("segment"))
        joined = ids.join(seg, on="customer_id", how="left", maintain_order="left")
        return joined.with_columns(pl.col("segment").fill_null(""))

    @staticmethod
    def _counts(
        events: pl.DataFrame, channel: str, cfg: TimingConfig, ids: pl.Series | None = None
    ) -> tuple[np.ndarray, np.ndarray, pl.Series]:
        """Weighted hour and weekday counts per customer for ``channel`` (``ALL``: every event weighs 1)."""
        if ids is None:
            ids = events["customer_id"].unique().sort()
        weight = (
            pl.lit(1.0)
            if channel == ALL
            else pl.when(pl.col("channel") == channel).then(1.0).otherwise(cfg.other_channel_weight)
        )
        index = ids.to_frame().with_row_index("row")
        # the events' own order: float sums below must not depend on how a parallel join happened to interleave rows
        ev = events.join(index, on="customer_id", how="inner", maintain_order="left").with_columns(weight.alias("w"))
        n = ids.len()
        hour = np.zeros((n, HOURS))
        week = np.zeros((n, WEEKDAYS))
        h = ev.filter("for_hour")
        np.add.at(hour, (h["row"].to_numpy(), h["local_hour"].to_numpy().astype(np.int64)), h["w"].to_numpy())
        w = ev.filter("for_weekday")
        np.add.at(week, (w["row"].to_numpy(), w["local_weekday"].to_numpy().astype(np.int64) - 1), w["w"].to_numpy())
        return hour, week, ids

    @staticmethod
    def _profile(
        segment: dict[tuple[str, str], list[float]], population: dict[str, list[float]], value: str, channel: str
    ) -> list[float]:
        if channel not in population:
            channel = ALL
        return segment.get((value, channel), population[channel])

    @staticmethod
    def _mean_gap(hist: Histories, moment: dt.datetime) -> float:
        buys = (
            hist.events.filter(before(moment) & (pl.col("event_type") == "purchase"))
            .select("customer_id", pl.col("timestamp").dt.date().alias("day"))
            .unique()
            .sort("customer_id", "day")
            .with_columns(pl.col("day").diff().over("customer_id").dt.total_days().alias("gap"))
            .collect()
        )
        gaps = buys["gap"].drop_nulls()
        return float(gaps.mean()) if gaps.len() else 90.0  # type: ignore[arg-type]

    def _check_fitted(self) -> None:
        if not hasattr(self, "hour_sd_"):
            msg = "This SendTimeModel is not fitted yet. Hint: call fit(hist, as_of) first."
            raise ConfigError(msg)

    # ------------------------------------------------------------------ recommend

    def recommend(
        self,
        hist: Histories,
        as_of: str | dt.date | dt.datetime,
        decisions: pl.DataFrame,
        *,
        policy: PolicyConfig | None = None,
        consent: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Send time per decision row, from the customer's history strictly before ``as_of``.

        Parameters
        ----------
        hist
            Resolved histories (every row has a ``customer_id``).
        as_of
            The decision moment (the start of the campaign period).
        decisions
            ``customer_id, best_channel`` (a channel or ``no_contact``), e.g. from
            :func:`omni_ml.policy.decide`.
        policy
            Pressure and cool-down settings checked at each send instant (defaults when ``None``).
        consent
            ``customer_id, consent_<channel>`` as of ``as_of``; when given, a decision on a channel without
            consent raises :class:`~omni_ml.exceptions.ConsentError` (``policy.default_consent`` for missing rows).

        Returns
        -------
        polars.DataFrame
            One row per decision, in order: ``customer_id, send_weekday (1 = Monday), send_hour (0-23),
            send_time_zone, send_on (date; null for no_contact or without an allowed day), send_time_rule
            (best_time / no_allowed_day / no_contact), send_time_source (own / segment / population),
            send_time_events (weighted engagement events behind the hour), send_time_segment,
            send_on_driver (browsing / purchase_cycle / weekday / earliest_allowed), days_to_next_purchase``.
        """
        self._check_fitted()
        cfg = self.config or TimingConfig()
        pol = policy or PolicyConfig()
        moment = as_utc(as_of)
        if consent is not None:
            check_consent(decisions, consent, default=pol.default_consent)
        ids = decisions["customer_id"].cast(pl.String)
        channel = decisions["best_channel"].cast(pl.String)
        n = ids.len()
        events = weekday_hour_counts(hist, moment, config=cfg, customers=ids)
        customers = self._segments(hist)
        seg = self._segment_of(ids.to_frame(), customers)["segment"]
        zone = _zones_for(hist, ids)
        seg_list = seg.to_list()
        hour_post, week_post, week_tie, evidence = self._posteriors(ids, channel, seg_list, events, cfg)
        choice = np.exp(
            _HOUR_CHOICE_KAPPA * np.cos(2 * np.pi * (np.arange(HOURS)[:, None] - _HOUR_GRID[None, :]) / HOURS)
        )
        send_hour = np.argmax(_rowwise(hour_post, choice.T), axis=1) if n else np.zeros(0, dtype=np.int64)
        send_weekday = (np.argmax(week_post + 1e-9 * week_tie, axis=1) + 1) if n else np.zeros(0, dtype=np.int64)
        has_segment = np.array([(s, ALL) in self.segment_hour_ for s in seg_list], dtype=bool)
        source = np.where(evidence > 0, "own", np.where(has_segment, "segment", "population"))

        hazard, driver, due = purchase_hazard(hist, moment, ids, events, cfg, self.mean_gap_days_)
        # expected effect of each weekday (columns: Monday..Sunday) over the posterior of the best weekday
        affinity = _rowwise(week_post, _weekday_table(cfg.weekday_effect_kappa)[_DIST].T)
        plan = best_allowed_day(hist, moment, ids, zone, send_hour, hazard, affinity, cfg, pol)
        contact = (channel != NO_CONTACT).to_numpy()
        day = plan["day"].to_numpy()
        allowed = plan["allowed_any"].to_numpy()
        rule = np.where(~contact, "no_contact", np.where(allowed, "best_time", "no_allowed_day"))
        best_day = day  # -1 when nothing is allowed
        start = plan["local_start"].to_list()
        send_on = [
            (start[i] + dt.timedelta(days=int(best_day[i]))) if contact[i] and allowed[i] else None for i in range(n)
        ]
        first_allowed = plan["first_allowed"].to_numpy()
        drv = np.where(
            (best_day == first_allowed) & (first_allowed > 0),
            "earliest_allowed",
            np.asarray(driver, dtype=object)[np.arange(n), np.maximum(best_day, 0)] if n else driver,
        )
        return pl.DataFrame(
            {
                "customer_id": ids,
                "send_weekday": pl.Series(send_weekday, dtype=pl.Int8),
                "send_hour": pl.Series(send_hour, dtype=pl.Int8),
                "send_time_zone": zone,
                "send_on": pl.Series(send_on, dtype=pl.Date),
                "send_time_rule": pl.Series(rule.tolist(), dtype=pl.String),
                "send_time_source": pl.Series(source.tolist(), dtype=pl.String),
                "send_time_events": evidence,
                "send_time_segment": pl.Series(
                    [None if s == "" or self.segment_by_ is None else f"{self.segment_by_}={s}" for s in seg_list],
                    dtype=pl.String,
                ),
                "send_on_driver": pl.Series(
                    [d if contact[i] and allowed[i] else None for i, d in enumerate(drv.tolist())], dtype=pl.String
                ),
                "days_to_next_purchase": due,
            }
        )

    def _posteriors(
        self, ids: pl.Series, channel: pl.Series, seg_list: list[str], events: pl.DataFrame, cfg: TimingConfig
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row: posterior of the best hour (quarter-hour grid) and weekday, the weekday tie-break, the evidence.

        Rows are grouped by their decision's channel (``no_contact`` and unseen channels use every engagement).
        """
        n = ids.len()
        hour_post = np.zeros((n, _HOUR_GRID.size))
        week_post = np.zeros((n, WEEKDAYS))
        week_tie = np.zeros((n, WEEKDAYS))
        evidence = np.zeros(n)
        chan_list = channel.to_list()
        for ch in sorted(set(chan_list)):
            rows = np.flatnonzero(np.asarray([c == ch for c in chan_list]))
            key = ALL if ch == NO_CONTACT or ch not in self.population_hour_ else ch
            sub_ids = ids.gather(rows)
            hc, wc, _ = self._counts(events, key, cfg, sub_ids)
            ph = np.array([self._profile(self.segment_hour_, self.population_hour_, seg_list[r], key) for r in rows])
            pw = np.array(
                [self._profile(self.segment_weekday_, self.population_weekday_, seg_list[r], key) for r in rows]
            )
            # posterior of the best hour on the quarter-hour grid, per group of rows sharing a profile
            ph = _smoothed(ph, cfg.smoothing_hours)
            _, first, group = np.unique(ph, axis=0, return_index=True, return_inverse=True)
            for g, at in enumerate(first):
                members = np.flatnonzero(group.reshape(-1) == g)
                ll = _hour_loglik(hc[members], ph[at], self.hour_sd_, self.hour_share_) + np.log(_at_grid(ph[at]))
                post_h = np.exp(ll - ll.max(axis=1, keepdims=True))
                hour_post[rows[members]] = post_h / post_h.sum(axis=1, keepdims=True)
            # posterior of the best weekday D (uniform prior); exact ties go to the segment's busiest day
            pw = np.clip(pw, 1e-6, None)
            pw = pw / pw.sum(axis=1, keepdims=True)
            ll = _weekday_loglik(wc, pw, self.weekday_kappa_, self.weekday_share_)
            post = np.exp(ll - ll.max(axis=1, keepdims=True))
            week_post[rows] = post / post.sum(axis=1, keepdims=True)
            week_tie[rows] = pw
            evidence[rows] = hc.sum(axis=1)
        return hour_post, week_post, week_tie, evidence

    def __repr__(self) -> str:
        return f"SendTimeModel(config={self.config!r})"
