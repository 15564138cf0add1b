"""The one atomic writer (omni_ml._io): complete file or none, temporaries removed, leftovers of killed runs cleaned."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_ml._io import STALE_AFTER_SECONDS, atomic_path, clean_stale_temps, temp_path, write_atomically


class Boom(Exception):
    pass


def _fail_after_partial_write(tmp: Path) -> None:
    tmp.write_text("half a file")
    raise Boom


def test_write_lands_complete_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "t.parquet"
    assert write_atomically(out, pl.DataFrame({"a": [1, 2]}).write_parquet) == out
    assert pl.read_parquet(out)["a"].to_list() == [1, 2]
    assert sorted(p.name for p in out.parent.iterdir()) == ["t.parquet"]


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_a_failed_write_keeps_the_earlier_file_and_removes_its_temporary(tmp_path: Path, error: type) -> None:
    out = tmp_path / "model.joblib"
    out.write_text("earlier model")

    def fail(tmp: Path) -> None:
        tmp.write_text("partial")
        raise error

    with pytest.raises(error):
        write_atomically(out, fail)
    assert out.read_text() == "earlier model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.joblib"]


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    with pytest.raises(Boom), atomic_path(out) as tmp:
        _fail_after_partial_write(tmp)
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_are_unique_hidden_and_beside_the_target(tmp_path: Path) -> None:
    names = {temp_path(tmp_path / "a.parquet").name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(f".a.parquet.{os.getpid()}.") and n.endswith(".tmp") for n in names)


def _dead_pid() -> int:
    pid = 2**22 + 12345  # above the default pid_max of 4194304 on Linux: never a live process
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def test_leftovers_of_killed_runs_are_cleaned_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "campaign.parquet"
    dead = tmp_path / f".campaign.parquet.{_dead_pid()}.deadbeef.tmp"
    old_live = tmp_path / f".campaign.parquet.{os.getppid()}.0badcafe.tmp"  # a live pid, but two hours old
    young_live = tmp_path / f".campaign.parquet.{os.getppid()}.12345678.tmp"  # a concurrent writer: kept
    other_target = tmp_path / f".other.parquet.{_dead_pid()}.deadbeef.tmp"  # another file's temporary: kept
    lookalike = tmp_path / ".campaign.parquet.notapid.tmp"  # not our naming scheme: kept
    for p in (dead, old_live, young_live, other_target, lookalike):
        p.write_text("x")
    two_hours_ago = time.time() - 2 * STALE_AFTER_SECONDS
    os.utime(old_live, (two_hours_ago, two_hours_ago))

    write_atomically(out, pl.DataFrame({"a": [1]}).write_parquet)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {out.name, young_live.name, other_target.name, lookalike.name}


def test_clean_stale_temps_reports_what_it_removed_and_spares_this_process(tmp_path: Path) -> None:
    target = tmp_path / "m.joblib"
    mine = temp_path(target)
    mine.write_text("in progress")
    dead = tmp_path / f".m.joblib.{_dead_pid()}.aa.tmp"
    dead.write_text("x")
    assert clean_stale_temps(target) == [dead]
    assert mine.exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=64)), min_size=1, max_size=8))
def test_the_target_always_holds_the_last_successful_write(tmp_path: Path, writes: list[tuple[bool, bytes]]) -> None:
    out = tmp_path / "prop" / f"f{abs(hash(tuple(writes)))}.bin"
    expected: bytes | None = None
    for ok, payload in writes:

        def write(tmp: Path, ok: bool = ok, payload: bytes = payload) -> None:
            tmp.write_bytes(payload)
            if not ok:
                raise Boom

        if ok:
            write_atomically(out, write)
            expected = payload
        else:
            with pytest.raises(Boom):
                write_atomically(out, write)
        assert (out.read_bytes() if out.exists() else None) == expected
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_the_streaming_campaign_writer_uses_the_same_names_and_cleanup(tmp_path: Path) -> None:
    from omni_ml.scoring._writer import AtomicTableWriter

    target = tmp_path / "campaign.parquet"
    leftover = tmp_path / f".campaign.parquet.{_dead_pid()}.cafef00d.tmp"
    leftover.write_bytes(b"PAR1 killed mid-write")
    with AtomicTableWriter(target, pl.Schema({"x": pl.Int64})) as writer:
        assert writer.tmp_path.name.startswith(f".campaign.parquet.{os.getpid()}.")
        assert not leftover.exists()
        writer.write(pl.DataFrame({"x": [1, 2, 3]}))
        writer.commit()
    assert pl.read_parquet(target)["x"].to_list() == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["campaign.parquet"]
