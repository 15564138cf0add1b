"""One MLflow run: its tags, parameters, metrics, artifacts, datasets, the pyfunc model and its registration."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from omni_ml._model_files import PYFUNC_SHA256_KEY, SHA256_TAG, dump_verified
from omni_ml.tracking._store import DEFAULT_EXPERIMENT, _tracking, ensure_store, store_lock, use_experiment

if TYPE_CHECKING:
    from omni_ml.campaign import CampaignModelLike


_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the omni_ml package: shipped with the pyfunc
_MODEL_CODE = _PACKAGE_DIR / "_mlflow_model.py"


MODEL_NAME_IN_RUN = "campaign_model"


@dataclasses.dataclass(frozen=True)
class TrackedRun:
    """What :func:`log_run` created: the run, the logged model and (if registered) its version."""

    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str | None = None
    version: str | None = None
    alias: str | None = None
    tracking_uri: str = ""
    alias_version: str | None = None

    @property
    def registered_uri(self) -> str | None:
        """``models:/NAME@ALIAS`` when the alias held this version once set, else ``models:/NAME/VERSION``."""
        if self.registered_name is None:
            return None
        if self.alias and self.alias_version in (None, self.version):
            return f"models:/{self.registered_name}@{self.alias}"
        return f"models:/{self.registered_name}/{self.version}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def dataset_fingerprint(frame: pl.DataFrame, *, time_column: str = "cutoff") -> dict[str, Any]:
    """Rows, customers, date range and a content hash of a table (no personal data).

    The hash is SHA-256 over polars' row hashes with a fixed seed: identical for identical content
    within one polars version.

    Examples
    --------
    >>> fp = dataset_fingerprint(pl.DataFrame({"customer_id": ["a", "b"], "x": [1, 2]}))
    >>> (fp["rows"], fp["customers"], len(fp["content_hash"]))
    (2, 2, 64)
    """
    row_hashes = frame.hash_rows(seed=0)
    digest = hashlib.sha256(row_hashes.to_numpy().tobytes())
    digest.update(json.dumps(list(frame.schema.keys())).encode())
    out: dict[str, Any] = {"rows": frame.height, "columns": frame.width, "content_hash": digest.hexdigest()}
    if "customer_id" in frame.columns:
        out["customers"] = frame["customer_id"].n_unique()
    if time_column in frame.columns and frame.height:
        out["start"] = str(frame[time_column].min())
        out["end"] = str(frame[time_column].max())
    return out


def _param_text(value: Any) -> str:
    """A parameter as text, floats to 6 significant digits (``0.9000000000000036`` -> ``0.9``)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        inner = ",".join(_param_text(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else inner
    return str(value)


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings flattened with dots; values as :func:`_param_text` (MLflow's 6,000-character limit).

    Examples
    --------
    >>> _flat_params({"policy": {"costs": {"direct_mail": 0.9000000000000036}}, "channels": ["email", "sms"]})
    {'policy.costs.direct_mail': '0.9', 'channels': 'email,sms'}
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_params(value, prefix=f"{name}."))
        else:
            flat[name] = _param_text(value)[:6000]
    return flat


def _clean_metric_name(name: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /:")
    return "".join(c if c in allowed else "_" for c in name)


def log_run(
    model: CampaignModelLike,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    datasets: Mapping[str, pl.DataFrame] | None = None,
    figures: Mapping[str, Any] | None = None,
    tables: Mapping[str, pl.DataFrame] | None = None,
    texts: Mapping[str, str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    register_as: str | None = None,
    alias: str | None = None,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    input_example: Mapping[str, str] | None = None,
) -> TrackedRun:
    """Log one training as one MLflow run and the campaign model as a pyfunc (optionally registered).

    Parameters
    ----------
    model
        A fitted :class:`~omni_ml.campaign.CampaignModel` (anything picklable with
        ``.score(hist, as_of, reasons=k)``).
    metrics
        Flat ``name -> value``; non-finite values are skipped.
    params
        Nested mappings are flattened with dots (``propensity.num_leaves``).
    datasets
        ``context -> frame``: logged as MLflow datasets with fingerprints (rows, customers,
        date range, content hash) as tags. Only aggregate-free tables of ids and numeric features.
    figures, tables, texts
        Artifacts: matplotlib figures (PNG), polars tables (CSV), text files.
    register_as, alias
        Register the model under this name and point ``alias`` (e.g. ``champion``) at the new version.

    Returns
    -------
    TrackedRun
        Run id, model URI and registered version.
    """
    if alias and not register_as:
        msg = "alias given without register_as. Hint: pass --register-as NAME together with --alias."
        raise ValueError(msg)
    with _run(experiment, run_name=run_name, tracking_uri=tracking_uri, tags=tags) as (run, exp, uri):
        info, version, held = _log_contents(
            model,
            uri,
            metrics=metrics,
            params=params,
            datasets=datasets,
            figures=figures,
            tables=tables,
            texts=texts,
            register_as=register_as,
            alias=alias,
            input_example=input_example,
        )
    return TrackedRun(
        run_id=run.info.run_id,
        experiment_id=exp.experiment_id,
        model_uri=info.model_uri,
        registered_name=register_as,
        version=version,
        alias=alias,
        tracking_uri=uri,
        alias_version=held,
    )


#: Tag set on a run whose body raised: ``ExceptionType: message`` (first 5,000 characters).
ERROR_TAG = "omni_ml.error"


@contextmanager
def _run(
    experiment: str,
    *,
    run_name: str | None,
    tracking_uri: str | None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[tuple[Any, Any, str]]:
    """One MLflow run around the body: yields ``(run, experiment, resolved_uri)``.

    The run is started before the body runs, so its duration is the whole job. When the body raises,
    the error is written to the tag :data:`ERROR_TAG`, the run ends ``FAILED`` (``KILLED`` on a keyboard
    interrupt) and the exception propagates; otherwise it ends ``FINISHED``.
    """
    from importlib.metadata import version as _dist_version

    import mlflow

    with _tracking(tracking_uri) as uri:
        ensure_store(uri)
        exp = use_experiment(experiment, uri)
        all_tags = {"omni_ml.version": _dist_version("omni_ml"), "omni_ml.kind": "campaign_model"}
        commit = _git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        all_tags.update(tags or {})
        run = mlflow.start_run(run_name=run_name, tags=all_tags)
        try:
            yield run, exp, uri
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            try:
                mlflow.set_tag(ERROR_TAG, f"{type(exc).__name__}: {exc}"[:5000])
            finally:
                mlflow.end_run(status=status)
            raise
        mlflow.end_run(status="FINISHED")


def _log_contents(
    model: Any,
    uri: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    datasets: Mapping[str, pl.DataFrame] | None = None,
    figures: Mapping[str, Any] | None = None,
    tables: Mapping[str, pl.DataFrame] | None = None,
    texts: Mapping[str, str] | None = None,
    register_as: str | None = None,
    alias: str | None = None,
    input_example: Mapping[str, str] | None = None,
    series: Mapping[str, Sequence[tuple[int, float, int]]] | None = None,
    training_set: Mapping[str, Any] | None = None,
    source: str | None = None,
    description: str | None = None,
    version_tags: Mapping[str, str] | None = None,
) -> tuple[Any, str | None, str | None]:
    """Log everything of :func:`log_run` into the active run: (model info, registered version, alias holder).

    The alias holder is the version the registry says ``alias`` points at right after it was set.

    ``series`` are metric histories (``name -> [(step, value, timestamp_ms)]``: per-cutoff back-test metrics,
    the learning curve). ``training_set`` is a training-set fingerprint (``TrainingSet.fingerprint``) logged as
    the MLflow dataset ``training_set`` (metadata only, source = the histories directory ``source``). Every
    dataset is linked to the logged model. A registered version gets ``description`` and ``version_tags``.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    if params:
        mlflow.log_params(_flat_params(params))
    if metrics:
        clean = {
            _clean_metric_name(k): float(v)
            for k, v in metrics.items()
            if v is not None and float(v) == float(v) and abs(float(v)) != float("inf")
        }
        mlflow.log_metrics(clean)
    if series:
        _log_series(series)
    for name, fig in (figures or {}).items():
        import matplotlib.pyplot as plt

        mlflow.log_figure(fig, f"plots/{name}.png")
        plt.close(fig)
    for name, table in (tables or {}).items():
        mlflow.log_text(table.write_csv(), f"tables/{name}.csv")
    for name, text in (texts or {}).items():
        mlflow.log_text(text, name)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "campaign_model.joblib"
        # The run records the bundle's sha256; loading checks it before unpickling.
        digest = dump_verified(model, bundle)
        mlflow.set_tag(SHA256_TAG, digest)
        signature = ModelSignature(
            inputs=Schema([ColSpec("string", "histories_path"), ColSpec("string", "as_of")]),
            outputs=_output_schema(model),
            params=ParamSchema([ParamSpec("reasons", "long", 3)]),
        )
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=str(_MODEL_CODE),
            artifacts={"campaign_model": str(bundle)},
            # the pyfunc's load_context checks the bundle against it before unpickling (omni_ml/_mlflow_model.py)
            model_config={PYFUNC_SHA256_KEY: digest},
            signature=signature,
            input_example=dict(input_example) if input_example else None,
            pip_requirements=_requirements(),
            code_paths=[str(_PACKAGE_DIR)],
        )
    _log_datasets(datasets or {}, training_set, source, model_id=getattr(info, "model_id", None))
    version = held = None
    if register_as:
        version, held = _register(
            info.model_uri, register_as, uri, alias=alias, description=description, version_tags=version_tags
        )
    return info, version, held


def _register(
    model_uri: str,
    name: str,
    uri: str,
    *,
    alias: str | None,
    description: str | None,
    version_tags: Mapping[str, str] | None,
) -> tuple[str, str | None]:
    """Register ``model_uri`` as a new version of ``name`` and move ``alias`` to it, as one step under the store lock.

    The alias moves only forward: if it already points at a *newer* version (registered by a concurrent
    job), it stays there. Returns ``(version, the version the alias holds now, read back from the registry)``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri, uri)
    with store_lock(uri):
        version = str(mlflow.register_model(model_uri, name).version)
        if description:
            client.update_registered_model(name, description=_MODEL_DESCRIPTION)
            client.update_model_version(name, version, description=description)
        for key, value in (version_tags or {}).items():
            client.set_model_version_tag(name, version, key, value)
        held = None
        if alias:
            try:
                current: str | None = str(client.get_model_version_by_alias(name, alias).version)
            except MlflowException:
                current = None
            if current is None or int(current) < int(version):
                client.set_registered_model_alias(name, alias, version)
            held = str(client.get_model_version_by_alias(name, alias).version)
    return version, held


_MODEL_DESCRIPTION = (
    "omni_ml campaign model: histories directory + as-of date in, one row per customer out (calibrated purchase "
    "propensity and decile, best channel or no_contact under consent and contact-pressure rules, expected uplift "
    "and value, reasons in words, lineage). Each version's description and tags give its as-of date, horizon, "
    "features and back-test AUC."
)


def _log_series(series: Mapping[str, Sequence[tuple[int, float, int]]]) -> None:
    """Metric histories in batches of MLflow's limit (1,000 metrics per call); non-finite values skipped."""
    import mlflow
    from mlflow.entities import Metric

    batch = [
        Metric(_clean_metric_name(name), float(value), int(timestamp), int(step))
        for name, points in series.items()
        for step, value, timestamp in points
        if value == value and abs(value) != float("inf")
    ]
    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    for start in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[start : start + 1000])


def _log_datasets(
    datasets: Mapping[str, pl.DataFrame],
    training_set: Mapping[str, Any] | None,
    source: str | None,
    *,
    model_id: str | None,
) -> None:
    """Frames as MLflow datasets (fingerprints as tags), the training set as metadata; all linked to the model."""
    import mlflow
    from mlflow.entities import LoggedModelInput

    link = LoggedModelInput(model_id) if model_id else None
    for context, frame in datasets.items():
        fp = dataset_fingerprint(frame)
        ds = mlflow.data.from_polars(  # type: ignore[attr-defined]
            frame, name=f"{context}_set", digest=fp["content_hash"][:16]
        )
        mlflow.log_input(ds, context=context, tags={k: str(v) for k, v in fp.items()}, model=link)
        mlflow.log_dict(fp, f"datasets/{context}_fingerprint.json")
    if training_set:
        from omni_ml._mlflow_data import metadata_dataset

        meta = metadata_dataset(
            str(source) if source else "histories", name="training_set", digest=str(training_set["content_hash"])[:16]
        )
        tags = {k: _param_text(v) for k, v in training_set.items()}
        mlflow.log_input(meta, context="training", tags=tags, model=link)
        mlflow.log_dict(dict(training_set), "datasets/training_fingerprint.json")


def _output_schema(model: Any) -> Any:
    """The campaign file's columns as an MLflow schema (``None`` for a model without ``output_schema``)."""
    from mlflow.types.schema import ColSpec, Schema

    if not callable(getattr(model, "output_schema", None)):
        return None
    kinds = {pl.String: "string", pl.Float64: "double", pl.Float32: "float", pl.Boolean: "boolean"}
    cols = []
    for name, dtype in model.output_schema(reasons=3).items():
        if dtype.is_integer():
            kind = "long"
        elif isinstance(dtype, pl.Datetime):
            kind = "datetime"
        else:
            kind = kinds.get(type(dtype), "string")
        cols.append(ColSpec(kind, name))  # type: ignore[arg-type]
    return Schema(cols)  # type: ignore[arg-type]


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    dists = ("polars", "pyarrow", "numpy", "scipy", "scikit-learn", "lightgbm", "shap", "numba", "mlflow", "joblib")
    for dist in dists:
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs
