"""A campaign file that was edited or exported badly (issue 22): measure and feedback exit 2, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from tests.cli.test_bad_inputs import AS_OF, _assert_refused, _base, _run, _write

Change = Callable[[pl.DataFrame], pl.DataFrame]

CAMPAIGN_DEFECTS: list[tuple[str, Change, str]] = [
    (
        "as_of_text",
        lambda d: d.with_columns(as_of=pl.lit("soon")),
        r"column as_of: 6 of 6 rows cannot be read as a date-time \(e\.g\. 'soon'\)",
    ),
    (
        "control_group_text",
        lambda d: d.with_columns(control_group=pl.lit("maybe")),
        r"column control_group: 6 of 6 rows are not true/false \(e\.g\. 'maybe'\)",
    ),
    (
        "channel_typo",
        lambda d: d.with_columns(best_channel=pl.lit("emial"), recommended_channel=pl.lit("emial")),
        r"column best_channel: 6 of 6 rows name no channel of the campaign .* did you mean 'email'\?",
    ),
    (
        "two_as_of",
        lambda d: d.with_columns(
            as_of=pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("as_of").dt.offset_by("7d"))
            .otherwise(pl.col("as_of"))
        ),
        r"as_of must be one moment for the whole file \(found e\.g\. .*\)\. Hint: one file per scoring run",
    ),
    (
        "repeated_customer",
        lambda d: pl.concat([d, d.head(1)]),
        r"2 rows repeat a customer_id \(e\.g\. '.+'\)\. Hint: one row per customer",
    ),
    (
        "assignment_probability_text",
        lambda d: d.with_columns(assignment_probability=pl.lit("half")),
        r"column assignment_probability: 6 of 6 rows are not numbers \(e\.g\. 'half'\)",
    ),
]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, campaign_model_path: Path) -> tuple[Path, pl.DataFrame]:
    """The tiny histories with two weeks of purchases after AS_OF, and the campaign scored on them."""
    tables = _base()
    for i in range(12):
        tables["events"].append(
            {
                **tables["events"][2],
                "customer_id": f"C{i % 6 + 1}",
                "timestamp": f"2024-12-{16 + i}T10:00:00",
                "event_type": "purchase",
                "amount": 30.0,
            }
        )
    root = tmp_path_factory.mktemp("campaign_files")
    hist = _write(tables, root / "hist")
    out = root / "campaign.parquet"
    args = ["score", str(hist), "--model", str(campaign_model_path), "--as-of", AS_OF, "--out", str(out)]
    result = _run([*args, "--control-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    return hist, pl.read_parquet(out)


# measure does not read assignment_probability (feedback does)
CASES = [
    (d, command, suffix)
    for d in CAMPAIGN_DEFECTS
    for command in ("measure", "feedback")
    for suffix in ("parquet", "csv")
    if not (d[0] == "assignment_probability_text" and command == "measure")
]


@pytest.mark.parametrize(("defect", "command", "suffix"), CASES, ids=[f"{d[0]}-{c}-{s}" for d, c, s in CASES])
def test_a_bad_campaign_file_is_refused_by_measure_and_feedback_22(
    scored: tuple[Path, pl.DataFrame],
    defect: tuple[str, Change, str],
    command: str,
    suffix: str,
    tmp_path: Path,
) -> None:
    hist, campaign = scored
    _, change, pattern = defect
    broken = change(campaign.clone())
    file = tmp_path / f"campaign.{suffix}"
    if suffix == "csv":
        broken.write_csv(file)
    else:
        broken.write_parquet(file)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "measure":
        args = ["measure", str(file), str(hist), "--window", "14", "--out", str(out_dir / "m.csv")]
        args += ["--no-mlflow", "--n-boot", "50"]
    else:
        args = ["feedback", str(file), str(hist), "--out", str(out_dir / "next")]
    _assert_refused(_run(args), pattern, out_dir)


def test_the_unbroken_campaign_file_passes_both_commands(scored: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    hist, campaign = scored
    for suffix in ("parquet", "csv"):
        file = tmp_path / f"campaign.{suffix}"
        if suffix == "csv":
            campaign.write_csv(file)
        else:
            campaign.write_parquet(file)
        report = str(tmp_path / f"m_{suffix}.csv")
        measured = _run(
            ["measure", str(file), str(hist), "--window", "14", "--out", report, "--no-mlflow", "--n-boot", "50"]
        )
        assert measured.exit_code == 0, measured.output
        fed = _run(["feedback", str(file), str(hist), "--out", str(tmp_path / f"next_{suffix}")])
        assert fed.exit_code == 0, fed.output


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"PAR1 this is not a parquet file")
    return path


OTHER_CASES: list[tuple[str, Callable[[Path, Path, Path], list[str]], str]] = [
    (
        "simulate_negative_seed",
        lambda hist, out, tmp: ["simulate", "--out", str(out / "w"), "--preset", "small", "--seed", "-1"],
        r"SimulationConfig: seed=-1 must be an integer in 0\.\.2\*\*63-1",
    ),
    (
        "resolve_out_txt",
        lambda hist, out, tmp: ["resolve", str(hist), "--out", str(out / "map.txt")],
        r"--out .*map\.txt' must end in \.parquet or \.csv \(got '\.txt'\)",
    ),
    (
        "measure_not_a_campaign_file",
        lambda hist, out, tmp: [
            "measure",
            str(hist / "events.csv").replace(".csv", ".joblib"),
            str(hist),
            "--window",
            "14",
            "--out",
            str(out / "m.csv"),
        ],
        r"must be \.parquet or \.csv \(got '\.joblib'\)",
    ),
    (
        "measure_corrupt_parquet",
        lambda hist, out, tmp: [
            "measure",
            str(_corrupt(tmp / "c.parquet")),
            str(hist),
            "--window",
            "14",
            "--out",
            str(out / "m.csv"),
        ],
        r"campaign file .*c\.parquet': cannot be read",
    ),
    (
        "feedback_corrupt_parquet",
        lambda hist, out, tmp: ["feedback", str(_corrupt(tmp / "c.parquet")), str(hist), "--out", str(out / "next")],
        r"campaign file .*c\.parquet': cannot be read",
    ),
]


@pytest.mark.parametrize(("case", "args", "pattern"), OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_other_commands_refuse_bad_files_and_flags_22(
    case: str, args: Callable[[Path, Path, Path], list[str]], pattern: str, tmp_path: Path
) -> None:
    hist = _write(_base(), tmp_path / "hist")
    (hist / "events.joblib").write_bytes(b"not a campaign")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _assert_refused(_run(args(hist, out_dir, tmp_path)), pattern, out_dir)


def test_resolve_writes_csv_when_asked_for_csv(tmp_path: Path) -> None:
    hist = _write(_base(), tmp_path / "hist")
    result = _run(["resolve", str(hist), "--out", str(tmp_path / "map.csv")])
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(tmp_path / "map.csv")  # text, not parquet bytes under a .csv name
    assert frame.columns == ["identifier", "customer_id"]
    assert frame.height > 0
