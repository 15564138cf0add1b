"""What a scoring job reports: the summary of counts and lineage, the running tally and the progress bar."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml.data import NO_CONTACT
from omni_ml.scoring._chunks import CONTROL_RULE, EXPLORE_RULE


@dataclasses.dataclass(frozen=True)
class ScoringSummary:
    """What a scoring job did: counts for the campaign manager and the run log.

    ``per_channel`` counts ``best_channel`` after the control group is held out (who will be
    contacted, and how); ``recommended`` counts the model's choice before it; ``rules`` counts the
    rule that fired per customer (``control_group`` for contacts held out); ``control`` is the
    size of the control group (all held-out customers, contactable or not); ``explored`` counts the
    customers whose action exploration drew (rule ``explore``). ``history_end`` is the
    last event in the histories; ``warnings`` holds what the job also warned about (a last event more
    than the model's horizon before ``as_of``: a histories feed that stopped).
    """

    out: Path
    customers: int
    per_channel: dict[str, int]
    recommended: dict[str, int]
    rules: dict[str, int]
    control: int
    control_held_out: int
    control_fraction: float
    seed: int
    chunks: int
    as_of: dt.datetime
    model_uri: str | None
    model_version: str | None
    run_id: str | None
    seconds: float
    engine: str = "polars"
    history_end: dt.datetime | None = None
    warnings: tuple[str, ...] = ()
    explore_fraction: float = 0.0
    explored: int = 0
    monitor: Any = None
    monitor_file: Path | None = None
    monitor_run_id: str | None = None
    unprofiled: int = 0
    unprofiled_mode: str = "anonymous"

    @property
    def no_contact(self) -> int:
        """Customers not contacted (paused by a rule, or held out)."""
        return self.per_channel.get(NO_CONTACT, 0)

    @property
    def contacted(self) -> int:
        """Customers to be contacted on some channel."""
        return self.customers - self.no_contact

    def to_text(self) -> str:
        """The summary ``omni-ml score`` prints."""
        rate = self.customers / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"campaign file: {self.out}",
            f"  model:      {self.model_uri}"
            + (f" (version {self.model_version})" if self.model_version else "")
            + (f" run {self.run_id}" if self.run_id else ""),
            f"  as of:      {self.as_of:%Y-%m-%d %H:%M} UTC",
            f"  customers:  {self.customers:,} scored in {self.seconds:,.1f} s "
            f"({rate:,.0f}/s, {self.chunks} chunk{'s' if self.chunks != 1 else ''}, engine {self.engine})",
            f"  contacted:  {self.contacted:,}",
        ]
        if self.history_end is not None:
            lines.insert(3, f"  history to: {self.history_end:%Y-%m-%d %H:%M} UTC (last event)")
        for channel, n in sorted(self.per_channel.items(), key=lambda kv: (-kv[1], kv[0])):
            if channel != NO_CONTACT:
                lines.append(f"    {channel:<16}{n:>12,}")
        lines.append(f"  no_contact: {self.no_contact:,}")
        lines.append("  rule that fired:")
        for rule, n in sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {rule:<20}{n:>12,}")
        share = self.control / self.customers if self.customers else 0.0
        lines.append(
            f"  control group: {self.control:,} ({share:.1%}; target {self.control_fraction:.1%}, seed {self.seed}); "
            f"{self.control_held_out:,} of them held out from a recommended contact"
        )
        if self.explore_fraction > 0:
            lines.append(
                f"  exploration: {self.explored:,} customers (target {self.explore_fraction:.1%} of those outside the "
                "control group with a choice) drew their action at random (rule explore)"
            )
        if self.unprofiled:
            lines.append(
                f"  not personalised: {self.unprofiled:,} customers without a profiling consent scored from population "
                "constants (column personalised = false)"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.monitor is not None:
            lines.append(self.monitor.to_text())
            lines.append(
                f"  monitoring: {self.monitor_file}"
                + (f" (MLflow run {self.monitor_run_id})" if self.monitor_run_id else "")
            )
        return "\n".join(lines)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TextColumn("{task.fields[customers]:>12,} customers"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


class _Tally:
    def __init__(self) -> None:
        self.customers = 0
        self.per_channel: Counter[str] = Counter()
        self.recommended: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.control = 0
        self.held_out = 0
        self.explored = 0
        self.unprofiled = 0

    def add(self, frame: pl.DataFrame) -> None:
        self.customers += frame.height
        self.per_channel.update(dict(frame["best_channel"].value_counts().iter_rows()))
        self.recommended.update(dict(frame["recommended_channel"].value_counts().iter_rows()))
        self.rules.update(dict(frame["rule"].value_counts().iter_rows()))
        self.control += int(frame["control_group"].sum())
        self.held_out += int((frame["rule"] == CONTROL_RULE).sum())
        self.explored += int((frame["rule"] == EXPLORE_RULE).sum())
        if "personalised" in frame.columns:
            self.unprofiled += int((~frame["personalised"]).sum())

    def counts(self) -> dict[str, Any]:
        """The tallied fields of :class:`ScoringSummary`, channel and rule counts sorted by name."""
        return {
            "customers": self.customers,
            "per_channel": dict(sorted(self.per_channel.items())),
            "recommended": dict(sorted(self.recommended.items())),
            "rules": dict(sorted(self.rules.items())),
            "control": self.control,
            "control_held_out": self.held_out,
            "explored": self.explored,
            "unprofiled": self.unprofiled,
        }
