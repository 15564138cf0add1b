"""MLflow datasets that hold metadata only (no rows): a local path as their source, a name and a digest.

The training set and a scored population are logged this way (by :mod:`omni_ml.tracking` and
:mod:`omni_ml.monitor`): MLflow records where the data lives and its fingerprint, never the rows.
"""

from __future__ import annotations

from typing import Any

__all__ = ["metadata_dataset"]


def metadata_dataset(source: str, *, name: str, digest: str) -> Any:
    """An ``mlflow.data.meta_dataset.MetaDataset`` whose source is the local path ``source``."""
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset

    # MLflow builds its local-path source class at import time (no importable name): take it from the registry.
    local: Any = next(s for s in get_registered_sources() if s._get_source_type() == "local")
    return MetaDataset(local(source), name=name, digest=digest)  # type: ignore[abstract]  # concrete at run time
