"""Loading a logged campaign model by URI (checksum first) and comparing the runs of an experiment."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from omni_ml._model_files import SHA256_TAG, load_verified
from omni_ml.exceptions import ModelNotFoundError
from omni_ml.tracking._runs import MODEL_NAME_IN_RUN
from omni_ml.tracking._store import DEFAULT_EXPERIMENT, _sqlite_file, _tracking, resolve_tracking_uri

if TYPE_CHECKING:
    from omni_ml.campaign import CampaignModelLike


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A campaign model with its lineage (written into every campaign file)."""

    model: CampaignModelLike
    model_uri: str
    model_version: str | None
    run_id: str | None


def load_campaign_model(uri: str, *, tracking_uri: str | None = None) -> LoadedModel:
    """Load a campaign model from ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/...`` or a path.

    Raises
    ------
    ModelNotFoundError
        When the path, run, model name, version or alias does not exist (the message lists what does).
    """
    if "://" not in uri and not uri.startswith(("models:/", "runs:/")):
        path = Path(uri)
        if not path.exists():
            msg = (
                f"model {uri!r}: no such file. Hint: pass models:/NAME@ALIAS, runs:/RUN_ID/{MODEL_NAME_IN_RUN}, "
                "or the path written by `omni-ml train --out`."
            )
            raise ModelNotFoundError(msg)
        return LoadedModel(load_verified(path), str(path), None, None)

    import mlflow
    from mlflow.exceptions import MlflowException

    store = resolve_tracking_uri(tracking_uri)
    db = _sqlite_file(store)
    if db is not None and not db.exists():  # MLflow would create an empty store here and then not find the model
        msg = (
            f"model {uri!r}: the tracking store {store} does not exist (no {db.name} in {db.parent}). Hint: pass "
            "--tracking-uri (or set MLFLOW_TRACKING_URI) to the store `omni-ml train` logged to, "
            "or run from its directory."
        )
        raise ModelNotFoundError(msg)
    with _tracking(store) as resolved:
        client = mlflow.MlflowClient(resolved, resolved)
        version: str | None = None
        run_id: str | None = None
        try:
            if uri.startswith("models:/"):
                ref = uri[len("models:/") :]
                if "@" in ref:
                    name, alias = ref.split("@", 1)
                    mv = client.get_model_version_by_alias(name, alias)
                else:
                    name, _, ver = ref.partition("/")
                    mv = client.get_model_version(name, ver)
                version, run_id = str(mv.version), mv.run_id
            elif uri.startswith("runs:/"):
                run_id = uri[len("runs:/") :].split("/", 1)[0]
                client.get_run(run_id)
            expected = client.get_run(run_id).data.tags.get(SHA256_TAG) if run_id else None
            # Only the bundle is fetched and unpickled, after its checksum matched the run's record;
            # the logged pyfunc code is not imported here.
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri.rstrip("/")))
        except MlflowException as exc:
            msg = f"model {uri!r} not found in {resolved}: {str(exc).splitlines()[0]}. {_registry_hint(client, uri)}"
            raise ModelNotFoundError(msg) from exc
    if not expected:
        msg = (
            f"model {uri!r}: its run records no {SHA256_TAG} tag, so the bundle is not unpickled (a model file can"
            " run code when loaded). Hint: train and log the model again with this version of omni_ml."
        )
        raise ModelNotFoundError(msg)
    bundle = local / "artifacts" / "campaign_model.joblib"
    return LoadedModel(load_verified(bundle, expected_sha256=expected), uri, version, run_id)


def _registry_hint(client: Any, uri: str) -> str:
    if not uri.startswith("models:/"):
        return "Hint: check the run id with `mlflow ui` or compare_runs()."
    name = uri[len("models:/") :].split("@")[0].split("/")[0]
    try:
        model = client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - only building a hint
        names = [m.name for m in client.search_registered_models(max_results=20)]
        return f"Hint: registered models here: {names or 'none'}; train with --register-as {name}."
    aliases = sorted(getattr(model, "aliases", {}) or {})
    return f"Hint: {name!r} has aliases {aliases or 'none'}; set one with `omni-ml train ... --alias champion`."


def compare_runs(
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    tracking_uri: str | None = None,
    metrics: list[str] | None = None,
    max_results: int = 1000,
) -> pl.DataFrame:
    """One row per run of ``experiment``, newest first, with its key parameters and metrics.

    Columns: ``run_id, run_name, start_time, status, registered`` then ``params.*`` and ``metrics.*``
    (all metrics, or only those named in ``metrics``).
    """
    import mlflow

    with _tracking(tracking_uri):
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            return pl.DataFrame(schema={"run_id": pl.String, "run_name": pl.String})
        runs = mlflow.search_runs(
            experiment_ids=[exp.experiment_id],
            output_format="list",
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "start_time": dt.datetime.fromtimestamp(r.info.start_time / 1000, tz=dt.UTC),
            "status": r.info.status,
        }
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        wanted = r.data.metrics if metrics is None else {k: r.data.metrics.get(k) for k in metrics}
        row.update({f"metrics.{k}": v for k, v in wanted.items()})
        rows.append(row)
    if not rows:
        return pl.DataFrame(schema={"run_id": pl.String, "run_name": pl.String})
    return pl.DataFrame(rows, infer_schema_length=None)
