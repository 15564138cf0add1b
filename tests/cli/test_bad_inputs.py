"""Bad input never yields a wrong campaign (issue 22): one defect per case, over every command.

Each case starts from a tiny hand-made histories directory that every command accepts, breaks
one thing, and runs one command through the CLI. It must exit 2 with one message on stderr that
names the table and column (or the flag) and ends in a fix (``Hint:``), print no traceback, and
leave no output file behind (nor a temporary one). The equivalence cases at the end must give
byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from omni_ml.cli import app

RUNNER = CliRunner()
AS_OF = "2024-12-15"

Table = list[dict[str, Any]]
Tables = dict[str, Table]


def _base() -> Tables:
    """Six customers over ten weeks before AS_OF: every table of the contract, all valid."""
    start = dt.datetime(2024, 10, 1, 9, 0)
    events: Table = []
    channels = ["web", "app", "store", "web", "email", "app"]
    kinds = ["visit", "view", "purchase", "cart", "open", "click"]
    for i in range(36):
        c = f"C{i % 6 + 1}"
        kind = kinds[i % 6]
        events.append(
            {
                "customer_id": c,
                "identifier": None,
                "timestamp": (start + dt.timedelta(days=2 * i, hours=i % 5)).isoformat(),
                "channel": channels[(i // 6 + i) % 6] if kind != "open" else "email",
                "event_type": kind,
                "amount": 20.0 + i if kind == "purchase" else None,
                "product_id": f"P{i % 4}",
                "category": "shoes" if i % 2 else "bags",
                "campaign_id": None,
            }
        )
    events.append(
        {**events[0], "customer_id": None, "identifier": "cookie:7f3a9c11", "timestamp": "2024-11-30T10:00:00"}
    )
    contacts = [
        {
            "customer_id": f"C{k}",
            "identifier": None,
            "timestamp": f"2024-11-{10 + k:02d}T08:00:00",
            "channel": "email" if k % 2 else "sms",
            "campaign_id": "CMP-1",
            "cost": 0.05,
            "assignment_probability": 0.5,
        }
        for k in range(1, 7)
    ]
    consents = [
        {
            "customer_id": f"C{k}",
            "identifier": None,
            "channel": ch,
            "granted": "true",
            "timestamp": "2024-09-01T00:00:00",
        }
        for k in range(1, 7)
        for ch in ("email", "sms")
    ]
    links = [
        {
            "identifier_a": "cookie:7f3a9c11",
            "identifier_b": "crm:C1",
            "timestamp": "2024-10-02T00:00:00",
            "source": "login",
        },
        {"identifier_a": "email:ann@example.com", "identifier_b": "crm:C2", "timestamp": "2024-10-03", "source": "crm"},
    ]
    customers = [  # the attributes the session's model was trained with (simulator's customers table)
        {
            "customer_id": f"C{k}",
            "signup_date": dt.date(2023, k, 15),
            "region": "north" if k % 2 else "south",
            "age_band": "25-34" if k % 2 else "45-54",
            "loyalty_member": k % 3 == 0,
            "app_user": k % 2 == 0,
        }
        for k in range(1, 7)
    ]
    return {
        "events": events,
        "contacts": contacts,
        "consents": consents,
        "identity_links": links,
        "customers": customers,
    }


def _write(tables: Tables, root: Path, *, parquet: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        frame = pl.DataFrame(rows, infer_schema_length=None)
        if name in parquet or name == "customers":  # typed attributes (dates, booleans) as the model saw them
            frame.write_parquet(root / f"{name}.parquet")
        else:
            frame.write_csv(root / f"{name}.csv")
    return root


def _set(table: str, row: int, **values: Any) -> Callable[[Tables], None]:
    def change(t: Tables) -> None:
        t[table][row].update(values)

    return change


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width: compare on single-spaced text."""
    return " ".join(text.split())


# (id, change to the tables, regex the message must match). Each breaks one thing.
DATA_DEFECTS: list[tuple[str, Callable[[Tables], None], str]] = [
    ("amount_nan", _set("events", 2, amount="NaN"), r"events\.amount: 1 of \d+ rows are not finite"),
    ("amount_inf", _set("events", 2, amount="inf"), r"events\.amount: 1 of \d+ rows are not finite"),
    ("amount_minus_inf", _set("events", 2, amount="-inf"), r"events\.amount: 1 of \d+ rows are not finite"),
    ("amount_1e300", _set("events", 2, amount="1e300"), r"events\.amount: 1 of \d+ rows are not finite or beyond"),
    ("amount_text", _set("events", 2, amount="12,50 kr"), r"events\.amount: 1 of \d+ rows cannot be cast"),
    ("amount_negative_purchase", _set("events", 2, amount="-5"), r"events\.amount: 1 of \d+ rows are purchases"),
    ("cost_nan", _set("contacts", 0, cost="nan"), r"contacts\.cost: 1 of 6 rows are not finite"),
    ("cost_negative", _set("contacts", 0, cost="-1"), r"contacts\.cost: 1 of 6 rows are negative"),
    ("cost_huge", _set("contacts", 0, cost="1e12"), r"contacts\.cost: 1 of 6 rows are not finite or beyond"),
    ("ap_zero", _set("contacts", 1, assignment_probability="0"), r"contacts\.assignment_probability: 1 of 6"),
    ("ap_above_one", _set("contacts", 1, assignment_probability="1.5"), r"contacts\.assignment_probability: 1 of 6"),
    ("ap_nan", _set("contacts", 1, assignment_probability="NaN"), r"contacts\.assignment_probability: 1 of 6"),
    ("ts_year_1", _set("events", 3, timestamp="0001-01-01"), r"events\.timestamp: 1 of \d+ rows are outside"),
    ("ts_year_1900", _set("events", 3, timestamp="1900-01-01"), r"events\.timestamp: 1 of \d+ rows are outside"),
    ("ts_year_9999", _set("events", 3, timestamp="9999-12-31"), r"events\.timestamp: 1 of \d+ rows are outside"),
    ("ts_unparseable", _set("events", 3, timestamp="yesterday"), r"events\.timestamp: 1 of \d+ rows cannot be parsed"),
    ("ts_missing", _set("events", 3, timestamp=""), r"events\.timestamp: 1 of \d+ rows are missing"),
    ("ts_contacts_1900", _set("contacts", 2, timestamp="1900-01-01"), r"contacts\.timestamp: 1 of 6 rows are outside"),
    ("ts_consents_9999", _set("consents", 2, timestamp="9999-01-01"), r"consents\.timestamp: 1 of 12 rows are outside"),
    ("ts_links_year_1", _set("identity_links", 0, timestamp="0001-01-01"), r"identity_links\.timestamp: 1 of 2"),
    ("ts_consent_bad", _set("consents", 2, timestamp="31/12/2024"), r"consents\.timestamp: 1 of 12 rows cannot be"),
    ("blank_id", _set("events", 4, customer_id="   "), r"events\.customer_id: 1 of \d+ rows have neither"),
    ("empty_id", _set("events", 4, customer_id=""), r"events\.customer_id: 1 of \d+ rows have neither"),
    ("contact_blank_id", _set("contacts", 4, customer_id=" "), r"contacts\.customer_id: 1 of 6 rows have neither"),
    ("consent_blank_id", _set("consents", 4, customer_id=" "), r"consents\.customer_id: 1 of 12 rows have neither"),
    ("customers_blank_id", _set("customers", 0, customer_id="  "), r"customers\.customer_id: 1 of 6 rows are null"),
    ("customers_repeated_id", _set("customers", 1, customer_id="C1"), r"customers\.customer_id: 2 of 6 rows repeat"),
    (
        "identifier_untyped",
        _set("events", 5, identifier="ann@x.dk"),
        r"events\.identifier: 1 of \d+ rows are not typed",
    ),
    ("identifier_blank_value", _set("events", 5, identifier="email: "), r"events\.identifier: 1 of \d+ rows are not"),
    (
        "link_missing_b",
        _set("identity_links", 0, identifier_b=""),
        r"identity_links\.identifier_b: 1 of 2 rows are null",
    ),
    (
        "link_untyped",
        _set("identity_links", 1, identifier_a="ann"),
        r"identity_links\.identifier_a: 1 of 2 rows are not",
    ),
    ("event_type_purchased", _set("events", 2, event_type="purchased"), r"events\.event_type: 1 of .*'purchase'\?"),
    ("event_type_Purchased", _set("events", 2, event_type="Purchased"), r"events\.event_type: 1 of .*'purchase'\?"),
    ("event_type_purchse", _set("events", 2, event_type="purchse"), r"events\.event_type: 1 of .*'purchase'\?"),
    ("event_type_views", _set("events", 1, event_type="views"), r"events\.event_type: 1 of .*'view'\?"),
    ("event_type_service_call", _set("events", 1, event_type="service call"), r"events\.event_type: .*'service_call'"),
    ("event_type_missing", _set("events", 1, event_type=""), r"events\.event_type: 1 of \d+ rows have no event_type"),
    ("channel_emial", _set("events", 4, channel="emial"), r"events\.channel: 1 of .*'email'\?"),
    ("channel_e_mail", _set("events", 4, channel="E-Mail"), r"events\.channel: 1 of .*'email'\?"),
    ("channel_webb", _set("events", 0, channel="webs"), r"events\.channel: 1 of .*'web'\?"),
    ("channel_call_center", _set("events", 0, channel="call center"), r"events\.channel: .*'call_center'\?"),
    ("contact_channel_smss", _set("contacts", 1, channel="smss"), r"contacts\.channel: 1 of 6 .*'sms'\?"),
    ("contact_channel_direct_mail", _set("contacts", 1, channel="direct-mail"), r"contacts\.channel: .*'direct_mail'"),
    ("consent_channel_emial", _set("consents", 0, channel="emial"), r"consents\.channel: 1 of 12 .*'email'\?"),
    ("consent_channel_web", _set("consents", 0, channel="web"), r"consents\.channel: 1 of 12 rows name a channel"),
    ("consent_channel_kiosk", _set("consents", 0, channel="kiosk"), r"consents\.channel: 1 of 12 rows name a channel"),
    ("consent_channel_missing", _set("consents", 0, channel=""), r"consents\.channel: 1 of 12 rows have no channel"),
    ("consent_granted_maybe", _set("consents", 0, granted="maybe"), r"consents\.granted: 1 of 12 rows are not boolean"),
    ("consent_granted_missing", _set("consents", 0, granted=""), r"consents\.granted: 1 of 12 rows are missing"),
]


def _drop_column(table: str, column: str) -> Callable[[Tables], None]:
    def change(t: Tables) -> None:
        for row in t[table]:
            row.pop(column, None)

    return change


SCHEMA_DEFECTS: list[tuple[str, Callable[[Tables], None], str]] = [
    ("events_no_timestamp", _drop_column("events", "timestamp"), r"events: missing required column\(s\) 'timestamp'"),
    ("consents_no_granted", _drop_column("consents", "granted"), r"consents: missing required column\(s\) 'granted'"),
    ("links_no_b", _drop_column("identity_links", "identifier_b"), r"identity_links: missing required column"),
]


def _run(args: list[str]) -> Any:
    return RUNNER.invoke(app, args)


def _assert_refused(result: Any, pattern: str, out_dir: Path) -> None:
    message = flat(result.stderr)
    assert result.exit_code == 2, result.output
    assert re.search(pattern, message), message
    assert "Hint:" in message, message
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    assert message.count("error:") == 1, message
    assert not any(out_dir.iterdir()), sorted(p.name for p in out_dir.iterdir())  # no file, no temporary file


def _command(name: str, hist: Path, out_dir: Path, model: Path) -> list[str]:
    return {
        "validate": ["validate", str(hist)],
        "resolve": ["resolve", str(hist), "--out", str(out_dir / "map.parquet")],
        "features": ["features", str(hist), "--as-of", AS_OF, "--out", str(out_dir / "features.parquet")],
        "score": ["score", str(hist), "--model", str(model), "--as-of", AS_OF, "--out", str(out_dir / "c.parquet")],
        "train": [
            *("train", str(hist), "--as-of", AS_OF, "--horizon", "28", "--no-tracking"),
            *("--out", str(out_dir / "m.joblib")),
        ],
    }[name]


# Every defect through validate and score (the command whose file is acted on); a spread of
# them through the other commands that read histories (the same loader: one case each suffices).
_COMMANDS_PER_DEFECT = ("validate", "score")
_OTHER_COMMANDS = ("resolve", "features", "train")
CASES = [(d, cmd) for d in DATA_DEFECTS + SCHEMA_DEFECTS for cmd in _COMMANDS_PER_DEFECT] + [
    (d, _OTHER_COMMANDS[i % 3]) for i, d in enumerate(DATA_DEFECTS + SCHEMA_DEFECTS)
]


def _model(request: pytest.FixtureRequest, command: str) -> Path:
    """The session's campaign model (trained once on the small world, as of 2024-12-01, 28-day horizon).

    Asked for only by the cases that score, so the others run without training it.
    """
    return request.getfixturevalue("campaign_model_path") if command == "score" else Path("no-model.joblib")


@pytest.mark.parametrize(("defect", "command"), CASES, ids=[f"{d[0]}-{c}" for d, c in CASES])
def test_bad_histories_are_refused_by_every_command_22(
    defect: tuple[str, Callable[[Tables], None], str], command: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tiny_model = _model(request, command)
    _, change, pattern = defect
    tables = _base()
    change(tables)
    hist = _write(tables, tmp_path / "hist")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _assert_refused(_run(_command(command, hist, out_dir, tiny_model)), pattern, out_dir)


def test_the_base_histories_are_accepted_by_every_command(tmp_path: Path, campaign_model_path: Path) -> None:
    tiny_model = campaign_model_path
    hist = _write(_base(), tmp_path / "hist")
    for command in ("validate", "resolve", "features", "score"):
        out_dir = tmp_path / command
        out_dir.mkdir()
        result = _run(_command(command, hist, out_dir, tiny_model))
        assert result.exit_code == 0, (command, result.output)


# ----------------------------------------------------------------------------- files that cannot be read


def _parquet_defect(kind: str, root: Path) -> Path:
    root.mkdir(parents=True)
    _write({k: v for k, v in _base().items() if k != "events"}, root)
    events = pl.DataFrame(_base()["events"], infer_schema_length=None)
    target = root / "events.parquet"
    if kind == "overflowing_timestamp":
        ts = pa.array([0] * (events.height - 1) + [2**62], pa.int64()).cast(pa.timestamp("ms"))
        table = events.drop("timestamp").to_arrow().append_column("timestamp", ts)
        pq.write_table(table, target)
    elif kind == "repeated_column":
        table = events.to_arrow()
        table = table.append_column("category_copy", table.column("category"))
        pq.write_table(table.rename_columns([*table.column_names[:-1], "category"]), target)
    elif kind == "corrupt":
        events.write_parquet(target)
        data = bytearray(target.read_bytes())
        target.write_bytes(bytes(data[: len(data) // 2]))
    elif kind == "not_parquet":
        target.write_text("customer_id,timestamp\nC1,2024-01-01\n")
    elif kind == "blank_id_parquet":
        events.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("  ")).otherwise("customer_id").alias("customer_id")
        ).write_parquet(target)
    elif kind == "year_9999_parquet":
        events.with_columns(
            pl.col("timestamp")
            .str.to_datetime()
            .dt.offset_by(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("8000y")).otherwise(pl.lit("0d")))
        ).write_parquet(target)
    elif kind == "nan_amount_parquet":
        events.with_columns(pl.col("amount").fill_null(float("nan"))).write_parquet(target)
    elif kind == "whitespace_channel_parquet":
        events.with_columns(pl.lit(" emial ").alias("channel")).write_parquet(target)
    return root


PARQUET_DEFECTS = [
    ("overflowing_timestamp", r"events\.timestamp: 1 of 37 rows are out of the range of a timestamp"),
    ("repeated_column", r"events: 'events\.parquet' has the column 'category' twice"),
    ("corrupt", r"events: 'events\.parquet' cannot be read"),
    ("not_parquet", r"events: 'events\.parquet' cannot be read"),
    ("blank_id_parquet", r"events\.customer_id: 1 of 37 rows have neither"),
    ("year_9999_parquet", r"events\.timestamp: 1 of 37 rows are outside the plausible range"),
    ("nan_amount_parquet", r"events\.amount: \d+ of 37 rows are not finite"),
    ("whitespace_channel_parquet", r"events\.channel: 37 of 37 rows .*'email'\?"),
]


@pytest.mark.parametrize("command", ["validate", "score", "features"])
@pytest.mark.parametrize(("kind", "pattern"), PARQUET_DEFECTS, ids=[k for k, _ in PARQUET_DEFECTS])
def test_unreadable_or_broken_parquet_is_exit_2_naming_the_file_22(
    kind: str, pattern: str, command: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tiny_model = _model(request, command)
    hist = _parquet_defect(kind, tmp_path / "hist")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _assert_refused(_run(_command(command, hist, out_dir, tiny_model)), pattern, out_dir)


def test_repeated_csv_header_is_refused_22(tmp_path: Path) -> None:
    hist = _write(_base(), tmp_path / "hist")
    text = (hist / "events.csv").read_text().splitlines()
    text[0] = text[0].replace("category", "amount")
    (hist / "events.csv").write_text("\n".join(text) + "\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = _run(["features", str(hist), "--as-of", AS_OF, "--out", str(out_dir / "f.parquet")])
    _assert_refused(result, r"events: 'events\.csv' has the column 'amount' twice \(columns 6 and 8\)", out_dir)


def test_a_widened_timestamp_range_accepts_old_dates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _base()
    _set("events", 3, timestamp="1950-06-01")(tables)
    hist = _write(tables, tmp_path / "hist")
    assert _run(["validate", str(hist)]).exit_code == 2
    monkeypatch.setenv("OMNI_ML_TIMESTAMP_RANGE", "1900-01-01..2100-01-01")
    result = _run(["validate", str(hist)])
    assert result.exit_code == 0, result.output
    assert "1950-06-01" in result.stdout


def test_new_event_types_and_channels_are_kept_and_counted(tmp_path: Path) -> None:
    tables = _base()
    _set("events", 1, event_type="wishlist", channel="kiosk")(tables)
    _set("events", 2, event_type="Purchase ", channel=" WEB")(tables)
    hist = _write(tables, tmp_path / "hist", parquet=("events",))
    result = _run(["validate", str(hist)])
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "kiosk 1" in out
    assert "wishlist 1" in out
    assert "event_type: 1 rows normalised to lower case without surrounding spaces (e.g. 'Purchase ')" in out
    assert "channel: 1 rows normalised" in out


# ----------------------------------------------------------------------------- flags and paths


def _flag_cases(hist: Path, out_dir: Path, model: Path, tmp_path: Path) -> list[tuple[str, list[str], str]]:
    score = ["score", str(hist), "--model", str(model), "--as-of", AS_OF]
    readonly = Path("/proc/omni_ml_out")  # not writable, even for root
    return [
        ("score_missing_folder", [*score, "--out", str(out_dir / "nope" / "c.parquet")], r"directory of out .* does"),
        ("score_out_is_dir", [*score, "--out", str(out_dir)], r"--out .* is a directory"),
        ("score_readonly", [*score, "--out", str(readonly / "c.parquet")], r"--out '/proc/omni_ml_out/c\.parquet'"),
        ("score_bad_suffix", [*score, "--out", str(out_dir / "c.xlsx")], r"must end in \.parquet or \.csv"),
        ("score_stale", [*score[:-1], "2030-01-01", "--out", str(out_dir / "c.parquet")], r"--allow-stale"),
        ("score_before_training", [*score[:-1], "2024-11-01", "--out", str(out_dir / "c.parquet")], r"before the"),
        ("score_bad_as_of", [*score[:-1], "15/12/2024", "--out", str(out_dir / "c.parquet")], r"as_of: cannot parse"),
        (
            "score_no_model",
            [
                "score",
                str(hist),
                "--model",
                str(tmp_path / "x.joblib"),
                "--as-of",
                AS_OF,
                "--out",
                str(out_dir / "c.parquet"),
            ],
            r"no such file",
        ),
        ("score_fraction", [*score, "--out", str(out_dir / "c.parquet"), "--control-fraction", "1.5"], r"control_fra"),
        (
            "features_folder_is_a_file",
            ["features", str(hist), "--as-of", AS_OF, "--out", str(hist / "events.csv" / "a" / "f.parquet")],
            r"--out .* is a file, not a folder",
        ),
        (
            "features_bad_as_of",
            ["features", str(hist), "--as-of", "soon", "--out", str(out_dir / "f.parquet")],
            r"--as-of: cannot parse 'soon'",
        ),
        ("resolve_readonly", ["resolve", str(hist), "--out", str(readonly / "m.parquet")], r"--out '/proc/"),
        (
            "train_folder_is_a_file",
            [
                "train",
                str(hist),
                "--as-of",
                AS_OF,
                "--horizon",
                "28",
                "--no-tracking",
                "--out",
                str(hist / "contacts.csv" / "m.joblib"),
            ],
            r"--out .* is a file, not a folder",
        ),
        (
            "train_no_out",
            ["train", str(hist), "--as-of", AS_OF, "--horizon", "28", "--no-tracking"],
            r"--no-tracking needs --out",
        ),
        (
            "simulate_out_is_file",
            ["simulate", "--out", str(hist / "events.csv"), "--preset", "small"],
            r"--out .* is a file",
        ),
        ("simulate_readonly", ["simulate", "--out", str(readonly / "w"), "--preset", "small"], r"--out '/proc/"),
        ("validate_no_dir", ["validate", str(tmp_path / "none")], r"does not exist or is not a directory"),
    ]


_FLAG_IDS = [c[0] for c in _flag_cases(Path("h"), Path("o"), Path("m"), Path("t"))]


@pytest.mark.parametrize("case", _FLAG_IDS)
def test_bad_flags_and_output_paths_are_refused_before_any_work_22(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tiny_model = _model(request, "score" if case.startswith("score") else "")
    hist = _write(_base(), tmp_path / "hist")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _, args, pattern = next(c for c in _flag_cases(hist, out_dir, tiny_model, tmp_path) if c[0] == case)
    result = _run(args)
    message = flat(result.stderr)
    assert result.exit_code == 2, result.output
    assert re.search(pattern, message), message
    assert "Traceback" not in result.output
    assert not any(out_dir.iterdir())


def test_stale_scoring_goes_on_with_allow_stale(tmp_path: Path, campaign_model_path: Path) -> None:
    tiny_model = campaign_model_path
    hist = _write(_base(), tmp_path / "hist")
    out = tmp_path / "c.parquet"
    args = ["score", str(hist), "--model", str(tiny_model), "--as-of", "2025-03-01", "--out", str(out)]
    refused = _run(args)
    assert refused.exit_code == 2
    assert "--allow-stale" in flat(refused.stderr)
    assert not out.exists()
    with pytest.warns(UserWarning, match=r"80 days before as_of 2025-03-01"):
        allowed = _run([*args, "--allow-stale"])
    assert allowed.exit_code == 0, allowed.output
    assert out.exists()
    assert "warning: events: the last event" in flat(allowed.stdout)


# ----------------------------------------------------------------------------- equivalent inputs, same bytes


def _same_bytes(tmp_path: Path, model: Path, variant: Callable[[Tables], None]) -> tuple[bytes, bytes, bytes, bytes]:
    files = []
    for name, change in (("base", None), ("variant", variant)):
        tables = _base()
        if change is not None:
            change(tables)
        hist = _write(tables, tmp_path / name)
        feats, camp = tmp_path / f"{name}_f.parquet", tmp_path / f"{name}_c.parquet"
        r1 = _run(["features", str(hist), "--as-of", AS_OF, "--out", str(feats)])
        r2 = _run(["score", str(hist), "--model", str(model), "--as-of", AS_OF, "--out", str(camp)])
        assert r1.exit_code == 0, r1.output
        assert r2.exit_code == 0, r2.output
        files += [feats.read_bytes(), camp.read_bytes()]
    return files[0], files[2], files[1], files[3]


def _duplicate_rows(t: Tables) -> None:
    t["events"] += [dict(r) for r in t["events"][:10]]
    t["consents"] += [dict(r) for r in t["consents"][:3]]


def _another_time_zone(t: Tables) -> None:
    for table in ("events", "contacts", "consents", "identity_links"):
        for row in t[table]:
            moment = dt.datetime.fromisoformat(row["timestamp"]).replace(tzinfo=dt.UTC)
            row["timestamp"] = moment.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat()


def _row_order(t: Tables) -> None:
    for table in t.values():
        table.reverse()


@pytest.mark.parametrize(
    "variant", [_duplicate_rows, _another_time_zone, _row_order], ids=["duplicates", "time_zone", "row_order"]
)
def test_equivalent_histories_give_byte_identical_files_22(
    variant: Callable[[Tables], None], tmp_path: Path, campaign_model_path: Path
) -> None:
    base_f, var_f, base_c, var_c = _same_bytes(tmp_path, campaign_model_path, variant)
    assert base_f == var_f
    assert base_c == var_c


def test_the_suite_has_at_least_100_bad_inputs() -> None:
    n = len(CASES) + 3 * len(PARQUET_DEFECTS) + 1 + len(_FLAG_IDS)
    assert n >= 100, n
    assert os.environ.get("OMNI_ML_PSEUDONYM_KEY")  # set by conftest for the whole suite
