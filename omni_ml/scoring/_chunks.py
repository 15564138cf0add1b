"""One chunk of a scoring job: the campaign-file schema, the control group, exploration and lineage on scored rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import polars as pl

from omni_ml.data import NO_CONTACT, Histories
from omni_ml.scoring import _monitor
from omni_ml.scoring._hashing import (
    BUCKET_SEED,
    DRAW_SALT,
    EXPLORE_SALT,
    stable_hash,
    uniform_from_hash,
)
from omni_ml.scoring._inputs import read_chunk

CONTROL_RULE = "control_group"
EXPLORE_RULE = "explore"
VALUE_RULES = ("best_value", "no_positive_value")
"""Rules of a decision made on value: the only ones exploration may replace (a rule that pauses stays)."""


_LINEAGE: dict[str, pl.DataType] = {"model_uri": pl.String(), "model_version": pl.String(), "run_id": pl.String()}


def campaign_schema(model: Any, *, reasons: int) -> pl.Schema:
    """The schema of the campaign file written with ``model`` and ``reasons`` reason columns."""
    base = dict(model.output_schema(reasons=reasons))
    cols: dict[str, pl.DataType] = {}
    for name, dtype in base.items():
        cols[name] = dtype
        if name == "best_channel":
            cols["recommended_channel"] = pl.String()
            cols["control_group"] = pl.Boolean()
            cols["assignment_probability"] = pl.Float64()
    cols.update(_LINEAGE)
    return pl.Schema(cols)


def _scored_stream(
    scans: Mapping[str, pl.LazyFrame],
    n_chunks: int,
    job: _Job,
    spans: list[tuple[dt.datetime, dt.datetime]],
    monitor: Any = None,
) -> Iterator[pl.DataFrame]:
    """Read, validate and score bucket after bucket; collect each chunk's first and last event into ``spans``."""
    for bucket in range(n_chunks):
        chunk = read_chunk(scans, bucket, n_chunks, job.as_of)
        summary = chunk.report.tables.get("events") if chunk.report else None
        if summary is not None and summary.start is not None and summary.end is not None and summary.rows:
            spans.append((summary.start, summary.end))
        yield _run_monitored(job, chunk, monitor)


def _run_monitored(job: _Job, hist: Histories, monitor: Any) -> pl.DataFrame:
    """Score a chunk and profile the features of its sampled customers (the monitoring hook)."""
    frame = job.run(hist)
    _monitor.profile_chunk(monitor, job.model, hist, frame)
    return frame


def finish_chunk(
    frame: pl.DataFrame,
    *,
    schema: pl.Schema,
    control_fraction: float,
    seed: int,
    lineage: Mapping[str, str | None],
    explore_fraction: float = 0.0,
) -> pl.DataFrame:
    """Apply the control group and exploration, add lineage, fix the schema and sort a chunk into file order.

    The design, customer by customer (``u_c``, ``u_e``, ``u_d``: independent uniforms from the stable hash
    of the id with the campaign seed, see :mod:`omni_ml.scoring._hashing`):

    1. ``u_c < control_fraction``: control group, ``best_channel = no_contact`` (rule ``control_group`` when
       the policy recommended a contact);
    2. otherwise ``u_e < explore_fraction``: exploration. The options are ``no_contact`` plus every channel
       the policy allowed (a non-null ``score_<channel>``: consented, with an estimate) when the decision was
       made on value (rules ``best_value`` / ``no_positive_value``); a customer paused by a rule (consent,
       pressure cap, cool-down, service incident, suppression) has the single option ``no_contact`` and
       keeps that rule. With ``K > 1`` options the action is option ``floor(u_d * K)`` and the rule is
       ``explore``;
    3. otherwise the policy's recommendation.

    ``assignment_probability`` is the probability of the logged ``best_channel`` ``a`` under this whole
    design, ``C [a = no_contact] + (1 - C) F / K + (1 - C) (1 - F) [a = recommended]``, with ``C`` the
    control and ``F`` the exploration fraction (1 for a customer with a single option).
    """
    ids = frame["customer_id"]
    n = frame.height
    control = float(control_fraction)
    explore = float(explore_fraction)
    in_control = (uniform_from_hash(stable_hash(ids, seed)) < control).to_numpy()
    channels = [name.removeprefix("score_") for name in schema if name.startswith("score_")]
    recommended = frame["best_channel"].to_numpy().astype(object)
    on_value = frame["rule"].is_in(list(VALUE_RULES)).to_numpy()
    allowed = np.zeros((n, len(channels)), dtype=bool)
    for j, channel in enumerate(channels):
        column = f"score_{channel}"
        if column in frame.columns:
            allowed[:, j] = frame[column].is_not_null().to_numpy() & on_value
    n_options = allowed.sum(axis=1) + 1  # + no_contact
    exploring = np.zeros(n, dtype=bool)
    action = np.where(in_control, NO_CONTACT, recommended).astype(object)
    if explore > 0.0 and n:
        explore_u = uniform_from_hash(stable_hash(ids, seed ^ EXPLORE_SALT)).to_numpy()
        exploring = ~in_control & (explore_u < explore) & (n_options > 1)
        draw = uniform_from_hash(stable_hash(ids, seed ^ DRAW_SALT)).to_numpy()
        pick = np.minimum((draw * n_options).astype(np.int64), n_options - 1)  # 0 = no_contact, k = k-th allowed
        ranks = np.cumsum(allowed, axis=1)
        for i in np.flatnonzero(exploring):
            action[i] = NO_CONTACT if pick[i] == 0 else channels[int(np.argmax(ranks[i] == pick[i]))]
    is_pause = action == NO_CONTACT
    probability = np.where(
        n_options == 1,
        1.0,  # the only option (exactly 1, not a sum of rounded shares)
        control * is_pause
        + (1.0 - control) * explore / n_options
        + (1.0 - control) * (1.0 - explore) * (action == recommended),
    )
    held_out = in_control & (recommended != NO_CONTACT)
    rule = frame["rule"].to_numpy().astype(object)
    rule = np.where(held_out, CONTROL_RULE, np.where(exploring, EXPLORE_RULE, rule))
    out = (
        frame.with_columns(
            control_group=pl.Series(in_control, dtype=pl.Boolean),
            recommended_channel=pl.col("best_channel"),
            __order=stable_hash(ids, BUCKET_SEED),
        )
        .with_columns(
            best_channel=pl.Series(action.tolist(), dtype=pl.String),
            rule=pl.Series(rule.tolist(), dtype=pl.String),
            assignment_probability=pl.Series(probability, dtype=pl.Float64),
            **{k: pl.lit(v, dtype=pl.String) for k, v in lineage.items()},
        )
        .sort("__order", "customer_id")
    )
    return out.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


@dataclasses.dataclass(frozen=True)
class _Job:
    """Everything needed to score one chunk: picklable, so Spark executors can run it."""

    model: Any
    as_of: dt.datetime
    reasons: int
    control_fraction: float
    seed: int
    schema: pl.Schema
    lineage: Mapping[str, str | None]
    explore_fraction: float = 0.0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def run(self, hist: Histories) -> pl.DataFrame:
        frame = self.model.score(hist, self.as_of, reasons=self.reasons, **self.options)
        return finish_chunk(
            frame,
            schema=self.schema,
            control_fraction=self.control_fraction,
            seed=self.seed,
            lineage=self.lineage,
            explore_fraction=self.explore_fraction,
        )
