"""The history of a model's scoring runs (``omni-ml monitor MODEL_URI``): drift, expected vs realised, volumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml.exceptions import ConfigError, ModelNotFoundError

__all__ = ["MonitorHistory", "model_run_id", "monitor_history", "plot_history"]


@dataclasses.dataclass(frozen=True)
class MonitorHistory:
    """The last scoring runs of one model, oldest first (:func:`omni_ml.monitor._mlflow.monitoring_runs` columns)."""

    model_uri: str
    model_run_id: str
    runs: pl.DataFrame

    def to_text(self) -> str:
        """A table for the terminal: one line per scoring run."""
        if self.runs.height == 0:
            return (
                f"{self.model_uri} (run {self.model_run_id}): no scoring runs monitored yet. Hint: `omni-ml score "
                f"--model {self.model_uri} ...` logs one per job."
            )
        channels = [c for c in self.runs.columns if c.startswith("share_contacted_")]
        head = (
            f"{'as of':<11}{'verdict':<8}{'customers':>11}{'max PSI':>9}{'drifting':>9}{'decile PSI':>11}"
            f"{'AUC exp':>9}{'AUC real':>9}{'buyers exp':>11}{'buyers real':>12}"
            + "".join(f"{c[len('share_contacted_') :][:10]:>11}" for c in channels)
        )
        lines = [f"scoring runs of {self.model_uri} (model run {self.model_run_id}), oldest first:", head]

        def num(value: Any, fmt: str) -> str:
            return "-" if value is None or value != value else format(value, fmt)

        for r in self.runs.iter_rows(named=True):
            lines.append(
                f"{r['as_of'][:10]:<11}{r['verdict'] + ('*' if r['status'] == 'blocked' else ''):<8}"
                f"{num(r['monitor_customers'], ',.0f'):>11}{num(r['monitor_max_psi'], '.3f'):>9}"
                f"{num(r['monitor_features_drifting'], '.0f'):>9}{num(r['monitor_score_psi'], '.3f'):>11}"
                f"{num(r['expected_auc'], '.3f'):>9}{num(r['realised_auc'], '.3f'):>9}"
                f"{num(r['expected_conversions_contacted'], ',.0f'):>11}"
                f"{num(r['realised_conversions_contacted'], ',.0f'):>12}"
                + "".join(f"{num(r[c], '.1%'):>11}" for c in channels)
            )
        lines.append("channel columns: share of customers contacted; * = blocked by --fail-on-drift (no campaign file)")
        return "\n".join(lines)


def model_run_id(model_uri: str, tracking_uri: str) -> str:
    """The training run behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/...``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri, tracking_uri)
    try:
        if model_uri.startswith("models:/"):
            ref = model_uri[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                return str(client.get_model_version_by_alias(name, alias).run_id)
            name, _, version = ref.partition("/")
            return str(client.get_model_version(name, version).run_id)
        if model_uri.startswith("runs:/"):
            run_id = model_uri[len("runs:/") :].split("/", 1)[0]
            client.get_run(run_id)
            return run_id
    except MlflowException as exc:
        msg = f"model {model_uri!r} not found in {tracking_uri}: {str(exc).splitlines()[0]}."
        raise ModelNotFoundError(msg) from exc
    msg = (
        f"model {model_uri!r}: monitoring history lives in MLflow. Hint: pass models:/NAME@ALIAS, "
        "models:/NAME/VERSION or runs:/RUN_ID/campaign_model (a model file scored locally has only its "
        "<campaign>.monitor.parquet files)."
    )
    raise ConfigError(msg)


def monitor_history(model_uri: str, *, runs: int = 10, tracking_uri: str | None = None) -> MonitorHistory:
    """The last ``runs`` monitored scoring runs of a model in MLflow.

    Raises
    ------
    ConfigError
        ``runs`` is not a positive integer, or ``model_uri`` is a local file.
    ModelNotFoundError
        The model, version, alias or run does not exist in the tracking store.
    """
    from omni_ml.monitor._mlflow import monitoring_runs
    from omni_ml.tracking import resolve_tracking_uri

    if not isinstance(runs, int) or isinstance(runs, bool) or not 1 <= runs <= 1000:
        msg = f"--runs must be an integer in 1..1000 (got {runs!r})."
        raise ConfigError(msg)
    uri = resolve_tracking_uri(tracking_uri)
    run_id = model_run_id(model_uri, uri)
    return MonitorHistory(model_uri, run_id, monitoring_runs(uri, run_id, n=runs))


def plot_history(history: MonitorHistory, path: str | Path) -> Path:
    """Three panels over the runs: drift (max feature PSI, decile PSI), AUC expected vs realised, contacted share."""
    from matplotlib.figure import Figure

    r = history.runs
    x = list(range(r.height))
    labels = [a[:10] for a in r["as_of"].to_list()]
    fig = Figure(figsize=(8, 8))
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(x, r["monitor_max_psi"].to_list(), marker="o", label="max feature PSI")
    axes[0].plot(x, r["monitor_score_psi"].to_list(), marker="s", label="decile PSI")
    axes[0].set_ylabel("drift")
    axes[0].legend()
    axes[1].plot(x, r["expected_auc"].to_list(), marker="o", label="expected AUC (CBPE)")
    axes[1].plot(x, r["realised_auc"].to_list(), marker="x", linestyle="none", label="realised AUC")
    axes[1].set_ylabel("AUC")
    axes[1].legend()
    for c in [c for c in r.columns if c.startswith("share_contacted_")]:
        axes[2].plot(x, r[c].to_list(), marker=".", label=c[len("share_contacted_") :])
    axes[2].set_ylabel("share contacted")
    axes[2].legend(fontsize=8)
    axes[2].set_xticks(x, labels, rotation=45)
    fig.suptitle(f"Scoring runs of {history.model_uri}")
    target = Path(path)
    fig.savefig(target, dpi=100, format="png", bbox_inches="tight")
    return target
