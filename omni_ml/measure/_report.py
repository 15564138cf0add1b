"""The result of a campaign measurement: :class:`MeasureReport` (table, balance, plot, metrics)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import polars as pl

__all__ = ["SMD_THRESHOLD", "MeasureReport"]

SMD_THRESHOLD = 0.1


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
    observed_days, missing_customers
        How much of the window the histories cover (their last event), and how many of the campaign's
        customer ids they do not hold.
    explored_left_out
        Rows of customers recommended a contact whose action exploration drew (rule ``explore``), left
        out of the treated group.
    run_id
        The MLflow run the metrics were logged to (``None`` when not logged).
    performance
        ``figure, expected, realised``: the scoring run's estimates before any outcome (from
        ``<campaign>.monitor.parquet`` when it is beside the campaign file) next to the realised AUC,
        buyers and top-decile lift over every customer of the campaign (:mod:`omni_ml.monitor`).
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
    performance: pl.DataFrame | None = None
    observed_days: float | None = None  # days of the window the histories cover (less than window_days: cut short)
    missing_customers: int = 0  # campaign customer ids the histories do not know
    explored_left_out: int = 0  # rows whose action exploration drew (rule explore): not the policy's, not compared

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
            f"treated vs control, {min(self.window_days, self.observed_days or self.window_days):.0f} days from "
            f"{self.as_of:%Y-%m-%d} ({1 - self.alpha:.0%} Welch CI)"
        )
        fig.tight_layout()
        return fig

    def to_text(self) -> str:
        """A short summary for the terminal."""
        o = self.overall
        window = f"window {self.window_days} days"
        if self.observed_days is not None and self.observed_days < self.window_days:
            window = f"window {self.observed_days:.1f} of the {self.window_days} days asked for (histories end there)"
        lines = [
            f"campaign as of {self.as_of:%Y-%m-%d}, {window}: "
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
        if self.performance is not None:
            lines.append("  expected at scoring vs realised (every customer of the campaign):")
            for figure, expected, realised in self.performance.iter_rows():
                shown = "-" if expected is None else f"{expected:,.3f}"
                lines.append(f"    {figure:<24}{shown:>12}{realised:>12,.3f}")
        if self.missing_customers:
            lines.append(
                f"  note: {self.missing_customers:,} customer ids of the campaign are not in the histories"
                " (counted as not converting)"
            )
        if self.explored_left_out:
            lines.append(
                f"  note: {self.explored_left_out:,} explored rows (rule explore: a random action) are left out of "
                "the treated group; the comparison is the policy's recommendations vs the control group"
            )
        if self.run_id:
            lines.append(f"  logged to MLflow run {self.run_id}")
        return "\n".join(lines)
