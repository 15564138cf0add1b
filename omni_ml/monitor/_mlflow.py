"""Monitoring runs in MLflow: one run per scoring job, linked to the model's run by a tag, read back in order.

A monitoring run lives in the experiment of the model's training run and carries the tags
``omni_ml.kind = monitor``, ``omni_ml.model_run_id`` (the training run), ``omni_ml.model_uri``,
``omni_ml.as_of``, ``omni_ml.verdict`` and ``omni_ml.campaign_file``; its metrics are
:meth:`MonitorReport.metrics`; its artifacts the drift table (``monitor/monitor.parquet``; also
``monitor/feature_drift.csv`` and ``monitor/input_drift.csv``) and two plots (``monitor/drift.png``: PSI
of the most drifting features; ``monitor/deciles.png``: decile occupancy vs training). ``omni-ml measure``
later adds ``realised_*`` metrics to the same run.

Every function takes a *resolved* tracking URI and talks to it through an ``MlflowClient``, never
through MLflow's process-wide fluent state.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml.monitor._run import MonitorReport

__all__ = [
    "KIND_TAG",
    "MODEL_RUN_TAG",
    "find_monitoring_run",
    "log_monitoring_run",
    "log_realised",
    "monitoring_runs",
    "plot_report",
    "previous_channel_shares",
]

KIND_TAG = "omni_ml.kind"
MODEL_RUN_TAG = "omni_ml.model_run_id"
_AS_OF_TAG = "omni_ml.as_of"


def _client(tracking_uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri, tracking_uri)


def _search(tracking_uri: str, model_run_id: str, *, extra: str = "", n: int = 1000) -> list[Any]:
    client = _client(tracking_uri)
    model_run = client.get_run(model_run_id)
    query = f"tags.`{MODEL_RUN_TAG}` = '{model_run_id}' and tags.`{KIND_TAG}` = 'monitor'" + extra
    return list(
        client.search_runs(
            [model_run.info.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=n
        )
    )


def previous_channel_shares(tracking_uri: str, model_run_id: str) -> dict[str, float] | None:
    """The contacted share per channel of the latest monitoring run of the model (``None`` when none)."""
    runs = _search(tracking_uri, model_run_id, n=1)
    if not runs:
        return None
    prefix = "share_contacted_"
    return {k[len(prefix) :]: float(v) for k, v in runs[0].data.metrics.items() if k.startswith(prefix)}


def plot_report(report: MonitorReport, directory: Path) -> list[Path]:
    """Write ``drift.png`` (PSI of the 15 most drifting features) and ``deciles.png``; returns the paths.

    Nothing without matplotlib (the ``omni_ml[lab]`` extra): the run then holds the tables only.
    """
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        return []
    # A pyplot-free Figure: no global backend or figure state (a notebook's inline plots stay as they are).
    from matplotlib.figure import Figure

    paths = []
    top = report.features.head(15).reverse()
    fig = Figure(figsize=(8, 0.35 * max(top.height, 3) + 1.2))
    ax = fig.subplots()
    colours = ["#c0392b" if f in ("drift", "nulls") else "#e67e22" if f == "shift" else "#7f8c8d" for f in top["flag"]]
    labels = [d if len(d) <= 55 else d[:54] + "…" for d in top["description"].to_list()]
    ax.barh(labels, top["psi"].to_list(), color=colours)
    ax.axvline(report.config.psi_bad, color="#c0392b", linestyle="--", linewidth=1, label="drift")
    ax.axvline(report.config.psi_warn, color="#e67e22", linestyle=":", linewidth=1, label="shift")
    ax.set_xlabel("population stability index vs training")
    ax.set_title(f"Feature drift, scoring run as of {report.as_of:%Y-%m-%d} (verdict {report.verdict})")
    ax.legend(loc="lower right")
    paths.append(directory / "drift.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")

    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    d = report.deciles
    x = d["decile"].to_numpy()
    ax.bar(x - 0.2, d["share_reference"].to_list(), width=0.4, label="training", color="#95a5a6")
    ax.bar(x + 0.2, d["share"].to_list(), width=0.4, label="this run", color="#2980b9")
    ax.set_xticks(x)
    ax.set_xlabel("propensity decile (1 = top, fixed training thresholds)")
    ax.set_ylabel("share of customers")
    ax.set_title(f"Decile occupancy (PSI {report.score_psi:.3f})")
    ax.legend()
    paths.append(directory / "deciles.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    return paths


def log_monitoring_run(
    report: MonitorReport,
    *,
    tracking_uri: str,
    model_run_id: str,
    model_uri: str | None,
    model_version: str | None,
    campaign_file: str | None,
    status: str = "written",
) -> str:
    """Log one scoring run's monitoring as a new MLflow run beside the model's run; returns its run id.

    ``status`` is ``written`` (the campaign file was written) or ``blocked`` (``--fail-on-drift``
    stopped the job before writing it).
    """
    client = _client(tracking_uri)
    experiment_id = client.get_run(model_run_id).info.experiment_id
    tags = {
        KIND_TAG: "monitor",
        MODEL_RUN_TAG: model_run_id,
        "omni_ml.model_uri": model_uri or "",
        "omni_ml.model_version": model_version or "",
        _AS_OF_TAG: report.as_of.isoformat(),
        "omni_ml.verdict": report.verdict,
        "omni_ml.campaign_file": campaign_file or "",
        "omni_ml.status": status,
        "mlflow.runName": f"monitor {report.as_of:%Y-%m-%d} ({report.verdict})",
    }
    run = client.create_run(experiment_id, tags=tags)
    run_id: str = run.info.run_id
    try:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k.replace("/", "_"), float(v), now, 0) for k, v in report.metrics().items() if v == v]
        client.log_batch(run_id, metrics=metrics)
        _log_scoring_population(client, run_id, report, model_run_id, campaign_file)
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(tmp)
            report.to_frame().write_parquet(where / "monitor.parquet")
            report.features.write_csv(where / "feature_drift.csv")
            report.inputs.write_csv(where / "input_drift.csv")
            tables = [where / "monitor.parquet", where / "feature_drift.csv", where / "input_drift.csv"]
            for path in [*tables, *plot_report(report, where)]:
                client.log_artifact(run_id, str(path), artifact_path="monitor")
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _log_scoring_population(
    client: Any, run_id: str, report: MonitorReport, model_run_id: str, campaign_file: str | None
) -> None:
    """The scored population as an MLflow dataset (metadata only: size, date, verdict) linked to the logged model."""
    from mlflow.entities import DatasetInput, InputTag, LoggedModelInput

    from omni_ml._mlflow_data import metadata_dataset

    digest = f"{report.as_of:%Y%m%d}-{report.customers}"
    meta = metadata_dataset(campaign_file or "campaign", name="scoring_population", digest=digest)
    tags = [
        InputTag("mlflow.data.context", "scoring"),
        InputTag("customers", str(report.customers)),
        InputTag("as_of", report.as_of.isoformat()),
    ]
    outputs = client.get_run(model_run_id).outputs
    models = [LoggedModelInput(o.model_id) for o in (outputs.model_outputs if outputs else [])]
    client.log_inputs(run_id, datasets=[DatasetInput(meta._to_mlflow_entity(), tags)], models=models or None)


def find_monitoring_run(tracking_uri: str, model_run_id: str, as_of: Any) -> str | None:
    """The latest monitoring run of the model at the scoring moment ``as_of`` (a datetime), or ``None``."""
    runs = _search(tracking_uri, model_run_id, extra=f" and tags.`{_AS_OF_TAG}` = '{as_of.isoformat()}'", n=1)
    return runs[0].info.run_id if runs else None


def log_realised(tracking_uri: str, run_id: str, realised: Mapping[str, float]) -> None:
    """Add the realised figures (``realised_*``) to a monitoring run, next to its estimates."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client = _client(tracking_uri)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in realised.items() if v == v])


_HISTORY_METRICS = (
    "monitor_customers",
    "monitor_verdict",
    "monitor_max_psi",
    "monitor_features_drifting",
    "monitor_inputs_drifting",
    "monitor_score_psi",
    "expected_auc",
    "realised_auc",
    "expected_conversions_contacted",
    "realised_conversions_contacted",
    "expected_lift_top_decile",
    "expected_lift_top_decile_corrected",
    "realised_lift_top_decile",
    "contacted",
)


def monitoring_runs(tracking_uri: str, model_run_id: str, n: int = 10) -> pl.DataFrame:
    """The last ``n`` monitoring runs of a model, oldest first: drift, expected vs realised, volumes per channel."""
    runs = _search(tracking_uri, model_run_id, n=n)
    rows = []
    channels: set[str] = set()
    for run in reversed(runs):
        m = run.data.metrics
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "as_of": run.data.tags.get(_AS_OF_TAG, ""),
            "verdict": run.data.tags.get("omni_ml.verdict", ""),
            "status": run.data.tags.get("omni_ml.status", ""),
        }
        row.update({k: m.get(k) for k in _HISTORY_METRICS})
        for k, v in m.items():
            if k.startswith("share_contacted_"):
                channels.add(k[len("share_contacted_") :])
                row[k] = v
        rows.append(row)
    schema: dict[str, Any] = {"run_id": pl.String, "as_of": pl.String, "verdict": pl.String, "status": pl.String}
    schema.update(dict.fromkeys(_HISTORY_METRICS, pl.Float64))
    schema.update({f"share_contacted_{c}": pl.Float64 for c in sorted(channels)})
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")
