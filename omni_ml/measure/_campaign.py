"""Measure a campaign: treated vs held-out control among the customers recommended a contact.

Rows chosen by exploration (rule ``explore``) are left out of the treated group: their action was drawn
at random, so they would measure the design rather than the policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omni_ml._time import before
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError
from omni_ml.measure._inputs import (
    _CONTROL_HINT,
    NO_CONTACT,
    _as_histories,
    _contact_costs,
    _outcomes,
    _pre_period,
    _with_customer_ids,
    read_campaign,
)
from omni_ml.measure._report import SMD_THRESHOLD, MeasureReport
from omni_ml.measure._stats import _smd, diff_in_means
from omni_ml.measure._writers import _log
from omni_ml.monitor import expected_vs_realised, monitor_path, realised_figures
from omni_ml.scoring import EXPLORE_RULE

__all__ = ["balance_table", "measure_campaign"]


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


_MOST_UNKNOWN = 0.9  # share of campaign ids unknown to the histories from which measuring is refused


def _coverage(frame: pl.DataFrame, histories: Histories, as_of: dt.datetime, end: dt.datetime) -> tuple[float, int]:
    """Days of ``[as_of, end)`` the histories cover, and campaign customer ids they lack; refuse hopeless cases.

    Raises
    ------
    DataInsufficientError
        No event at or after ``as_of`` (no outcome data: the effect would read as an exact zero), or
        more than 90% of the campaign's customer ids are unknown to the histories (another world's campaign).
    """
    ts = pl.col("timestamp")
    stats = histories.events.select(ts.max().alias("last"), (~before(as_of)).sum().alias("after")).collect().row(0)
    last, after = stats
    if not after:
        shown = f"{last:%Y-%m-%d %H:%M}" if last is not None else "none"
        msg = (
            f"events: no event at or after the campaign's as_of {as_of:%Y-%m-%d} (last event: {shown}), so there is"
            " no outcome data and every effect would read as zero. Hint: measure once the histories hold the"
            " window after the campaign (pass --window DAYS that has passed), with the events appended."
        )
        raise DataInsufficientError(msg)
    observed = min(end, last + dt.timedelta(microseconds=1)) - as_of
    known = pl.concat(
        [lf.select("customer_id") for lf in (histories.events, histories.customers) if lf is not None]
    ).unique()
    ids = frame.select("customer_id").unique()
    unknown = ids.join(known.collect(), on="customer_id", how="anti")
    # Histories that hold only the outcome window legitimately lack the customers who did nothing in
    # it (a week: most of them); a campaign of another world's customers lacks nearly all.
    if unknown.height > _MOST_UNKNOWN * ids.height:
        msg = (
            f"campaign: {unknown.height:,} of {ids.height:,} customer ids ({unknown.height / ids.height:.0%}) are not"
            f" in the histories (e.g. {unknown.item(0, 0)!r}): the campaign was not scored from these histories."
            " Hint: measure with the histories directory the campaign file was scored from."
        )
        raise DataInsufficientError(msg)
    return observed.total_seconds() / 86400.0, unknown.height


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
    _check_arguments(window_days, alpha, n_boot, pre_days)
    frame = read_campaign(campaign)
    as_of: dt.datetime = frame["as_of"][0]
    eligible, n_explored = _eligible(frame)
    end = as_of + dt.timedelta(days=window_days)
    histories = _with_customer_ids(_as_histories(hist), end)
    observed_days, missing = _coverage(frame, histories, as_of, end)
    outcomes = _outcomes(histories, as_of, end)
    customers = _customer_table(
        eligible, outcomes, _pre_period(histories, as_of, pre_days), _contact_costs(histories, costs), pre_days
    )
    table = _segment_table(customers, alpha, n_boot, seed)
    scored = {"propensity", "propensity_decile", "best_channel"} <= set(frame.columns)
    realised = (
        realised_figures(
            frame, outcomes.select("customer_id", (pl.col("purchases") > 0).alias("converted")), alpha=alpha
        )
        if scored
        else {}
    )
    beside = monitor_path(campaign) if isinstance(campaign, str | Path) else None
    report = MeasureReport(
        performance=expected_vs_realised(beside, realised) if scored else None,
        table=table,
        balance=balance_table(customers),
        customers=customers,
        as_of=as_of,
        window_days=window_days,
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
        observed_days=observed_days,
        missing_customers=missing,
        explored_left_out=n_explored,
    )
    if log_mlflow:
        lineage = frame["run_id"].drop_nulls().unique().to_list() if "run_id" in frame.columns else []
        target = run_id or (str(lineage[0]) if len(lineage) == 1 else None)
        report = dataclasses.replace(report, run_id=_log(report, target, tracking_uri))
        if len(lineage) == 1 and scored:
            _record_realised(str(lineage[0]), as_of, realised, window_days, tracking_uri)
    return report


def _check_arguments(window_days: int, alpha: float, n_boot: int, pre_days: int) -> None:
    """Raise a ConfigError for a window that is not a positive whole number of days or a bad alpha, n_boot, pre_days."""
    if not isinstance(window_days, int) or isinstance(window_days, bool) or window_days < 1:
        msg = f"window_days must be a positive integer number of days (got {window_days!r}). Hint: e.g. 7 or 28."
        raise ConfigError(msg)
    if not 0 < alpha < 1 or n_boot < 0 or pre_days < 1:
        msg = f"alpha must be in (0, 1), n_boot >= 0, pre_days >= 1 (got {alpha}, {n_boot}, {pre_days})."
        raise ConfigError(msg)


def _eligible(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The rows recommended a contact, less the explored treated rows, and how many explored rows were left out.

    Raises
    ------
    DataInsufficientError
        When the treated or the control group is empty among them.
    """
    eligible = frame.filter(pl.col("recommended_channel") != NO_CONTACT)
    # explored rows got a random action, not the policy's: they measure the design, not the policy; the
    # exploration draw is an independent hash uniform, so the rest of the treated is still a random sample
    explored = (pl.col("rule") == EXPLORE_RULE) & ~pl.col("control_group") if "rule" in frame.columns else pl.lit(False)
    n_explored = int(eligible.select(explored.sum()).item())
    eligible = eligible.filter(~explored)
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
    return eligible, n_explored


def _customer_table(
    eligible: pl.DataFrame, outcomes: pl.DataFrame, pre: pl.DataFrame, price: dict[str, float], pre_days: int
) -> pl.DataFrame:
    """One row per eligible customer: group, channel, decile, outcomes, contact cost and pre-period covariates."""
    decile = pl.col("propensity_decile").cast(pl.String) if "propensity_decile" in eligible.columns else pl.lit("all")
    return (
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


def _segment_table(customers: pl.DataFrame, alpha: float, n_boot: int, seed: int) -> pl.DataFrame:
    """The effect rows: overall, then per channel and per decile (deciles only when the file has them)."""
    rows = [_segment_row("overall", "all", customers, alpha, n_boot, seed)]
    for by, seg_type in (("channel", "channel"), ("decile", "decile")):
        keys = sorted(customers[by].unique().to_list(), key=lambda v: (len(str(v)), str(v)))
        if seg_type == "decile" and keys == ["all"]:
            continue
        for key in keys:
            rows.append(_segment_row(seg_type, str(key), customers.filter(pl.col(by) == key), alpha, n_boot, seed))
    return pl.DataFrame(rows).with_columns(pl.col("n_treated", "n_control").cast(pl.Int64))


def _record_realised(
    model_run_id: str, as_of: dt.datetime, realised: dict[str, float], window_days: int, tracking_uri: str | None
) -> None:
    """Add the realised figures to the scoring run's monitoring run (when there is one); warn on MLflow trouble."""
    import warnings

    from omni_ml.monitor import record_realised
    from omni_ml.tracking import resolve_tracking_uri

    try:
        record_realised(resolve_tracking_uri(tracking_uri), model_run_id, as_of, realised, window_days=window_days)
    except Exception as exc:  # MLflow raises many types; the measurement itself is done
        warnings.warn(f"measure: could not add the realised figures to the monitoring run ({exc}).", stacklevel=3)
