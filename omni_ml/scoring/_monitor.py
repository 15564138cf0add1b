"""The scoring job's monitoring hook: profile each chunk, then judge, record and (optionally) stop the run.

Kept apart from the job itself: :func:`omni_ml.scoring.score` calls :func:`start`, :func:`profile_chunk`
per chunk (features of a stable hash sample of its customers), :meth:`ScoringMonitor.add_scores` per
written chunk, and :func:`finish` before it commits the campaign file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml._io import commit, temp_path
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, DriftError
from omni_ml.monitor import SAMPLE_SEED, MonitorConfig, MonitorReport, ScoringMonitor, monitor_path
from omni_ml.scoring._hashing import stable_hash, uniform_from_hash

__all__ = [
    "ChunkProfile",
    "MonitorOutcome",
    "ProfileSpec",
    "add_profile",
    "chunk_profile",
    "finish",
    "monitor_config",
    "profile_chunk",
    "profile_spec",
    "start",
]


def monitor_config(value: MonitorConfig | Mapping[str, Any] | bool | None) -> MonitorConfig:
    """A :class:`MonitorConfig` from ``None`` / ``True`` (defaults), ``False`` (disabled) or a mapping."""
    if value is None or value is True:
        return MonitorConfig()
    if value is False:
        return MonitorConfig(enabled=False)
    if isinstance(value, MonitorConfig):
        return value
    if isinstance(value, Mapping):
        from omni_ml.config import from_mapping

        return from_mapping(MonitorConfig, value, where="monitor")
    msg = f"monitor must be a MonitorConfig, a mapping of its fields, True/False or None (got {type(value).__name__})."
    raise ConfigError(msg)


def start(model: Any, config: MonitorConfig, expected_customers: int) -> tuple[ScoringMonitor | None, str | None]:
    """The run's monitor, or ``None`` and why not (disabled, or a model saved before it had a reference)."""
    if not config.enabled:
        return None, None
    reference = getattr(model, "reference_", None)
    if reference is None:
        return None, "the model has no training reference (fitted before monitoring existed): refit it to monitor"
    calibrator = getattr(getattr(model, "propensity_", None), "calibrator_", ...)  # ...: a model without one
    calibrated = None if calibrator is ... else calibrator is not None
    return ScoringMonitor(reference, config, expected_customers=expected_customers, calibrated=calibrated), None


@dataclasses.dataclass(frozen=True)
class ProfileSpec:
    """What profiling a chunk needs from the run's monitor; small and picklable (Spark executors get it).

    ``rate``: the share of customers whose features are profiled (stable hash sample); ``window_days`` and
    ``amount_edges``: the input window of the reference (``window_days`` None: no input tallies).
    """

    rate: float
    window_days: int | None
    amount_edges: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class ChunkProfile:
    """A chunk's contribution to the run's monitor: its input-window tally and its sampled feature rows."""

    tally: Any = None
    features: pl.DataFrame | None = None


def profile_spec(monitor: ScoringMonitor) -> ProfileSpec:
    """The :class:`ProfileSpec` of a run's monitor."""
    inputs = getattr(monitor.reference, "inputs", None)
    if inputs is None:
        return ProfileSpec(monitor.rate, None)
    return ProfileSpec(monitor.rate, int(inputs.window_days), tuple(float(e) for e in inputs.amount_edges))


def chunk_profile(spec: ProfileSpec, model: Any, hist: Histories, frame: pl.DataFrame) -> ChunkProfile:
    """Tally the chunk's input window and build the features of its sampled customers (the scored ``frame``'s)."""
    from omni_ml.features import build_features
    from omni_ml.monitor._events import tally_window

    if frame.height == 0:
        return ChunkProfile()
    as_of = frame["as_of"][0]
    tally = None if spec.window_days is None else tally_window(hist, as_of, spec.window_days, spec.amount_edges)
    ids = frame["customer_id"]
    if "personalised" in frame.columns:  # no personal features are built for people without a profiling consent
        ids = ids.filter(frame["personalised"])
    if spec.rate < 1.0:
        ids = ids.filter(pl.Series(uniform_from_hash(stable_hash(ids, SAMPLE_SEED)) < spec.rate))
    if ids.len() == 0:
        return ChunkProfile(tally)
    keys = pl.DataFrame({"customer_id": ids, "cutoff": pl.Series([as_of] * ids.len(), dtype=TIMESTAMP)})
    return ChunkProfile(tally, build_features(hist, keys, feature_set=model.feature_set_))


def add_profile(monitor: ScoringMonitor, profile: ChunkProfile) -> None:
    """Add a chunk's profile (from this process or an executor) to the run's monitor."""
    if profile.tally is not None:
        monitor.add_input_tally(profile.tally)
    if profile.features is not None:
        monitor.add_features(profile.features)


def profile_chunk(monitor: ScoringMonitor | None, model: Any, hist: Histories, frame: pl.DataFrame) -> None:
    """Tally the chunk's input rows, build the features of its sampled customers and add them to the profile."""
    if monitor is None or frame.height == 0:
        return
    add_profile(monitor, chunk_profile(profile_spec(monitor), model, hist, frame))


class MonitorOutcome:
    """What :func:`finish` produced: the report, the monitoring file (staged) and the MLflow run."""

    def __init__(self, report: MonitorReport, staged: Path | None, target: Path, run_id: str | None) -> None:
        self.report = report
        self.staged = staged
        self.target = target
        self.run_id = run_id

    def commit(self) -> Path:
        """Rename the staged monitoring file to ``<campaign>.monitor.parquet``."""
        if self.staged is not None:
            commit(self.staged, self.target)
            self.staged = None
        return self.target

    def discard(self) -> None:
        """Delete the staged file (the job failed before committing)."""
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)
            self.staged = None


def finish(
    monitor: ScoringMonitor,
    *,
    as_of: dt.datetime,
    out: Path,
    model_uri: str | None,
    model_version: str | None,
    run_id: str | None,
    tracking_uri: str | None,
    fail_on_drift: bool,
) -> MonitorOutcome:
    """Judge the run, log it to MLflow (models from MLflow only), stage the monitoring file or stop.

    Raises
    ------
    DriftError
        ``fail_on_drift`` and the verdict is ``bad``: nothing is staged (the caller writes no campaign file).
    """
    uri = None
    previous = None
    if run_id is not None:
        from omni_ml.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(tracking_uri)
        previous = _mlflow_or_warn(lambda: _previous(uri, run_id), "could not read the previous monitoring run")
    report = monitor.finish(as_of=as_of, previous=previous)
    blocked = fail_on_drift and report.verdict == "bad"
    logged = None
    if uri is not None and run_id is not None:
        from omni_ml.monitor._mlflow import log_monitoring_run

        logged = _mlflow_or_warn(
            lambda: log_monitoring_run(
                report,
                tracking_uri=uri,
                model_run_id=run_id,
                model_uri=model_uri,
                model_version=model_version,
                campaign_file=str(out.resolve()),
                status="blocked" if blocked else "written",
            ),
            "could not log the monitoring run to MLflow",
        )
    if blocked:
        msg = (
            f"scoring as of {as_of:%Y-%m-%d}: health verdict BAD ({'; '.join(report.reasons)}); the campaign file "
            f"{str(out)!r} was not written (--fail-on-drift). Hint: check the histories feed for the features named, "
            "or retrain the model on recent data; rerun without --fail-on-drift to score anyway."
        )
        raise DriftError(msg, report)
    target = monitor_path(out)
    staged = temp_path(target)
    report.to_frame().write_parquet(staged)
    return MonitorOutcome(report, staged, target, logged)


def _previous(uri: str, run_id: str) -> dict[str, float] | None:
    from omni_ml.monitor._mlflow import previous_channel_shares

    return previous_channel_shares(uri, run_id)


def _mlflow_or_warn(call: Any, what: str) -> Any:
    """MLflow trouble (a server down) must not lose a campaign: warn and go on."""
    try:
        return call()
    except Exception as exc:  # MLflow raises many types (HTTP, SQL, its own)
        warnings.warn(f"monitor: {what} ({type(exc).__name__}: {exc}).", UserWarning, stacklevel=3)
        return None
