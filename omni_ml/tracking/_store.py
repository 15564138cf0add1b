"""The tracking store: which URI is in force, where artifacts go, the SQLite lock, the experiment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "omni_ml"


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
