"""The scoring job on Apache Spark: one Spark task per customer bucket, the same polars pipeline inside.

Needs the optional extra: ``pip install omni_ml[spark]`` (pyspark) and Java 17. The driver validates
everything first (exactly as :func:`omni_ml.scoring.score` does), then:

1. the fitted campaign model and the job settings are pickled once and **broadcast** to the
   executors (so ``models:/NAME@ALIAS`` is resolved once, on the driver, and every executor scores
   with exactly the same model version);
2. ``spark.range(n_chunks, numPartitions=n_chunks)`` makes one partition per bucket; ``mapInArrow``
   runs, for each bucket ``b``, the single-machine pipeline: read only the rows of the customers whose
   stable hash falls in bucket ``b`` (:func:`omni_ml.scoring.read_chunk` on resolved parquet histories;
   otherwise the whole directory is loaded and filtered, :func:`omni_ml.scoring.chunk_histories`), score
   them with :meth:`CampaignModel.score`, apply the control group and lineage
   (:func:`omni_ml.scoring.finish_chunk`) and return Arrow record batches;
3. the executors write their partitions as parquet into a hidden staging directory next to ``out``
   (on a cluster ``out`` and the histories must be on storage every node can read: HDFS, S3, NFS);
   the driver then streams the parts in bucket order into the same atomic writer as the
   single-machine job, so both engines produce byte-identical files;
4. when the run is monitored, each task also profiles its bucket as the single-machine job does (its
   input-window tally and the features of its sampled customers, ``omni_ml.scoring._monitor.chunk_profile``)
   and returns the profile pickled in one extra row (column ``__profile``); the driver adds it to the
   run's monitor and drops the row, so both engines write the same monitoring report too.

:func:`campaign_dataframe` returns the Spark DataFrame itself (before any file is written) for jobs
that want to keep working in Spark (``.write.saveAsTable(...)``).
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from omni_ml.exceptions import ConfigError

if TYPE_CHECKING:
    from omni_ml.scoring import _Job
    from omni_ml.scoring._monitor import ChunkProfile, ProfileSpec

_PROFILE = "__profile"  # the extra column of a monitored job: one pickled ChunkProfile per bucket

__all__ = ["campaign_dataframe", "local_session", "scored_chunks_spark"]


def local_session(app_name: str = "omni_ml-scoring", cores: int = 2) -> Any:
    """A local-mode SparkSession configured as ECOSYSTEM.md recommends (127.0.0.1, no UI, this Python)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        msg = "engine='spark' needs pyspark. Hint: pip install 'omni_ml[spark]' (and Java 17)."
        raise ConfigError(msg) from exc
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def _active_session() -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover
        msg = "engine='spark' needs pyspark. Hint: pip install 'omni_ml[spark]' (and Java 17)."
        raise ConfigError(msg) from exc
    # Under spark-submit a session (or its config) already exists: use it. Otherwise start a local one.
    return SparkSession.getActiveSession() or (
        SparkSession.builder.getOrCreate() if os.environ.get("SPARK_HOME") else local_session()
    )


def campaign_dataframe(
    spark: Any, histories_dir: str | Path, job: _Job, n_chunks: int, *, profile: ProfileSpec | None = None
) -> Any:
    """The campaign table as a Spark DataFrame: one partition per customer bucket, rows in file order.

    ``profile``: also profile each bucket for the run's monitor; the frame then has a binary column
    ``__profile``, null on the campaign rows, and one extra row per bucket holding its pickled
    ``ChunkProfile`` (every other column null).
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    empty = pl.DataFrame(schema=job.schema)
    if profile is not None:
        empty = empty.with_columns(pl.lit(None, pl.Binary).alias(_PROFILE))
    arrow_schema = empty.to_arrow().schema
    payload = spark.sparkContext.broadcast(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    directory = str(histories_dir)

    def score_buckets(batches: Iterator[Any]) -> Iterator[Any]:
        # Runs on the executors.
        from omni_ml.scoring import chunk_histories, histories_for_job, read_chunk, streaming_tables
        from omni_ml.scoring._monitor import chunk_profile

        work = pickle.loads(payload.value)
        scans = streaming_tables(directory)  # each task reads only its customers' rows when it can
        hist = None
        for batch in batches:
            for bucket in batch.column("id").to_pylist():
                if scans is not None:
                    chunk = read_chunk(scans, int(bucket), n_chunks, work.as_of)
                else:
                    hist = hist if hist is not None else histories_for_job(directory, work.as_of)
                    chunk = chunk_histories(hist, int(bucket), n_chunks)
                frame = work.run(chunk)
                if profile is not None:
                    found = pickle.dumps(chunk_profile(profile, work.model, chunk, frame), pickle.HIGHEST_PROTOCOL)
                    extra = empty.clear(1).with_columns(pl.lit(found, pl.Binary).alias(_PROFILE))
                    frame = pl.concat([frame.with_columns(pl.lit(None, pl.Binary).alias(_PROFILE)), extra])
                yield from frame.to_arrow().cast(arrow_schema).to_batches()

    return spark.range(0, n_chunks, 1, numPartitions=n_chunks).mapInArrow(
        score_buckets, from_arrow_schema(arrow_schema)
    )


def scored_chunks_spark(
    histories_dir: Path,
    job: _Job,
    n_chunks: int,
    *,
    staging_dir: Path,
    profile: ProfileSpec | None = None,
    on_profile: Callable[[ChunkProfile], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """Run the job on Spark and yield each bucket's rows on the driver, in bucket order.

    The staging directory (created here, removed afterwards, also on failure) receives the
    executors' parquet parts. With ``profile``, each bucket's profile goes to ``on_profile`` before
    its rows are yielded.
    """
    spark = _active_session()
    frame = campaign_dataframe(spark, histories_dir, job, n_chunks, profile=profile)
    try:
        frame.write.mode("overwrite").option("compression", "zstd").parquet(staging_dir.as_uri())
        parts = sorted(staging_dir.glob("part-*.parquet"), key=lambda p: int(p.name.split("-")[1]))
        for part in parts:
            rows = pl.read_parquet(part)
            if profile is None:
                yield rows
                continue
            is_profile = rows[_PROFILE].is_not_null()
            for payload in rows.filter(is_profile)[_PROFILE]:
                if on_profile is not None:
                    on_profile(pickle.loads(payload))  # noqa: S301  # written by this job's own executors
            yield rows.filter(~is_profile).drop(_PROFILE)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
