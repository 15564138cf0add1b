"""Model files are verified before they are unpickled (issue 22): a crafted file cannot run code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import joblib
import pytest
from typer.testing import CliRunner

from omni_ml._model_files import checksum_path, dump_verified, load_verified
from omni_ml.cli import app
from omni_ml.exceptions import ModelNotFoundError

RUNNER = CliRunner()


class _Payload:
    """Unpickling this object calls ``os.system``: it writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    model = tmp_path / "model.joblib"
    joblib.dump(_Payload(marker), model)
    return model, marker


def test_crafted_model_file_runs_no_code_through_score_22(tmp_path: Path, sample_dir: Path) -> None:
    model, marker = _crafted(tmp_path)
    out = tmp_path / "campaign.parquet"
    args = ["score", str(sample_dir), "--model", str(model), "--as-of", "2025-02-21", "--out", str(out)]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "no checksum file 'model.joblib.sha256'" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not out.exists()


def test_crafted_model_with_a_checksum_of_other_bytes_is_refused_before_unpickling_22(tmp_path: Path) -> None:
    model, marker = _crafted(tmp_path)
    checksum_path(model).write_text(hashlib.sha256(b"another model").hexdigest() + "  model.joblib\n")
    with pytest.raises(ModelNotFoundError, match=r"does not match the recorded"):
        load_verified(model)
    assert not marker.exists()


def test_verified_round_trip_and_tampering_is_detected(tmp_path: Path) -> None:
    target = tmp_path / "m.joblib"
    digest = dump_verified({"a": [1, 2, 3]}, target)
    assert checksum_path(target).read_text().split() == [digest, "m.joblib"]
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()
    assert load_verified(target) == {"a": [1, 2, 3]}
    assert load_verified(target, expected_sha256=digest.upper()) == {"a": [1, 2, 3]}
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelNotFoundError, match=r"m\.joblib'.*does not match"):
        load_verified(target)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "mlflow.db") == ["m.joblib", "m.joblib.sha256"]


def test_a_checksum_file_without_a_sha256_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "m.joblib"
    dump_verified([1], target)
    checksum_path(target).write_text("nothing here\n")
    with pytest.raises(ModelNotFoundError, match=r"holds no sha256"):
        load_verified(target)
