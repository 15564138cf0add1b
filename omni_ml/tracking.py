"""MLflow tracking: one run per training, the registered campaign model, loading by URI, run comparison.

With nothing configured, runs and the model registry live in a local SQLite store in the working
directory (``sqlite:///<cwd>/mlflow.db``); ``MLFLOW_TRACKING_URI`` or an explicit ``tracking_uri``
(CLI ``--tracking-uri``) point at a team server instead. The registered model is a models-from-code
pyfunc (``omni_ml/_mlflow_model.py``, MLflow 3's recommended form) carrying the fitted
:class:`~omni_ml.campaign.CampaignModel`: histories + as-of date in, campaign table out.

Nothing personal is logged: metrics, parameters, feature descriptions, plots, aggregate evaluation
tables and dataset fingerprints (row counts, date range, content hash) only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from omni_ml._model_files import PYFUNC_SHA256_KEY, SHA256_TAG, dump_verified, load_verified
from omni_ml.exceptions import ModelNotFoundError

if TYPE_CHECKING:
    from omni_ml.campaign import CampaignConfig, CampaignModel, CampaignModelLike
    from omni_ml.data import Histories

__all__ = [
    "LoadedModel",
    "TrackedRun",
    "artifact_root",
    "compare_runs",
    "dataset_fingerprint",
    "load_campaign_model",
    "log_run",
    "resolve_tracking_uri",
    "train_campaign",
    "use_experiment",
]

_MODEL_CODE = Path(__file__).with_name("_mlflow_model.py")
_PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = "omni_ml"
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


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A campaign model with its lineage (written into every campaign file)."""

    model: CampaignModelLike
    model_uri: str
    model_version: str | None
    run_id: str | None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI in force: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``./mlflow.db`` (SQLite).

    Examples
    --------
    >>> resolve_tracking_uri("sqlite:///tmp/x.db")
    'sqlite:///tmp/x.db'
    """
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextmanager
def _tracking(uri: str | None) -> Iterator[str]:
    """Point MLflow's fluent API at ``uri`` (resolved) for the duration, then restore what was set."""
    import mlflow

    resolved = resolve_tracking_uri(uri)
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ: restore it exactly.
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    try:
        yield resolved
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def artifact_root(uri: str) -> str | None:
    """Where a new experiment's artifacts go for tracking store ``uri``: beside a SQLite file, else the store's.

    MLflow puts the artifacts of an experiment created on a SQLite store in ``./mlruns`` of the *current
    working directory*, so runs logged from two directories scatter their models and plots (and a test
    or a scheduled job writes into whatever directory it was started from). For ``sqlite:///DIR/x.db``
    this returns ``DIR/mlartifacts`` as a ``file://`` URI; servers and file stores keep their own root
    (``None``).

    Examples
    --------
    >>> artifact_root("sqlite:////tmp/proj/mlflow.db")
    'file:///tmp/proj/mlartifacts'
    >>> artifact_root("http://127.0.0.1:5000") is None
    True
    """
    db = _sqlite_file(uri)
    return None if db is None else (db.parent / "mlartifacts").as_uri()


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (absolute), else ``None``."""
    prefix = "sqlite:///"
    path = uri[len(prefix) :].split("?")[0] if uri.startswith(prefix) else ""
    return None if path in ("", ":memory:") else Path(path).resolve()


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite tracking store (the file ``<db>.lock`` beside it); other stores: no-op.

    Two jobs on one new SQLite store would both create MLflow's schema (one fails: ``table ... already
    exists`` or an alembic error) and both register versions and move aliases at once. Under this lock the
    schema is created once (:func:`ensure_store`) and a version is registered and its alias set as one step.
    Servers serialise these themselves.
    """
    db = _sqlite_file(uri)
    if db is None or not db.parent.is_dir():  # MLflow reports a missing folder itself
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a+b") as handle:
        _lock_file(handle, exclusive=True)
        try:
            yield
        finally:
            _lock_file(handle, exclusive=False)


def _lock_file(handle: Any, *, exclusive: bool) -> None:
    if sys.platform == "win32":
        import msvcrt
        import time

        handle.seek(0)
        if not exclusive:
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            return
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                time.sleep(0.05)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)


def ensure_store(uri: str) -> None:
    """Create (or migrate) the tracking and registry schema of a SQLite store once, under :func:`store_lock`."""
    if _sqlite_file(uri) is None:
        return
    import mlflow

    with store_lock(uri):
        client = mlflow.MlflowClient(uri, uri)
        client.search_experiments(max_results=1)  # builds the tracking store: creates the tables if missing
        client.search_registered_models(max_results=1)  # ... and the registry store


def use_experiment(name: str, uri: str) -> Any:
    """``mlflow.set_experiment(name)``, creating it first with its artifacts at :func:`artifact_root` of ``uri``.

    An experiment that already exists keeps the artifact location it was created with.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    location = artifact_root(uri)
    if location is not None and mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another process: use theirs
            if mlflow.get_experiment_by_name(name) is None:
                raise
    return mlflow.set_experiment(name)


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
        from mlflow.data.dataset_source_registry import get_registered_sources
        from mlflow.data.meta_dataset import MetaDataset

        # MLflow builds its local-path source class at import time (no importable name): take it from the registry.
        local: Any = next(s for s in get_registered_sources() if s._get_source_type() == "local")
        meta = MetaDataset(  # type: ignore[abstract]  # MLflow's class is concrete at run time
            local(str(source) if source else "histories"),
            name="training_set",
            digest=str(training_set["content_hash"])[:16],
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


def _config_params(obj: Any) -> Any:
    """Plain, loggable values of a (possibly nested) config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _config_params(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _config_params(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_config_params(v) for v in obj)
    if isinstance(obj, list):
        return [_config_params(v) for v in obj]
    return obj


def _feature_table(feature_set: Any) -> pl.DataFrame:
    names = list(feature_set.names)
    return pl.DataFrame(
        {
            "feature": names,
            "family": [feature_set.family_of(n) for n in names],
            "description": [feature_set.describe(n) for n in names],
        }
    )


def train_campaign(
    hist: Histories,
    as_of: str | dt.date | dt.datetime,
    horizon_days: int,
    *,
    config: CampaignConfig | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    register_as: str | None = None,
    alias: str | None = None,
    tracking_uri: str | None = None,
    explain_sample: int = 2000,
    source: str | None = None,
    seed: int = 0,
) -> tuple[CampaignModel, TrackedRun]:
    """Fit a :class:`~omni_ml.campaign.CampaignModel` at ``as_of`` and log it as one MLflow run.

    Logged: parameters (horizon, cutoffs, feature families, model, channel and policy settings),
    every metric of the out-of-time back-test (overall and per cutoff), the channel policy's off-policy
    values on held-out decisions (``offpolicy_<policy>_<ips|snips|dr>[_lo|_hi]`` for the learned policy and
    the random / always-email baselines, table ``channel_policy_offpolicy``), the training set's
    fingerprint as an MLflow dataset, artifacts (feature list with descriptions, gains / lift /
    calibration plots, SHAP beeswarm and family importance computed on a sample of
    ``explain_sample`` customers scored at ``as_of``, evaluation tables), tags (git commit, package
    version) and the campaign pyfunc, registered as ``register_as`` with ``alias`` when given.

    The run starts before the fit, so it spans the whole job; the fit is exactly
    ``CampaignModel(config).fit(hist, as_of, horizon_days=horizon_days)``, the call
    ``omni-ml train --no-tracking`` makes, so both give the same model and metrics (pass the histories
    as loaded: the fit resolves identities as of each training cutoff). When anything inside raises, the
    run ends ``FAILED`` with the error in the tag ``omni_ml.error`` and the exception propagates.

    Returns
    -------
    (CampaignModel, TrackedRun)
    """
    from omni_ml.campaign import CampaignConfig, CampaignModel  # noqa: F811 - the runtime import
    from omni_ml.explanation import global_importance, plot_beeswarm, plot_importance, plot_waterfall, reason_codes
    from omni_ml.features import build_features
    from omni_ml.identity import ensure_resolved
    from omni_ml.training import to_utc

    if alias and not register_as:
        msg = "alias given without register_as. Hint: pass --register-as NAME together with --alias."
        raise ValueError(msg)
    moment = to_utc(as_of)
    cfg = config or CampaignConfig()
    train_cfg, channel_cfg = cfg.train, cfg.channel
    title = run_name or f"campaign-{moment:%Y-%m-%d}-h{horizon_days}"
    with _run(experiment, run_name=title, tracking_uri=tracking_uri) as (run, exp, uri):
        import mlflow

        # Known before fitting: a failed fit still shows what was asked for.
        mlflow.log_params(
            _flat_params(
                {
                    "as_of": moment.isoformat(),
                    "horizon_days": horizon_days,
                    "train": _config_params(train_cfg),
                    "channel": _config_params(channel_cfg) if channel_cfg is not None else "disabled",
                }
            )
        )
        # The very call `omni-ml train --no-tracking` makes, on the same (unresolved) histories: the fit
        # resolves identities as of each training cutoff itself.
        model = CampaignModel(cfg).fit(hist, moment, horizon_days=horizon_days)
        report = model.report_

        scoring_rows = build_features(ensure_resolved(hist, moment), moment, feature_set=model.feature_set_)
        if scoring_rows.height > explain_sample:
            scoring_rows = scoring_rows.sample(explain_sample, seed=seed, shuffle=False)
        X = scoring_rows.select(model.propensity_.feature_names_)

        plots = _plots_available()
        figures = {f"backtest_{name}": fig for name, fig in report.plot().items()} if plots else {}
        tables = {
            "backtest_per_cutoff": report.per_cutoff,
            "backtest_lift_by_decile": report.lift,
            "backtest_calibration": report.calibration,
            "features": _feature_table(model.feature_set_),
        }
        if X.height:
            if plots:
                figures["shap_beeswarm"] = plot_beeswarm(model.propensity_, X, feature_set=model.feature_set_)
                # one customer's reasons, in pp from the moment's baseline: the likeliest buyer of the sample
                top = int(np.argmax(model.propensity_.predict_proba(X)[:, 1]))
                figures["reasons_waterfall"] = plot_waterfall(
                    model.propensity_, X, row=top, feature_set=model.feature_set_
                )
                fig = plot_importance(model.propensity_, X, feature_set=model.feature_set_)
                figures["shap_importance_by_family"] = fig
            tables["reason_codes"] = reason_codes(model.channels)
            tables["shap_importance"] = global_importance(model.propensity_, X, feature_set=model.feature_set_)
        choice = getattr(model, "history_choice_", None)
        if choice is not None:  # calendar features / calibration map on a short history (training.adapt_to_history)
            mlflow.log_params(choice.params())
            mlflow.set_tag("omni_ml.history_choice", choice.reason[:5000])
        if not plots:
            mlflow.set_tag("omni_ml.plots", "skipped: matplotlib/shap not installed (pip install 'omni_ml[lab]')")
        params: dict[str, Any] = {
            "channel_model": type(model.channel_model_).__name__ if model.channel_model_ is not None else "none",
            "channel_note": model.channel_note_ or "",
            "policy": _config_params(model.policy_),
            "feature_families": list(model.feature_set_.families()),
            "n_features": len(model.feature_set_.names),
            "propensity": {k: v for k, v in model.propensity_.get_params().items() if not callable(v)},
            "propensity_best_iteration": getattr(model.propensity_, "best_iteration_", None),
        }
        datasets = {"backtest": report.scores.select([c for c in report.scores.columns if c != "oracle"])}
        channel_bt = getattr(model, "channel_backtest_", None)
        if channel_bt is not None:
            tables["channel_policy_offpolicy"] = channel_bt.table
            params["channel_backtest_split"] = channel_bt.split.isoformat()
        info, version, held = _log_contents(
            model,
            uri,
            metrics=model.metrics_,  # propensity back-test + offpolicy_* (merged once, in CampaignModel.fit)
            params=params,
            datasets=datasets,
            figures=figures,
            tables=tables,
            register_as=register_as,
            alias=alias,
            input_example={"histories_path": source, "as_of": moment.date().isoformat()} if source else None,
            series=_training_series(model),
            training_set=getattr(model, "training_set_fingerprint_", None),
            source=source,
            description=_version_description(model),
            version_tags=_version_tags(model),
        )
    return model, TrackedRun(
        run_id=run.info.run_id,
        experiment_id=exp.experiment_id,
        model_uri=info.model_uri,
        registered_name=register_as,
        version=version,
        alias=alias,
        tracking_uri=uri,
        alias_version=held,
    )


def _plots_available() -> bool:
    """Whether the plotting extra (matplotlib, shap: ``omni_ml[lab]``) is installed."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None and find_spec("shap") is not None


def _training_series(model: Any) -> dict[str, list[tuple[int, float, int]]]:
    """Metric histories of a fit: the back-test per cutoff and LightGBM's learning curve.

    Per-cutoff metrics have step = cutoff index and timestamp = the cutoff; the learning curve has
    step = boosting iteration (train and early-stopping parts).
    """
    out: dict[str, list[tuple[int, float, int]]] = {}
    per_cutoff = model.report_.per_cutoff
    if per_cutoff.height and "cutoff" in per_cutoff.columns:
        stamps = per_cutoff.select(pl.col("cutoff").dt.epoch("ms"))["cutoff"].to_list()
        for column in per_cutoff.columns:
            if column == "cutoff" or not per_cutoff[column].dtype.is_numeric():
                continue
            values = per_cutoff[column].cast(pl.Float64).to_list()
            out[f"backtest_by_cutoff/{column}"] = [
                (i, float(v), stamps[i]) for i, v in enumerate(values) if v is not None
            ]
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    for part, curves in (getattr(model.propensity_, "evals_result_", None) or {}).items():
        for metric, values in curves.items():
            out[f"learning_curve/{part}_{metric}"] = [(i + 1, float(v), now) for i, v in enumerate(values)]
    return out


def _version_tags(model: Any) -> dict[str, str]:
    """Registered-version tags: as-of, horizon, features, back-test AUC, channel model."""
    tags = {
        "as_of": model.as_of_.date().isoformat(),
        "horizon_days": str(model.horizon_days_),
        "n_features": str(len(model.feature_set_.names)),
        "feature_families": ",".join(model.feature_set_.families()),
        "channel_model": type(model.channel_model_).__name__ if model.channel_model_ is not None else "none",
    }
    auc = model.metrics_.get("auc")
    if auc is not None and auc == auc:
        tags["backtest_auc"] = f"{auc:.4f}"
    return tags


def _version_description(model: Any) -> str:
    """One paragraph on what this version is, for the registry UI."""
    tags = _version_tags(model)
    auc = tags.get("backtest_auc", "n/a")
    return (
        f"Campaign model trained as of {tags['as_of']} for a {tags['horizon_days']}-day purchase horizon on "
        f"{tags['n_features']} features ({tags['feature_families']}); out-of-time back-test AUC {auc}; "
        f"channel model: {tags['channel_model']}."
    )
