"""Measure a campaign at the customer level against its randomly held-out control group; feed sends back.

**What is compared.** :func:`omni_ml.scoring.score` holds out a random ``control_group`` (a stable
hash of the customer id and the campaign seed) and keeps the model's recommendation of every
held-out customer in ``recommended_channel``. :func:`measure_campaign` compares like with like:
among the customers whose recommendation was a contact (``recommended_channel != "no_contact"``),
*treated* = not held out (the contact was sent) and *control* = held out. Because the hold-out is
random given the recommendation, the difference of the group means is an unbiased estimate of the
**average effect of the recommended contact on the customers the policy chose to contact**
(intention to treat: a treated customer whose message bounced still counts as treated). Customers the
policy would not have contacted are not compared (they were treated identically in both groups).

**Outcomes** are read from the events in ``[as_of, as_of + window_days)`` (``as_of`` of the campaign
file): ``converted`` = at least one purchase, ``revenue`` = the sum of purchase amounts (0 without a
purchase). Every eligible customer gets an outcome; a customer without events in the window did not
buy. Events without a ``customer_id`` are identity-resolved first.

**Statistics**, per segment (overall, per recommended channel, per propensity decile):

* group means, their difference ``diff = mean_treated - mean_control``;
* a Welch interval ``diff +- t_{1-alpha/2, nu} * sqrt(s_t^2/n_t + s_c^2/n_c)`` with the
  Welch-Satterthwaite degrees of freedom ``nu`` (the normal approximation for large groups; unequal
  variances and unequal group sizes are the normal case for a 10 % hold-out) and its two-sided p-value;
* a seeded percentile bootstrap interval (``n_boot`` resamples of each group separately, with
  replacement; the random stream of a segment depends only on ``seed`` and the segment's name, so the
  same inputs give the same bytes);
* ``incremental_conversions = diff_conversion x n_treated`` and ``incremental_revenue =
  diff_revenue x n_treated`` (what the contacts sent added), the cost of those contacts and
  ``incremental_revenue_per_cost`` (revenue return per unit of contact cost; > 1 pays off before margin).

**Balance check** (:attr:`MeasureReport.balance`): standardised mean differences
``(mean_t - mean_c) / sqrt((var_t + var_c) / 2)`` of pre-campaign purchases, revenue and recency (days
since the last purchase, ``pre_days`` when none) in ``[as_of - pre_days, as_of)``, overall and per
channel. ``|SMD| > 0.1`` is flagged: the groups differed before the campaign, so the hold-out was
probably not random (or a segment is tiny).

**The feedback round trip** (section 2 of issue 12)::

    campaign file --(sent)--> feedback_contacts() --> append_contacts(DIR) --> DIR/contacts.parquet
         ^                                                                            |
         |                                                                            v
    omni-ml score <-- CampaignModel.fit (channel model trains on contacts,  <-- load_histories(DIR)
                      off-policy evaluation weights by assignment_probability)

:func:`feedback_contacts` turns the contacts actually sent (the campaign file's ``best_channel``, or
a log of sends) into rows of the contacts table. ``assignment_probability`` is the probability that
the deployed policy *and* the control randomisation chose the logged action for that customer: the
policy is deterministic given the customer's history, and a customer is held out with probability
``control_fraction`` independently of everything else, so a sent contact has probability
``1 - control_fraction``. (Held-out customers got no contact, which the contacts table does not
record; the channel model sees them as not contacted, with probability ``control_fraction``.)
:func:`append_contacts` appends them to a histories directory atomically (write a temporary file,
then rename), refusing to append the same campaign twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omni_ml.data import CONTACTABLE_CHANNELS, TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError

__all__ = [
    "MeasureReport",
    "append_contacts",
    "balance_table",
    "diff_in_means",
    "feedback_contacts",
    "measure_campaign",
    "read_campaign",
    "write_report",
]

NO_CONTACT = "no_contact"
SMD_THRESHOLD = 0.1
_CONTROL_HINT = (
    "Hint: score the campaign with a control group (`omni-ml score ... --control-fraction 0.1`, or "
    "score(..., control_fraction=0.1)) and measure that file."
)
_NEEDED = ("customer_id", "as_of", "recommended_channel", "control_group")


# ----------------------------------------------------------------------------- statistics


def _seed_for(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def diff_in_means(
    treated: np.ndarray,
    control: np.ndarray,
    *,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    name: str = "",
) -> dict[str, float]:
    """Difference of means (treated - control) with a Welch and a seeded percentile-bootstrap interval.

    Parameters
    ----------
    treated, control
        Outcomes per customer (0/1 conversions or revenue).
    alpha
        1 - confidence level of both intervals.
    n_boot
        Bootstrap resamples (0 skips the bootstrap: its bounds are NaN).
    seed, name
        The bootstrap stream is seeded by ``(seed, name)``: each segment has its own reproducible stream.

    Returns
    -------
    dict
        ``mean_treated, mean_control, diff, se, ci_low, ci_high, p_value, boot_low, boot_high``; the
        Welch values are NaN when a group has fewer than 2 customers.

    Examples
    --------
    >>> r = diff_in_means(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0]), n_boot=0)
    >>> round(r["diff"], 3), round(r["ci_low"], 2), round(r["ci_high"], 2)
    (1.5, -0.73, 3.73)
    """
    from scipy import stats

    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    nt, nc = t.size, c.size
    nan = float("nan")
    out = dict.fromkeys(("mean_treated", "mean_control", "diff", "se", "ci_low", "ci_high", "p_value"), nan)
    out.update(boot_low=nan, boot_high=nan)
    if nt == 0 or nc == 0:
        return out
    mt, mc = float(t.mean()), float(c.mean())
    out.update(mean_treated=mt, mean_control=mc, diff=mt - mc)
    if nt >= 2 and nc >= 2:
        vt, vc = float(t.var(ddof=1)) / nt, float(c.var(ddof=1)) / nc
        se = float(np.sqrt(vt + vc))
        out["se"] = se
        if se > 0:
            # Welch-Satterthwaite degrees of freedom on variances scaled to at most 1: the squares of
            # tiny (subnormal) variances would underflow to 0 and divide by zero.
            a, b = vt / max(vt, vc), vc / max(vt, vc)
            df = (a + b) ** 2 / (a**2 / (nt - 1) + b**2 / (nc - 1))
            q = float(stats.t.ppf(1 - alpha / 2, df))
            out.update(
                ci_low=mt - mc - q * se,
                ci_high=mt - mc + q * se,
                p_value=float(2 * stats.t.sf(abs(mt - mc) / se, df)),
            )
        else:
            out.update(ci_low=mt - mc, ci_high=mt - mc, p_value=1.0 if mt == mc else 0.0)
    if n_boot > 0:
        rng = _seed_for(seed, name)
        bt = _boot_means(rng, t, n_boot)
        bc = _boot_means(rng, c, n_boot)
        lo, hi = np.quantile(bt - bc, [alpha / 2, 1 - alpha / 2])
        out.update(boot_low=float(lo), boot_high=float(hi))
    return out


def _boot_means(rng: np.random.Generator, values: np.ndarray, n_boot: int) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement, drawn in batches of at most ~4M indices (bounded memory)."""
    n = values.size
    per = max(1, 4_000_000 // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, per):
        stop = min(n_boot, start + per)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def _smd(t: np.ndarray, c: np.ndarray) -> float:
    if t.size < 2 or c.size < 2:
        return float("nan")
    pooled = np.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2)
    diff = float(t.mean() - c.mean())
    if pooled == 0:
        return 0.0 if diff == 0 else float("inf")
    return diff / float(pooled)


# ----------------------------------------------------------------------------- inputs


def read_campaign(campaign: str | Path | pl.DataFrame) -> pl.DataFrame:
    """The campaign file (parquet or csv) as a frame, checked for the columns measurement needs.

    Raises
    ------
    SchemaError
        Missing file or columns other than ``control_group``.
    DataInsufficientError
        No ``control_group`` column (the campaign was scored without a control group).
    """
    if isinstance(campaign, pl.DataFrame):
        frame = campaign
        where = "campaign"
    else:
        path = Path(campaign)
        where = f"campaign file {str(path)!r}"
        if not path.is_file():
            msg = f"{where}: no such file. Hint: write one with `omni-ml score DIR --model M --as-of D --out FILE`."
            raise SchemaError(msg)
        frame = pl.read_csv(path, try_parse_dates=True) if path.suffix == ".csv" else pl.read_parquet(path)
    if "control_group" not in frame.columns:
        msg = (
            f"{where}: no control_group column ({frame.height:,} rows), so there is nothing to compare. {_CONTROL_HINT}"
        )
        raise DataInsufficientError(msg)
    if "recommended_channel" not in frame.columns and "best_channel" in frame.columns:
        frame = frame.with_columns(pl.col("best_channel").alias("recommended_channel"))
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        msg = (
            f"{where}: missing column(s) {missing}; found {frame.columns}. Hint: measure the file omni-ml score wrote."
        )
        raise SchemaError(msg)
    if frame["customer_id"].null_count():
        msg = f"{where}: {frame['customer_id'].null_count():,} rows have no customer_id. Hint: one row per customer."
        raise SchemaError(msg)
    dup = frame["customer_id"].is_duplicated()
    if dup.any():
        example = frame.filter(dup)["customer_id"][0]
        msg = f"{where}: {int(dup.sum()):,} rows repeat a customer_id (e.g. {example!r}). Hint: one row per customer."
        raise SchemaError(msg)
    as_of = frame["as_of"]
    if as_of.dtype == pl.String:
        as_of = as_of.str.to_datetime(time_zone="UTC")
    frame = frame.with_columns(as_of.cast(TIMESTAMP).alias("as_of"), pl.col("control_group").cast(pl.Boolean))
    if frame["as_of"].n_unique() != 1 or frame["as_of"].null_count():
        values = frame["as_of"].unique().head(3).to_list()
        msg = f"{where}: as_of must be one moment for the whole file (found e.g. {values}). Hint: measure one file."
        raise SchemaError(msg)
    return frame


def _as_histories(hist: Histories | str | Path) -> Histories:
    if isinstance(hist, Histories):
        return hist
    from omni_ml.data import load_histories

    # No as_of here: the outcomes are after the campaign date by design.
    return load_histories(hist)


def _with_customer_ids(hist: Histories, end: dt.datetime) -> Histories:
    missing = hist.events.filter(pl.col("customer_id").is_null()).select(pl.len()).collect().item()
    if missing == 0:
        return hist
    from omni_ml.identity import resolve_identities

    return resolve_identities(hist, as_of=end)


def _outcomes(hist: Histories, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    ts = pl.col("timestamp")
    return (
        hist.events.filter((ts >= start) & (ts < end) & (pl.col("event_type") == "purchase"))
        .group_by("customer_id")
        .agg(
            pl.len().cast(pl.Int64).alias("purchases"),
            pl.col("amount").fill_null(0.0).sum().cast(pl.Float64).alias("revenue"),
        )
        .collect()
    )


def _pre_period(hist: Histories, as_of: dt.datetime, pre_days: int) -> pl.DataFrame:
    ts = pl.col("timestamp")
    start = as_of - dt.timedelta(days=pre_days)
    days = (pl.lit(as_of).cast(TIMESTAMP) - ts).dt.total_seconds() / 86_400.0
    return (
        hist.events.filter((ts >= start) & (ts < as_of) & (pl.col("event_type") == "purchase"))
        .group_by("customer_id")
        .agg(
            pl.len().cast(pl.Float64).alias("pre_purchases"),
            pl.col("amount").fill_null(0.0).sum().cast(pl.Float64).alias("pre_revenue"),
            days.min().alias("pre_recency_days"),
        )
        .collect()
    )


def _contact_costs(hist: Histories, costs: Mapping[str, float] | None) -> dict[str, float]:
    from omni_ml.policy import PolicyConfig, costs_from_contacts

    out = {c: PolicyConfig().cost(c) for c in CONTACTABLE_CHANNELS}
    out.update(costs_from_contacts(hist))
    out.update({str(k): float(v) for k, v in (costs or {}).items()})
    return out


# ----------------------------------------------------------------------------- report


@dataclasses.dataclass(frozen=True)
class MeasureReport:
    """The result of :func:`measure_campaign`.

    Attributes
    ----------
    table
        One row per segment: ``segment_type`` (``overall``, ``channel``, ``decile``), ``segment``,
        ``n_treated, n_control``, and for ``conversion`` and ``revenue``: ``<o>_treated, <o>_control,
        <o>_diff, <o>_se, <o>_ci_low, <o>_ci_high, <o>_p_value, <o>_boot_low, <o>_boot_high``; then
        ``incremental_conversions, incremental_revenue, contact_cost, incremental_revenue_per_cost``.
    balance
        ``segment_type, segment, covariate, mean_treated, mean_control, smd, smd_2se, flagged``.
    customers
        The per-customer frame the table was computed from (eligible customers only):
        ``customer_id, group (treated|control), channel, decile, converted, revenue, cost, pre_*``.
    as_of, window_days, alpha, n_boot, seed
        What was measured and how.
    run_id
        The MLflow run the metrics were logged to (``None`` when not logged).
    """

    table: pl.DataFrame
    balance: pl.DataFrame
    customers: pl.DataFrame
    as_of: dt.datetime
    window_days: int
    alpha: float
    n_boot: int
    seed: int
    run_id: str | None = None

    @property
    def overall(self) -> dict[str, Any]:
        """The overall row of :attr:`table` as a dict."""
        return self.table.filter(pl.col("segment_type") == "overall").row(0, named=True)

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: ``measure.<segment_type>.<segment>.<column>`` for the numeric columns."""
        out: dict[str, float] = {}
        for row in self.table.iter_rows(named=True):
            prefix = f"measure.{row['segment_type']}" + (
                "" if row["segment_type"] == "overall" else f".{row['segment']}"
            )
            for key, value in row.items():
                if key in ("segment_type", "segment") or value is None:
                    continue
                v = float(value)
                if np.isfinite(v):
                    out[f"{prefix}.{key}"] = v
        flagged = self.balance.filter(pl.col("segment_type") == "overall")
        if flagged.height:
            out["measure.balance.max_abs_smd"] = float(flagged["smd"].abs().max())  # type: ignore[arg-type]
        return out

    def plot(self) -> Any:
        """A matplotlib figure: incremental conversion and revenue per customer with Welch intervals, per segment."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * self.table.height + 1.6), sharey=True)
        labels = [
            "overall" if st == "overall" else f"{st} {s}"
            for st, s in zip(self.table["segment_type"], self.table["segment"], strict=True)
        ]
        y = np.arange(len(labels))[::-1]
        for ax, outcome, title in zip(
            axes,
            ("conversion", "revenue"),
            ("incremental conversion rate", "incremental revenue per customer"),
            strict=True,
        ):
            d = self.table[f"{outcome}_diff"].to_numpy()
            lo = self.table[f"{outcome}_ci_low"].to_numpy()
            hi = self.table[f"{outcome}_ci_high"].to_numpy()
            ax.errorbar(d, y, xerr=[d - lo, hi - d], fmt="o", capsize=3)
            ax.axvline(0.0, color="grey", lw=1)
            ax.set_title(title)
            ax.set_yticks(y, labels)
        fig.suptitle(
            f"treated vs control, {self.window_days} days from {self.as_of:%Y-%m-%d} ({1 - self.alpha:.0%} Welch CI)"
        )
        fig.tight_layout()
        return fig

    def to_text(self) -> str:
        """A short summary for the terminal."""
        o = self.overall
        lines = [
            f"campaign as of {self.as_of:%Y-%m-%d}, window {self.window_days} days: "
            f"{o['n_treated']:,} treated vs {o['n_control']:,} control (recommended a contact)",
            f"  conversion {o['conversion_treated']:.4f} vs {o['conversion_control']:.4f}: "
            f"{o['conversion_diff']:+.4f} [{o['conversion_ci_low']:+.4f}, {o['conversion_ci_high']:+.4f}] "
            f"(bootstrap [{o['conversion_boot_low']:+.4f}, {o['conversion_boot_high']:+.4f}])",
            f"  revenue/customer {o['revenue_treated']:.2f} vs {o['revenue_control']:.2f}: "
            f"{o['revenue_diff']:+.2f} [{o['revenue_ci_low']:+.2f}, {o['revenue_ci_high']:+.2f}]",
            f"  incremental revenue {o['incremental_revenue']:,.0f} for contact cost {o['contact_cost']:,.0f}: "
            f"{o['incremental_revenue_per_cost']:.2f} per unit of cost",
        ]
        flagged = self.balance.filter(pl.col("flagged"))
        if flagged.height:
            worst = flagged.sort(pl.col("smd").abs(), descending=True).row(0, named=True)
            lines.append(
                f"  BALANCE WARNING: {flagged.height} covariate/segment pairs with |SMD| > {SMD_THRESHOLD} "
                f"(worst {worst['covariate']} in {worst['segment_type']} {worst['segment']}: {worst['smd']:+.2f}; "
                f"chance level 2 SE there {worst['smd_2se']:.2f})"
            )
        else:
            lines.append(f"  balance: all pre-campaign |SMD| <= {SMD_THRESHOLD}")
        if self.run_id:
            lines.append(f"  logged to MLflow run {self.run_id}")
        return "\n".join(lines)


_COVARIATES = ("pre_purchases", "pre_revenue", "pre_recency_days")


def balance_table(customers: pl.DataFrame) -> pl.DataFrame:
    """Standardised mean differences of the pre-campaign covariates, overall and per channel.

    ``customers`` needs ``group`` (``treated``/``control``), ``channel`` and the ``pre_*`` columns (as in
    :attr:`MeasureReport.customers`). ``flagged`` is ``|smd| > 0.1``. ``smd_2se`` = ``2 sqrt(1/n_t + 1/n_c)``
    is the size an SMD reaches by chance about 5% of the time under random assignment: a flag in a segment
    whose ``smd_2se`` exceeds 0.1 (small groups) may be chance; one in a large group is a real imbalance.
    """
    rows = []
    segments: list[tuple[str, str, pl.DataFrame]] = [("overall", "all", customers)]
    segments += [("channel", str(k[0]), g) for k, g in customers.group_by("channel", maintain_order=True)]
    for seg_type, seg, frame in sorted(segments, key=lambda s: (s[0] != "overall", s[1])):
        treated = frame.filter(pl.col("group") == "treated")
        control = frame.filter(pl.col("group") == "control")
        for cov in _COVARIATES:
            t = treated[cov].to_numpy().astype(np.float64)
            c = control[cov].to_numpy().astype(np.float64)
            smd = _smd(t, c)
            rows.append(
                {
                    "segment_type": seg_type,
                    "segment": seg,
                    "covariate": cov,
                    "mean_treated": float(t.mean()) if t.size else None,
                    "mean_control": float(c.mean()) if c.size else None,
                    "smd": smd,
                    "smd_2se": 2 * float(np.sqrt(1 / t.size + 1 / c.size)) if t.size and c.size else None,
                    "flagged": bool(np.isfinite(smd) and abs(smd) > SMD_THRESHOLD) or bool(np.isinf(smd)),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "segment_type": pl.String,
            "segment": pl.String,
            "covariate": pl.String,
            "mean_treated": pl.Float64,
            "mean_control": pl.Float64,
            "smd": pl.Float64,
            "smd_2se": pl.Float64,
            "flagged": pl.Boolean,
        },
    )


def _segment_row(seg_type: str, seg: str, frame: pl.DataFrame, alpha: float, n_boot: int, seed: int) -> dict[str, Any]:
    treated = frame.filter(pl.col("group") == "treated")
    control = frame.filter(pl.col("group") == "control")
    row: dict[str, Any] = {"segment_type": seg_type, "segment": seg, "n_treated": treated.height}
    row["n_control"] = control.height
    for outcome, col in (("conversion", "converted"), ("revenue", "revenue")):
        r = diff_in_means(
            treated[col].to_numpy().astype(np.float64),
            control[col].to_numpy().astype(np.float64),
            alpha=alpha,
            n_boot=n_boot,
            seed=seed,
            name=f"{seg_type}/{seg}/{outcome}",
        )
        row[f"{outcome}_treated"] = r["mean_treated"]
        row[f"{outcome}_control"] = r["mean_control"]
        for key in ("diff", "se", "ci_low", "ci_high", "p_value", "boot_low", "boot_high"):
            row[f"{outcome}_{key}"] = r[key]
    cost = float(treated["cost"].sum())
    row["incremental_conversions"] = row["conversion_diff"] * treated.height
    row["incremental_revenue"] = row["revenue_diff"] * treated.height
    row["contact_cost"] = cost
    row["incremental_revenue_per_cost"] = row["incremental_revenue"] / cost if cost > 0 else float("nan")
    return row


def measure_campaign(
    campaign: str | Path | pl.DataFrame,
    hist: Histories | str | Path,
    *,
    window_days: int,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    pre_days: int = 365,
    costs: Mapping[str, float] | None = None,
    log_mlflow: bool = False,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> MeasureReport:
    """Compare treated and held-out customers of a scored campaign on the outcomes after its date.

    See the module docstring for the design (who is compared, the intervals, the balance check).

    Parameters
    ----------
    campaign
        The campaign file written by :func:`omni_ml.scoring.score` (path or frame) with ``control_group``
        and ``recommended_channel`` (``propensity_decile`` is used when present).
    hist
        Histories (or a directory) holding the events of ``[as_of, as_of + window_days)``.
    window_days
        Outcome window in days after the campaign's ``as_of``.
    alpha
        1 - confidence level.
    n_boot
        Bootstrap resamples per segment and outcome (0: Welch only).
    seed
        Seed of the bootstrap.
    pre_days
        Length of the pre-campaign period of the balance check.
    costs
        Cost of one contact per channel; default: the mean logged cost per channel in ``hist.contacts``,
        else :class:`omni_ml.policy.PolicyConfig` defaults.
    log_mlflow
        Log the metrics, the table (CSV) and the plot to MLflow: to ``run_id``, else the campaign's
        lineage ``run_id`` (the model's training run), else a new run in the ``omni_ml`` experiment.
    run_id, tracking_uri
        Where to log (see ``log_mlflow``).

    Returns
    -------
    MeasureReport

    Raises
    ------
    DataInsufficientError
        No ``control_group`` column, or no held-out / no treated customer among those recommended a contact.
    SchemaError, ConfigError
        Malformed campaign file or arguments.
    """
    if not isinstance(window_days, int) or isinstance(window_days, bool) or window_days < 1:
        msg = f"window_days must be a positive integer number of days (got {window_days!r}). Hint: e.g. 7 or 28."
        raise ConfigError(msg)
    if not 0 < alpha < 1 or n_boot < 0 or pre_days < 1:
        msg = f"alpha must be in (0, 1), n_boot >= 0, pre_days >= 1 (got {alpha}, {n_boot}, {pre_days})."
        raise ConfigError(msg)
    frame = read_campaign(campaign)
    as_of: dt.datetime = frame["as_of"][0]
    eligible = frame.filter(pl.col("recommended_channel") != NO_CONTACT)
    n_control = int(eligible["control_group"].sum())
    n_treated = eligible.height - n_control
    if n_control == 0 or n_treated == 0:
        empty = "control" if n_control == 0 else "treated"
        held = int(frame["control_group"].sum())
        msg = (
            f"campaign: the {empty} group is empty among the {eligible.height:,} of {frame.height:,} customers "
            f"recommended a contact ({held:,} held out in all), so no incremental effect can be measured. "
            + (_CONTROL_HINT if empty == "control" else "Hint: measure a campaign that contacted someone.")
        )
        raise DataInsufficientError(msg)
    end = as_of + dt.timedelta(days=window_days)
    histories = _with_customer_ids(_as_histories(hist), end)
    outcomes = _outcomes(histories, as_of, end)
    pre = _pre_period(histories, as_of, pre_days)
    price = _contact_costs(histories, costs)
    decile = pl.col("propensity_decile").cast(pl.String) if "propensity_decile" in eligible.columns else pl.lit("all")
    customers = (
        eligible.select(
            "customer_id",
            pl.when(pl.col("control_group")).then(pl.lit("control")).otherwise(pl.lit("treated")).alias("group"),
            pl.col("recommended_channel").alias("channel"),
            decile.alias("decile"),
        )
        .join(outcomes, on="customer_id", how="left")
        .join(pre, on="customer_id", how="left")
        .with_columns(
            (pl.col("purchases").fill_null(0) > 0).cast(pl.Int8).alias("converted"),
            pl.col("revenue").fill_null(0.0),
            pl.when(pl.col("group") == "treated")
            .then(pl.col("channel").replace_strict(price, default=0.0, return_dtype=pl.Float64))
            .otherwise(0.0)
            .alias("cost"),
            pl.col("pre_purchases").fill_null(0.0),
            pl.col("pre_revenue").fill_null(0.0),
            pl.col("pre_recency_days").fill_null(float(pre_days)),
        )
        .drop("purchases")
        .sort("customer_id")
    )
    rows = [_segment_row("overall", "all", customers, alpha, n_boot, seed)]
    for by, seg_type in (("channel", "channel"), ("decile", "decile")):
        keys = sorted(customers[by].unique().to_list(), key=lambda v: (len(str(v)), str(v)))
        if seg_type == "decile" and keys == ["all"]:
            continue
        for key in keys:
            rows.append(_segment_row(seg_type, str(key), customers.filter(pl.col(by) == key), alpha, n_boot, seed))
    table = pl.DataFrame(rows).with_columns(pl.col("n_treated", "n_control").cast(pl.Int64))
    report = MeasureReport(
        table=table,
        balance=balance_table(customers),
        customers=customers,
        as_of=as_of,
        window_days=window_days,
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
    )
    if log_mlflow:
        lineage = frame["run_id"].drop_nulls().unique().to_list() if "run_id" in frame.columns else []
        target = run_id or (str(lineage[0]) if len(lineage) == 1 else None)
        report = dataclasses.replace(report, run_id=_log(report, target, tracking_uri))
    return report


def write_report(report: MeasureReport, out: str | Path) -> list[Path]:
    """Write the table to ``out`` (.csv or .parquet), the balance table and the plot (PNG) beside it, atomically.

    Returns
    -------
    list[Path]
        ``[out, <stem>_balance.<ext>, <stem>.png]``.
    """
    import matplotlib.pyplot as plt

    target = Path(out)
    if target.suffix not in (".csv", ".parquet"):
        msg = f"out {str(target)!r} must end in .csv or .parquet (got {target.suffix or 'no extension'!r})."
        raise ConfigError(msg)
    if not target.parent.is_dir():
        msg = f"the directory of out ({str(target.parent)!r}) does not exist. Hint: create it first."
        raise ConfigError(msg)
    balance = target.with_name(f"{target.stem}_balance{target.suffix}")
    png = target.with_suffix(".png")
    for frame, path in ((report.table, target), (report.balance, balance)):
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            frame.write_csv(tmp) if path.suffix == ".csv" else frame.write_parquet(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    fig = report.plot()
    tmp_png = png.with_name(f".{png.stem}.tmp.png")
    try:
        fig.savefig(tmp_png, dpi=110)
        os.replace(tmp_png, png)
    finally:
        plt.close(fig)
        tmp_png.unlink(missing_ok=True)
    return [target, balance, png]


def _log(report: MeasureReport, run_id: str | None, tracking_uri: str | None) -> str:
    import matplotlib.pyplot as plt
    import mlflow

    from omni_ml.tracking import DEFAULT_EXPERIMENT, resolve_tracking_uri, use_experiment

    previous = mlflow.get_tracking_uri()
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    try:
        if run_id is None:
            use_experiment(DEFAULT_EXPERIMENT, uri)
        stamp = f"{report.as_of:%Y%m%d}"
        with mlflow.start_run(
            run_id=run_id, run_name=None if run_id else f"measure-{stamp}", tags={"omni_ml.kind": "measure"}
        ) as run:
            mlflow.log_metrics({k.replace(" ", "_"): v for k, v in report.metrics().items()})
            mlflow.log_params(
                {f"measure.{stamp}.window_days": report.window_days, f"measure.{stamp}.alpha": report.alpha}
            )
            mlflow.log_text(report.table.write_csv(), f"measure/{stamp}/table.csv")
            mlflow.log_text(report.balance.write_csv(), f"measure/{stamp}/balance.csv")
            fig = report.plot()
            mlflow.log_figure(fig, f"measure/{stamp}/incremental.png")
            plt.close(fig)
            return str(run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous)


# ----------------------------------------------------------------------------- feedback


_CONTACT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "identifier": pl.String(),
    "timestamp": TIMESTAMP,
    "channel": pl.String(),
    "campaign_id": pl.String(),
    "cost": pl.Float64(),
    "assignment_probability": pl.Float64(),
}


def feedback_contacts(
    campaign: str | Path | pl.DataFrame,
    *,
    campaign_id: str,
    sends: pl.DataFrame | None = None,
    control_fraction: float | None = None,
    costs: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """The contacts a campaign actually sent, as rows of the contacts table (see the module docstring).

    Parameters
    ----------
    campaign
        The campaign file (path or frame) with ``best_channel`` and ``control_group``.
    campaign_id
        ``campaign_id`` of the rows (also how :func:`append_contacts` recognises a repeated append).
    sends
        Optional log of what was really sent: ``customer_id, channel`` and optionally ``timestamp`` and
        ``cost``. Without it every ``best_channel != no_contact`` of the file counts as sent at ``as_of``.
        A send must match the customer's ``best_channel`` (the action whose probability is known).
    control_fraction
        The ``--control-fraction`` the file was scored with; default: the share of ``control_group`` rows
        (the hash draw makes it close to the configured fraction on large files).
    costs
        Cost per channel when ``sends`` has no cost (default: :class:`omni_ml.policy.PolicyConfig` costs).

    Returns
    -------
    polars.DataFrame
        Contacts schema ``customer_id, identifier (crm:<id>), timestamp, channel, campaign_id, cost,
        assignment_probability (= 1 - control_fraction)``, sorted by customer_id.

    Raises
    ------
    SchemaError
        A send to a customer not in the file, held out, or on another channel than its ``best_channel``.

    Examples
    --------
    >>> import datetime as dt
    >>> c = pl.DataFrame({"customer_id": ["a", "b", "c"], "as_of": [dt.datetime(2025, 1, 1)] * 3,
    ...                   "best_channel": ["email", "no_contact", "sms"], "control_group": [False, True, False]})
    >>> feedback_contacts(c, campaign_id="c1", control_fraction=0.1).select("customer_id", "channel",
    ...     "assignment_probability").rows()
    [('a', 'email', 0.9), ('c', 'sms', 0.9)]
    """
    from omni_ml.policy import PolicyConfig

    frame = read_campaign(campaign)
    if "best_channel" not in frame.columns:
        msg = f"campaign: no best_channel column ({frame.height:,} rows). Hint: pass the file omni-ml score wrote."
        raise SchemaError(msg)
    fraction = float(frame["control_group"].mean()) if control_fraction is None else float(control_fraction)  # type: ignore[arg-type]
    if not 0.0 <= fraction < 1.0:
        msg = f"control_fraction must be in [0, 1) (got {fraction})."
        raise ConfigError(msg)
    price = {c: PolicyConfig().cost(c) for c in CONTACTABLE_CHANNELS} | dict(costs or {})
    as_of = frame["as_of"][0]
    planned = frame.filter(pl.col("best_channel") != NO_CONTACT).select("customer_id", "best_channel")
    if sends is None:
        sent = planned.rename({"best_channel": "channel"}).with_columns(
            pl.lit(as_of).cast(TIMESTAMP).alias("timestamp"), pl.lit(None, dtype=pl.Float64).alias("cost")
        )
    else:
        missing = [c for c in ("customer_id", "channel") if c not in sends.columns]
        if missing:
            msg = f"sends: missing column(s) {missing}; found {sends.columns}. "
            msg += "Hint: customer_id, channel[, timestamp, cost]."
            raise SchemaError(msg)
        sent = sends.select(
            pl.col("customer_id").cast(pl.String),
            pl.col("channel").cast(pl.String),
            (
                pl.col("timestamp").cast(TIMESTAMP) if "timestamp" in sends.columns else pl.lit(as_of).cast(TIMESTAMP)
            ).alias("timestamp"),
            (pl.col("cost").cast(pl.Float64) if "cost" in sends.columns else pl.lit(None, dtype=pl.Float64)).alias(
                "cost"
            ),
        )
        check = sent.join(frame.select("customer_id", "best_channel", "control_group"), on="customer_id", how="left")
        bad = check.filter(pl.col("best_channel").is_null() | (pl.col("best_channel") != pl.col("channel")))
        if bad.height:
            ex = bad.row(0, named=True)
            why = (
                "is not in the campaign file"
                if ex["best_channel"] is None
                else f"was planned as {ex['best_channel']!r}"
                + (" (held out: control group)" if ex["control_group"] else "")
            )
            msg = (
                f"sends: {bad.height:,} of {sent.height:,} sends do not match the campaign file's best_channel "
                f"(e.g. {ex['customer_id']!r} sent {ex['channel']!r} but {why}). Hint: only sends of the planned "
                "channel have a known assignment probability; fix the log or drop those rows."
            )
            raise SchemaError(msg)
    return (
        sent.with_columns(
            ("crm:" + pl.col("customer_id")).alias("identifier"),
            pl.lit(campaign_id).alias("campaign_id"),
            pl.coalesce(pl.col("cost"), pl.col("channel").replace_strict(price, default=0.0, return_dtype=pl.Float64)),
            pl.lit(1.0 - fraction).alias("assignment_probability"),
        )
        .select(pl.col(k).cast(v) for k, v in _CONTACT_SCHEMA.items())
        .sort("customer_id", "timestamp")
    )


def append_contacts(directory: str | Path, contacts: pl.DataFrame) -> Path:
    """Append contact rows to ``DIRECTORY/contacts.parquet`` atomically (temporary file, then rename).

    Parameters
    ----------
    directory
        A histories directory (``contacts.parquet`` is created if absent; a csv contacts table is refused).
    contacts
        Rows in the contacts schema, e.g. from :func:`feedback_contacts`.

    Returns
    -------
    Path
        The contacts file.

    Raises
    ------
    SchemaError
        A ``contacts.csv`` in the directory, missing columns, or a ``campaign_id`` already in the file
        (appending the same campaign twice would double-count its contacts).
    """
    target_dir = Path(directory)
    if not target_dir.is_dir():
        msg = f"append_contacts: {str(target_dir)!r} is not a directory. Hint: pass a histories directory."
        raise SchemaError(msg)
    if (target_dir / "contacts.csv").exists():
        msg = f"append_contacts: {target_dir / 'contacts.csv'} is csv. Hint: convert it to contacts.parquet first."
        raise SchemaError(msg)
    missing = [c for c in ("customer_id", "timestamp", "channel", "campaign_id") if c not in contacts.columns]
    if missing:
        msg = f"contacts: missing column(s) {missing}; found {contacts.columns}. Hint: use feedback_contacts()."
        raise SchemaError(msg)
    target = target_dir / "contacts.parquet"
    new = contacts
    if target.exists():
        old = pl.read_parquet(target)
        repeated = set(old["campaign_id"].drop_nulls().unique().to_list()) & set(
            contacts["campaign_id"].drop_nulls().unique().to_list()
        )
        if repeated:
            msg = (
                f"contacts: campaign_id {sorted(repeated)[0]!r} is already in {target} ({old.height:,} rows); "
                "appending it again would double-count its contacts. Hint: use a new campaign_id per campaign."
            )
            raise SchemaError(msg)
        new = pl.concat([old, contacts], how="diagonal_relaxed")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        new.write_parquet(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
