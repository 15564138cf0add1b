"""``measure`` never reports an effect the data cannot show (issue 22)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from omni_ml.cli import app
from omni_ml.exceptions import DataInsufficientError
from omni_ml.measure import measure_campaign

RUNNER = CliRunner()
AS_OF = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def flat(text: str) -> str:
    return " ".join(text.split())


def _campaign(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": ids,
            "as_of": [AS_OF] * len(ids),
            "recommended_channel": ["email"] * len(ids),
            "control_group": [i % 3 == 0 for i in range(len(ids))],
        }
    )


def _histories(root: Path, ids: list[str], *, last_day: int) -> Path:
    """Visits before the campaign and purchases on days 0..last_day after it (last_day < 0: none after)."""
    root.mkdir()
    rows = []
    for i, c in enumerate(ids):
        rows.append((c, AS_OF - dt.timedelta(days=10 + i % 5), "web", "visit", None))
        if last_day >= 0 and i % 2:
            rows.append((c, AS_OF + dt.timedelta(days=i % (last_day + 1)), "store", "purchase", 20.0))
    pl.DataFrame(rows, schema=["customer_id", "timestamp", "channel", "event_type", "amount"], orient="row").write_csv(
        root / "events.csv"
    )
    return root


IDS = [f"C{i:03d}" for i in range(60)]


def test_no_events_after_the_campaign_is_refused_not_a_zero_effect_22(tmp_path: Path) -> None:
    hist = _histories(tmp_path / "h", IDS, last_day=-1)
    with pytest.raises(DataInsufficientError, match=r"no event at or after the campaign's as_of 2025-03-01"):
        measure_campaign(_campaign(IDS), hist, window_days=30, n_boot=0)


def test_the_window_reported_is_the_window_observed_22(tmp_path: Path) -> None:
    hist = _histories(tmp_path / "h", IDS, last_day=29)
    report = measure_campaign(_campaign(IDS), hist, window_days=365, n_boot=0)
    assert report.observed_days is not None
    assert 29 < report.observed_days < 30
    assert "window 29.0 of the 365 days asked for" in report.to_text()
    assert "window 365 days" not in report.to_text()
    full = measure_campaign(_campaign(IDS), hist, window_days=7, n_boot=0)
    assert "window 7 days:" in full.to_text()


def test_a_campaign_of_other_customers_is_refused_and_a_few_unknown_are_counted_22(tmp_path: Path) -> None:
    hist = _histories(tmp_path / "h", IDS, last_day=29)
    strangers = [f"X{i:03d}" for i in range(60)]
    with pytest.raises(DataInsufficientError, match=r"60 of 60 customer ids \(100%\) are not in the histories"):
        measure_campaign(_campaign(strangers), hist, window_days=30, n_boot=0)
    few = measure_campaign(_campaign(IDS[:50] + strangers[:10]), hist, window_days=30, n_boot=0)
    assert few.missing_customers == 10
    assert "10 customer ids of the campaign are not in the histories" in few.to_text()


def test_measure_cli_exits_2_naming_the_problem(tmp_path: Path) -> None:
    hist = _histories(tmp_path / "h", IDS, last_day=-1)
    campaign = tmp_path / "c.parquet"
    _campaign(IDS).write_parquet(campaign)
    out = tmp_path / "c.parquet" / "r.csv"  # under a file: cannot be written
    missing_folder = RUNNER.invoke(app, ["measure", str(campaign), str(hist), "--window", "30", "--out", str(out)])
    assert missing_folder.exit_code == 2
    assert "--out" in flat(missing_folder.stderr)
    result = RUNNER.invoke(app, ["measure", str(campaign), str(hist), "--window", "30", "--no-mlflow"])
    assert result.exit_code == 2
    assert "no event at or after the campaign's as_of" in flat(result.stderr)
    assert "Traceback" not in result.output
