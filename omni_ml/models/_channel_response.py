"""How each customer responded to past contacts, as of a moment: the channel model's response-history features.

The person-level part of a contact's effect (how much *this* person buys more after being contacted)
shows in the logs only through purchases after past contacts. Raw conversion after contact mixes that
with how often the person buys anyway, so each customer's conversions after contacts are compared
with the conversions their own baseline would give: the purchase rate on days *not* within a response
window after a contact (shrunk towards a weak prior), turned into the chance of a purchase in one
window. Per channel and over all channels this gives the expected conversions, the excess per contact
(shrunk towards zero, i.e. towards the channel's mean effect, which the model learns from the arm) and
the ratio of observed to expected conversions (smoothed).

Time: a contact counts once its response window has closed (``timestamp + window_days < cutoff``), a
purchase once it happened (``timestamp < cutoff``); everything is computed per key with as-of joins, so
a unit's features use only what was known before its own cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from omni_ml._time import before
from omni_ml.data import TIMESTAMP, Histories

__all__ = ["response_history"]

# Weak prior of the baseline purchase rate: PRIOR_PURCHASES purchases in PRIOR_DAYS days.
PRIOR_PURCHASES = 0.5
PRIOR_DAYS = 60.0
# Shrinkage of the excess per contact (pseudo-contacts with zero excess) and of the observed / expected ratio.
EXCESS_SHRINK = 3.0
LIFT_SMOOTHING = 1.0


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
    chans = list(channels)
    window = dt.timedelta(days=window_days)
    frame = keys.select("customer_id", pl.col("cutoff").cast(TIMESTAMP)).with_row_index("__row")
    names = [f"resp_{what}_{c}" for c in [*chans, "all"] for what in ("contacts", "conversions")]
    if hist.contacts is None or frame.height == 0:
        counts = frame.with_columns(
            *[pl.lit(0, dtype=pl.Int32).alias(n) for n in names],
            pl.lit(0.0).alias("__covered"),
            pl.lit(0, dtype=pl.Int32).alias("__base_purchases"),
            pl.lit(None, TIMESTAMP).alias("__first"),
        ).select(*names, "__covered", "__base_purchases", "__first")
    else:
        by_cutoff = frame.sort("cutoff")
        counts_contacts = _contact_counts(hist, by_cutoff, chans, window_days, names)
        counts_purchases = _baseline_purchases(hist.events, hist.contacts, by_cutoff, chans, window)
        counts = (
            counts_contacts.join(counts_purchases, on="__row", how="left")
            .sort("__row")
            .select(*names, "__covered", "__base_purchases", "__first")
        )
    days = (pl.col("__cutoff") - pl.col("__first")).dt.total_seconds() / 86_400.0
    base_days = pl.max_horizontal(days.fill_null(0.0).clip(lower_bound=0.0) - pl.col("__covered"), pl.lit(0.0))
    counts = counts.with_columns(frame["cutoff"].alias("__cutoff")).with_columns(base_days.alias("resp_baseline_days"))
    rate = (pl.col("__base_purchases") + PRIOR_PURCHASES) / (pl.col("resp_baseline_days") + PRIOR_DAYS)
    p_window = 1.0 - (-float(window_days) * rate).exp()
    counts = counts.with_columns((30.0 * rate).alias("resp_baseline_rate"), p_window.alias("__p0"))
    per_channel = []
    for c in [*chans, "all"]:
        n, conv = pl.col(f"resp_contacts_{c}"), pl.col(f"resp_conversions_{c}")
        expected = n * pl.col("__p0")
        per_channel += [
            pl.when(n > 0).then(conv / n).alias(f"resp_rate_{c}"),
            expected.alias(f"resp_expected_{c}"),
            ((conv - expected) / (n + EXCESS_SHRINK)).alias(f"resp_excess_{c}"),
            ((conv + LIFT_SMOOTHING) / (expected + LIFT_SMOOTHING)).alias(f"resp_lift_{c}"),
        ]
    out = counts.with_columns(per_channel).drop("__covered", "__base_purchases", "__first", "__cutoff", "__p0")
    if not baseline:  # the counts and rates only, in their historic order
        return out.select(*names, *[f"resp_rate_{c}" for c in [*chans, "all"]])
    return out


def _contact_counts(
    hist: Histories, by_cutoff: pl.DataFrame, chans: list[str], window_days: int, names: list[str]
) -> pl.DataFrame:
    """Running per-channel contact and conversion counts, and days covered by response windows, per key."""
    from omni_ml.labels import contact_outcomes

    latest = by_cutoff["cutoff"].max()
    outcomes = contact_outcomes(hist, window_days, as_of=latest, incomplete="drop")  # type: ignore[arg-type]
    window = dt.timedelta(days=window_days)
    known = (
        outcomes.filter(pl.col("channel").is_in(chans))
        .select("customer_id", "timestamp", "channel", pl.col("converted").cast(pl.Int32))
        .sort("customer_id", "timestamp")
        .with_columns(
            # days of this contact's window before the next contact's window starts (windows overlap)
            pl.min_horizontal(
                (pl.col("timestamp").shift(-1).over("customer_id") - pl.col("timestamp")).dt.total_seconds() / 86_400.0,
                pl.lit(float(window_days)),
            )
            .fill_null(float(window_days))
            .alias("__cover"),
            (pl.col("timestamp") + window).alias("__known"),
        )
        .sort("customer_id", "__known")
    )
    running = [
        *[
            e
            for c in chans
            for e in (
                (pl.col("channel") == c).cast(pl.Int32).cum_sum().over("customer_id").alias(f"resp_contacts_{c}"),
                ((pl.col("channel") == c).cast(pl.Int32) * pl.col("converted"))
                .cum_sum()
                .over("customer_id")
                .alias(f"resp_conversions_{c}"),
            )
        ],
        pl.col("converted").is_not_null().cast(pl.Int32).cum_sum().over("customer_id").alias("resp_contacts_all"),
        pl.col("converted").cum_sum().over("customer_id").alias("resp_conversions_all"),
        pl.col("__cover").cum_sum().over("customer_id").alias("__covered"),
    ]
    table = known.with_columns(running).select("customer_id", "__known", *names, "__covered").sort("__known")
    joined = by_cutoff.join_asof(
        table,
        left_on="cutoff",
        right_on="__known",
        by="customer_id",
        strategy="backward",
        allow_exact_matches=False,  # an outcome known exactly at the cutoff is not yet known
        check_sortedness=False,
    )
    return joined.select(
        "__row", *[pl.col(n).fill_null(0).cast(pl.Int32) for n in names], pl.col("__covered").fill_null(0.0)
    )


def _baseline_purchases(
    events_all: pl.LazyFrame,
    contacts_all: pl.LazyFrame,
    by_cutoff: pl.DataFrame,
    chans: list[str],
    window: dt.timedelta,
) -> pl.DataFrame:
    """Per key: purchase days before the cutoff outside any response window, and the customer's first event."""
    latest = by_cutoff["cutoff"].max()
    wanted = by_cutoff.select("customer_id").unique()
    events = events_all.filter(before(latest)).join(wanted.lazy(), on="customer_id", how="semi")
    first = events.group_by("customer_id").agg(pl.col("timestamp").min().alias("__first"))
    purchases = (
        events.filter(pl.col("event_type") == "purchase")
        .group_by("customer_id", pl.col("timestamp").dt.truncate("1d").alias("__day"))
        .agg(pl.col("timestamp").min().alias("__ts"))
        .sort("__ts")
        .collect()
    )
    contacts = (
        contacts_all.filter(pl.col("channel").is_in(chans) & before(latest))
        .select("customer_id", pl.col("timestamp").cast(TIMESTAMP).alias("__contact"))
        .sort("__contact")
        .collect()
    )
    base = (
        purchases.with_columns(pl.col("__ts").cast(TIMESTAMP))
        .join_asof(
            contacts,
            left_on="__ts",
            right_on="__contact",
            by="customer_id",
            strategy="backward",
            check_sortedness=False,
        )  # fmt: skip
        .filter(pl.col("__contact").is_null() | (pl.col("__ts") - pl.col("__contact") >= window))
        .sort("customer_id", "__ts")
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("customer_id").alias("__base_purchases"))
        .select("customer_id", "__ts", "__base_purchases")
        .sort("__ts")
    )
    joined = by_cutoff.join_asof(
        base, left_on="cutoff", right_on="__ts", by="customer_id", strategy="backward", check_sortedness=False,
        allow_exact_matches=False,
    )  # fmt: skip
    return joined.join(first.collect(), on="customer_id", how="left").select(
        "__row", pl.col("__base_purchases").fill_null(0), "__first"
    )
