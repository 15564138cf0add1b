"""``omni-ml validate DIR``: exit 0 and a summary on good input, exit 2 and the message on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from omni_ml.cli import app

REPO = Path(__file__).resolve().parents[2]
RUNNER = CliRunner()
BAD_EVENTS = (
    "customer_id,timestamp,channel,event_type,amount\n"
    "C1,2025-01-01,web,purchase,10\n"
    "C1,2025-01-02,store,purchase,-699\n"
    "C2,someday,app,visit,\n"
)


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width: compare on single-spaced text."""
    return " ".join(text.split())


def bad_dir(tmp_path: Path) -> Path:
    (tmp_path / "events.csv").write_text(BAD_EVENTS)
    return tmp_path


def test_validate_good_input_prints_the_summary(sample_dir: Path) -> None:
    result = RUNNER.invoke(app, ["validate", str(sample_dir)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    # rows, customers and date range per table
    assert "events 16 rows 2 customers, 3 identifiers 2025-01-05 10:12 .. 2025-02-20 15:00" in flat(out)
    assert "contacts 3 rows 2 customers, 1 identifier 2025-02-01 07:55 .. 2025-02-02 09:00" in flat(out)
    assert "consents 5 rows" in flat(out)
    assert "identity_links 3 rows 0 customers, 4 identifiers" in flat(out)
    assert "customers 3 rows 3 customers no timestamps" in flat(out)
    # channels and event types
    assert "channels: app 3, call_center 1, email 3, store 4, web 5" in flat(out)
    assert "event types: cart 1, click 1, open 2, purchase 4, return 1, service_call 1, view 3, visit 3" in flat(out)
    assert result.stderr == ""


def test_validate_reports_future_rows_and_ignored_files(sample_dir: Path, tmp_path: Path) -> None:
    for f in sample_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "event.csv").write_text("a\n1\n")
    result = RUNNER.invoke(app, ["validate", str(tmp_path), "--as-of", "2025-02-10"])
    assert result.exit_code == 0, result.output
    assert "2 rows at or after as-of 2025-02-10 00:00" in result.stdout
    assert "warning: ignored 'event.csv': not a histories table" in flat(result.stdout)


def test_validate_bad_input_exits_2_with_the_message(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["validate", str(bad_dir(tmp_path))])
    assert result.exit_code == 2
    err = flat(result.stderr)
    assert err.startswith("error: SchemaError: histories in")
    assert "events.amount: 1 of 3 rows are purchases with a negative amount (e.g. '-699.0'). Hint:" in err
    assert "events.timestamp: 1 of 3 rows cannot be parsed as a timestamp (e.g. 'someday'). Hint:" in err
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_validate_missing_directory_exits_2(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist or is not a directory" in flat(result.stderr)


def test_console_script_in_a_real_subprocess(tmp_path: Path, sample_dir: Path) -> None:
    script = Path(sys.executable).parent / "omni-ml"  # installed by `pip install -e .`
    bad = subprocess.run([str(script), "validate", str(bad_dir(tmp_path))], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "events.amount: 1 of 3 rows are purchases with a negative amount" in flat(bad.stderr)
    good = subprocess.run(
        [sys.executable, "-m", "omni_ml", "validate", str(sample_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert good.returncode == 0, good.stderr
    assert "events 16 rows" in flat(good.stdout)


def test_help_lists_every_command_with_a_one_line_description() -> None:
    result = RUNNER.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    out = flat(result.stdout)
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    assert "validate" in commands
    for name, command in commands.items():
        first_line = (command.help or "").strip().splitlines()[0]
        assert first_line, f"command {name!r} has no description"
        assert f"{name} {flat(first_line)}" in out
