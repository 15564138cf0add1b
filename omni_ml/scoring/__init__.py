"""Batch scoring: raw histories + a campaign model + an as-of date -> one campaign file.

:func:`score` is the job behind ``omni-ml score``. It is built to be boring and safe:

1. **Validation first.** Arguments, the output path, the model (path or MLflow URI) and the
   histories are all checked before any customer is scored; bad input raises an
   :class:`~omni_ml.exceptions.OmniMLError` (CLI exit code 2) naming what to fix.
2. **Bounded memory.** Customers are split into ``chunks`` buckets by a stable hash of their id
   (:mod:`omni_ml.scoring._hashing`) and scored, checked and written one bucket after another, so
   features, SHAP values and decisions exist for one chunk at a time. When the histories are parquet
   files with a ``customer_id`` on every row (resolved histories, e.g. written by ``omni-ml resolve``),
   each chunk also *reads* only its own customers' rows: the lazy parquet scans are filtered by the
   bucket and the chunk is validated against the input contract on its own
   (:func:`read_chunk`); the file is renamed only after every chunk passed, so a bad row anywhere
   still leaves no output. Otherwise (csv files, identifier-only rows that need the global identity
   resolution) the histories are loaded and resolved once, in memory, and only the scoring is chunked.
3. **Measurement built in.** A deterministic control group: customer ``c`` is held out when
   ``uniform(stable_hash(c, seed)) < control_fraction``. A held-out customer keeps the model's
   recommendation in ``recommended_channel`` (so treated and control customers with the same
   recommendation can be compared like with like, at customer level) while ``best_channel``
   becomes ``no_contact`` with rule ``control_group``; a control customer who would not have been
   contacted anyway keeps the rule that paused them. The group depends only on the id and the
   seed: the same across reruns, chunk counts, engines and library versions.
4. **Atomic and reproducible output.** Rows stream into a temporary file next to ``out`` that is
   renamed only when complete (:mod:`omni_ml.scoring._writer`). The file is ordered by
   ``(stable_hash(customer_id), customer_id)`` -- a fixed pseudo-random order that does not depend
   on the number of chunks -- so rerunning with the same inputs gives the same bytes, whatever
   ``chunks`` is and on Spark too.
5. **Lineage.** Every row carries ``model_uri``, ``model_version`` and ``run_id`` (the last two
   null for a model loaded from a local file).

6. **Exploration** (``explore > 0``): a share of the customers outside the control group get an action
   drawn at random among their allowed options (``no_contact`` included; rule ``explore``), with the
   same hash family, independent of the control group; every row's ``assignment_probability`` is the
   probability of its logged action under the whole design (:func:`finish_chunk`).

Columns of the campaign file: ``customer_id, as_of, propensity, propensity_decile, best_channel,
recommended_channel, control_group, assignment_probability, expected_uplift, expected_value, customer_value,
score_<channel>..., rule, offer_category, suppressed_category, reason_1..reason_K,
channel_reason_1..channel_reason_K, model_uri, model_version, run_id``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl

from omni_ml._time import as_utc
from omni_ml._unprofiled import check_mode
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError
from omni_ml.scoring import _monitor

# Re-exported: imported from omni_ml.scoring elsewhere (measure, spark) as before the module was split.
from omni_ml.scoring._chunks import CONTROL_RULE as CONTROL_RULE
from omni_ml.scoring._chunks import EXPLORE_RULE as EXPLORE_RULE
from omni_ml.scoring._chunks import VALUE_RULES as VALUE_RULES
from omni_ml.scoring._chunks import _Job as _Job
from omni_ml.scoring._chunks import (
    _run_monitored,
    _scored_stream,
    campaign_schema,
    finish_chunk,
)
from omni_ml.scoring._inputs import (
    LoadedCampaignModel,
    _check_arguments,
    _check_dates,
    _load_model,
    _open_histories,
    _OpenedHistories,
    _profiling_options,
    _refuse_stale,
    chunk_histories,
    histories_for_job,
    read_chunk,
    streaming_tables,
)
from omni_ml.scoring._summary import ScoringSummary, _progress, _Tally
from omni_ml.scoring._writer import AtomicTableWriter

# Classes report this package as their home: pickles (a _Job shipped to Spark executors) and docs name
# omni_ml.scoring.X, as before the module was split.
LoadedCampaignModel.__module__ = ScoringSummary.__module__ = _Job.__module__ = __name__

__all__ = [
    "CHUNK_CUSTOMERS",
    "LoadedCampaignModel",
    "ScoringSummary",
    "campaign_schema",
    "chunk_histories",
    "finish_chunk",
    "histories_for_job",
    "read_chunk",
    "score",
    "streaming_tables",
]

CHUNK_CUSTOMERS = 250_000
"""Customers per chunk when ``chunks`` is not given."""


# ----------------------------------------------------------------------------- validation


# ----------------------------------------------------------------------------- the job


def score(
    hist_or_dir: Histories | str | Path,
    *,
    model: Any,
    as_of: str | dt.date | dt.datetime,
    out: str | Path,
    reasons: int = 3,
    control_fraction: float = 0.1,
    seed: int = 0,
    chunks: int | None = None,
    progress: bool = True,
    engine: Literal["polars", "spark"] = "polars",
    tracking_uri: str | None = None,
    explore: float = 0.0,
    monitor: Any = None,
    fail_on_drift: bool = False,
    allow_stale: bool = False,
    unprofiled: Literal["anonymous", "exclude"] | None = None,
) -> ScoringSummary:
    """Score every customer as of ``as_of`` and write the campaign file ``out`` atomically.

    Parameters
    ----------
    hist_or_dir
        A histories directory (validated by :func:`omni_ml.load_histories`) or a :class:`Histories`.
        Identifier-only rows are resolved (:func:`omni_ml.resolve_identities`) before chunking.
    model
        A fitted :class:`omni_ml.campaign.CampaignModel`, a local path to one saved with
        ``CampaignModel.save``, or an MLflow URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
        ``runs:/RUN_ID/campaign_model``).
    as_of
        Scoring moment: features see history strictly before it; consent is the state as of it.
    out
        Target file, ``.parquet`` or ``.csv``; its directory must exist. Replaced atomically.
    reasons
        Reason codes per customer (``reason_1..reason_K``); 0 skips explanations (faster).
    control_fraction
        Share of customers held out from contact, in ``[0, 1)``.
    seed
        Campaign seed of the control group: same seed, same group.
    chunks
        Number of customer buckets processed one after another; ``None`` picks one chunk per
        :data:`CHUNK_CUSTOMERS` customers. The output does not depend on it.
    progress
        Show a progress bar over chunks (on stderr).
    engine
        ``"polars"`` (this process) or ``"spark"`` (one Spark task per chunk, see
        :mod:`omni_ml.scoring.spark`; needs ``pip install omni_ml[spark]``).
    tracking_uri
        MLflow tracking URI for ``models:/`` and ``runs:/`` models (default: the environment's).
    explore
        Share ``F`` in ``[0, 1)`` of the customers outside the control group whose action is drawn at random
        among their allowed options, ``no_contact`` included (rule ``explore``; see :func:`finish_chunk`).
        Every row's ``assignment_probability`` is the probability of its ``best_channel`` under the whole
        design, so the file's outcomes give exact importance weights. ``0``: no exploration.
    monitor
        Monitoring thresholds (:class:`omni_ml.monitor.MonitorConfig` or a mapping of its fields; ``None``:
        defaults; ``False``: off). The run is compared with the model's training reference and the report
        written atomically to ``<out stem>.monitor.parquet`` beside ``out`` (and, for a model from MLflow,
        logged as a monitoring run linked to the model's run). On Spark each task profiles its bucket and
        the driver gathers the profiles, so both engines write the same report.
    fail_on_drift
        Raise :class:`~omni_ml.exceptions.DriftError` and write no campaign file when the verdict is ``bad``.
    allow_stale
        Score even when the last event is more than the model's horizon before ``as_of`` (every
        customer then looks inactive); by default that is refused before any work.
    unprofiled
        People without a profiling consent at ``as_of``: ``"anonymous"`` scores them without personal features
        (``personalised`` false, population propensity and channel, a non-personal reason), ``"exclude"``
        leaves them out of the file; ``None``: the model's policy setting (default ``"anonymous"``). Whether
        profiling consent is required is decided once over all the histories (any profiling record), not per
        chunk.

    Returns
    -------
    ScoringSummary
        Counts per channel and rule, control size, lineage; ``.to_text()`` is the printed summary.

    Raises
    ------
    ConfigError
        A bad argument (extension, fraction, chunks ...).
    ModelNotFoundError
        The model path, run or alias does not exist.
    SchemaError, DataInsufficientError, LeakageError
        The histories cannot be scored at ``as_of``.
    ConsentError
        A decision would contact a customer without consent (the file is not written).
    DriftError
        ``fail_on_drift`` and the health verdict is ``bad`` (the file is not written).
    DataInsufficientError
        Also when the histories end more than the model's horizon before ``as_of`` (see ``allow_stale``).
    """
    started = time.perf_counter()
    out_path = Path(out)
    moment = as_utc(as_of)
    _check_arguments(out_path, reasons, control_fraction, seed, chunks, explore)
    if engine not in ("polars", "spark"):
        msg = f"engine must be 'polars' or 'spark' (got {engine!r})."
        raise ConfigError(msg)
    monitor_cfg = _monitor.monitor_config(monitor)
    if unprofiled is not None:
        check_mode(unprofiled, where="unprofiled (--unprofiled)")
    loaded = _load_model(model, tracking_uri=tracking_uri)
    opened = _open_histories(hist_or_dir, moment, loaded.model, allow_stale=allow_stale)
    scans, start, end = opened.scans, opened.start, opened.end
    n_customers = max(opened.n_customers, 1)
    n_chunks = chunks if chunks is not None else max(1, math.ceil(n_customers / CHUNK_CUSTOMERS))
    schema = campaign_schema(loaded.model, reasons=reasons)
    lineage = {"model_uri": loaded.model_uri, "model_version": loaded.model_version, "run_id": loaded.run_id}
    options = _profiling_options(loaded.model, unprofiled, opened.profiling_required)
    job = _Job(loaded.model, moment, reasons, float(control_fraction), seed, schema, lineage, float(explore), options)
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    watcher, unmonitored = _monitor.start(loaded.model, monitor_cfg, n_customers)
    frames = _scored_frames(engine, hist_or_dir, opened, job, n_chunks, out_path, spans, watcher)

    tally = _Tally()
    with AtomicTableWriter(out_path, schema) as writer, _progress(progress) as bar:
        task = bar.add_task("score", total=n_chunks, customers=0)
        for frame in frames:
            writer.write(frame)
            tally.add(frame)
            if watcher is not None:
                watcher.add_scores(frame)
            bar.update(task, advance=1, customers=tally.customers)
        if scans is not None and start is None and engine == "polars":
            # text timestamps: the first event is known only now that every chunk parsed its own
            _check_dates(min((a for a, _ in spans), default=None), moment, loaded.model)
            end = max((b for _, b in spans), default=None)
        stale = _refuse_stale(end, moment, loaded.model, allow_stale=allow_stale)
        outcome = None
        if watcher is not None:
            outcome = _monitor.finish(
                watcher,
                as_of=moment,
                out=out_path,
                model_uri=loaded.model_uri,
                model_version=loaded.model_version,
                run_id=loaded.run_id,
                tracking_uri=tracking_uri,
                fail_on_drift=fail_on_drift,
            )
        try:
            monitor_file = outcome.commit() if outcome is not None else None
            writer.commit()
        finally:
            if outcome is not None:
                outcome.discard()
    if stale is not None:
        warnings.warn(stale, UserWarning, stacklevel=2)
    return ScoringSummary(
        out=out_path,
        **tally.counts(),
        control_fraction=float(control_fraction),
        seed=seed,
        explore_fraction=float(explore),
        chunks=n_chunks,
        as_of=moment,
        model_uri=loaded.model_uri,
        model_version=loaded.model_version,
        run_id=loaded.run_id,
        seconds=time.perf_counter() - started,
        engine=engine,
        history_end=end,
        warnings=tuple(w for w in (stale, unmonitored) if w),
        monitor=outcome.report if outcome is not None else None,
        monitor_file=monitor_file,
        monitor_run_id=outcome.run_id if outcome is not None else None,
        unprofiled_mode=str(options.get("unprofiled") or "anonymous"),
    )


def _scored_frames(
    engine: str,
    hist_or_dir: Histories | str | Path,
    opened: _OpenedHistories,
    job: _Job,
    n_chunks: int,
    out_path: Path,
    spans: list[tuple[dt.datetime, dt.datetime]],
    profiler: Any,
) -> Iterator[pl.DataFrame]:
    """The scored chunks, one frame each, made lazily: on Spark, from parquet scans or from histories in memory."""
    if engine == "spark":
        import secrets

        from omni_ml.scoring.spark import scored_chunks_spark

        if not isinstance(hist_or_dir, str | Path):
            msg = "engine='spark' reads the histories on the executors: pass a directory, not a Histories object."
            raise ConfigError(msg)
        staging = out_path.parent / f".{out_path.name}.spark-{secrets.token_hex(4)}"
        spec = _monitor.profile_spec(profiler) if profiler is not None else None
        return scored_chunks_spark(
            Path(hist_or_dir).resolve(),
            job,
            n_chunks,
            staging_dir=staging.resolve(),
            profile=spec,
            on_profile=(lambda found: _monitor.add_profile(profiler, found)) if profiler is not None else None,
        )
    if opened.scans is not None:
        return _scored_stream(opened.scans, n_chunks, job, spans, profiler)
    hist = opened.hist
    assert hist is not None
    return (_run_monitored(job, chunk_histories(hist, b, n_chunks), profiler) for b in range(n_chunks))
