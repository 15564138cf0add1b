"""Model files on disk: joblib with a sha256 checksum that is verified before anything is unpickled.

A joblib (pickle) file is code: unpickling a crafted file runs whatever it says. A model written by
:meth:`omni_ml.campaign.CampaignModel.save` (``omni-ml train --out``) therefore gets a checksum
file beside it, ``<file>.sha256`` (the ``sha256sum`` format), and a model logged to MLflow records
the checksum of its bundle in the run's tag :data:`SHA256_TAG` and in the pyfunc's ``model_config``
(:data:`PYFUNC_SHA256_KEY`, checked by ``load_context`` when MLflow loads the pyfunc). Loading reads
the file's bytes once, compares their sha256 with the expected one and unpickles those same bytes only when they match:
a file that was swapped, damaged or never written by ``train`` is refused before any of its code runs.

What this trusts: the checksum says the file is the one that was written beside it (or logged with
the run); it does not say who wrote it. Anyone who can write the model folder can write both files,
so model folders and the MLflow artifact store must be writable only by the people who train.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from omni_ml.exceptions import ModelNotFoundError

__all__ = ["PYFUNC_SHA256_KEY", "SHA256_TAG", "checksum_path", "dump_verified", "load_verified", "sha256_of"]

SHA256_TAG = "omni_ml.model_sha256"
PYFUNC_SHA256_KEY = "campaign_model_sha256"
"""Key of the bundle's sha256 in the logged pyfunc's ``model_config`` (checked by its ``load_context``)."""
_SUFFIX = ".sha256"


def checksum_path(path: str | Path) -> Path:
    """The checksum file beside a model file: ``campaign_model.joblib.sha256``."""
    p = Path(path)
    return p.with_name(p.name + _SUFFIX)


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def dump_verified(obj: Any, path: str | Path, *, compress: int = 3) -> str:
    """Write ``obj`` with joblib to ``path`` and its checksum beside it, each atomically; return the sha256.

    Both files go through the one atomic writer (:mod:`omni_ml._io`), model first: an interrupted
    save leaves either the earlier pair, or a new model with the old checksum (which is refused on
    load), never a partial file.
    """
    import joblib

    from omni_ml._io import write_atomically

    target = Path(path)
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=compress)
    data = buffer.getvalue()
    digest = sha256_of(data)
    write_atomically(target, lambda tmp: tmp.write_bytes(data), mkdir=False)
    write_atomically(checksum_path(target), lambda tmp: tmp.write_text(f"{digest}  {target.name}\n"), mkdir=False)
    return digest


def _expected_from_file(path: Path) -> str:
    side = checksum_path(path)
    if not side.is_file():
        msg = (
            f"model {str(path)!r}: no checksum file {side.name!r} beside it, so it is not unpickled (a model file"
            " can run code when loaded). Hint: use a model written by `omni-ml train --out` or"
            " CampaignModel.save(); if you wrote this file yourself and trust it, record its checksum with"
            f" `sha256sum {path.name} > {side.name}` in its folder."
        )
        raise ModelNotFoundError(msg)
    text = side.read_text(errors="replace").split()
    if not text or len(text[0]) != 64:
        msg = f"model {str(path)!r}: {side.name!r} holds no sha256. Hint: write it again with `sha256sum`."
        raise ModelNotFoundError(msg)
    return text[0].lower()


def load_verified(path: str | Path, *, expected_sha256: str | None = None) -> Any:
    """Unpickle the joblib file ``path`` only if its sha256 matches the expected one.

    Parameters
    ----------
    path
        The model file.
    expected_sha256
        The checksum recorded elsewhere (an MLflow run's tag); default: the ``<file>.sha256`` beside it.

    Raises
    ------
    ModelNotFoundError
        No such file, no checksum, a checksum that does not match, or bytes that do not unpickle.
    """
    import joblib

    source = Path(path)
    if not source.is_file():
        msg = f"model {str(source)!r}: no such file. Hint: save one with `omni-ml train --out` or CampaignModel.save()."
        raise ModelNotFoundError(msg)
    expected = expected_sha256.lower() if expected_sha256 else _expected_from_file(source)
    data = source.read_bytes()  # hashed and unpickled from the same bytes: no swap in between
    actual = sha256_of(data)
    if actual != expected:
        msg = (
            f"model {str(source)!r}: its sha256 {actual[:12]}... does not match the recorded {expected[:12]}...,"
            " so it is not unpickled. Hint: the file was changed or replaced after it was written; train and save"
            " the model again, or load the one that was recorded."
        )
        raise ModelNotFoundError(msg)
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling errors have many types
        msg = f"model {str(source)!r}: cannot be loaded ({type(exc).__name__}: {exc}). Hint: is it a saved model?"
        raise ModelNotFoundError(msg) from exc
