"""The histories contract (issue 2): every bad input gets a clear error, good input loads the same from any format."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from omni_ml.data import (
    CONTACTABLE_CHANNELS,
    EVENT_TYPES,
    TABLES,
    TIMESTAMP,
    Histories,
    LoadReport,
    UnknownTableWarning,
    load_histories,
)
from omni_ml.exceptions import SchemaError

UTC = dt.UTC
EVENTS_HEADER = "customer_id,identifier,timestamp,channel,event_type,amount,product_id"
EVENTS_OK = [
    "C1,,2025-01-05T10:00:00Z,web,visit,,",
    "C1,,2025-01-07T17:45:00+01:00,store,purchase,699.00,P1",
    ",email:bo@x.dk,2025-02-01,email,open,,",
]
EVENT_COLUMNS = ["customer_id", "identifier", "timestamp", "channel", "event_type", "amount"]
EVENT_COLUMNS += ["product_id", "category", "campaign_id"]


def write(directory: Path, **tables: str | bytes | pl.DataFrame) -> Path:
    """Write ``name_ext=content`` files, e.g. ``events_csv="..."`` -> events.csv."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, content in tables.items():
        stem, ext = key.rsplit("_", 1)
        path = directory / f"{stem}.{ext}"
        if isinstance(content, pl.DataFrame):
            content.write_parquet(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def events_csv(*rows: str, header: str = EVENTS_HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def load_error(directory: Path, **kwargs: object) -> str:
    with pytest.raises(SchemaError) as info:
        load_histories(directory, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def assert_problem(message: str, *parts: str) -> None:
    """Every part (a regex) is found in one line of the message; the line ends with a Hint."""
    lines = [ln.strip() for ln in message.splitlines() if all(re.search(p, ln.strip()) for p in parts)]
    assert lines, f"no line of\n{message}\nmatches all of {parts}"
    assert "Hint: " in lines[0], lines[0]


# ----------------------------------------------------------------------------- good input


def test_sample_loads_with_the_normalised_schema(sample_dir: Path) -> None:
    hist = load_histories(sample_dir)
    events = hist.events.collect()
    assert events.columns == EVENT_COLUMNS
    assert events.schema["timestamp"] == TIMESTAMP
    assert events.schema["amount"] == pl.Float64
    assert events.height == hist.report.tables["events"].rows == 16  # type: ignore[union-attr]
    consents = hist.consents.collect()  # type: ignore[union-attr]
    assert consents.schema["granted"] == pl.Boolean
    assert consents["granted"].to_list() == [True, False, True, False, True]
    contacts = hist.contacts.collect()  # type: ignore[union-attr]
    assert contacts.columns == [
        "customer_id",
        "identifier",
        "timestamp",
        "channel",
        "campaign_id",
        "cost",
        "assignment_probability",
    ]
    customers = hist.customers.collect()  # type: ignore[union-attr]
    assert customers.columns == ["customer_id", "signup_date", "region"]  # attributes kept as given
    assert set(hist.tables()) == set(TABLES)
    assert set(CONTACTABLE_CHANNELS) <= {"email", "sms", "push", "direct_mail", "call_center"}


def test_report_counts_rows_customers_channels_and_event_types(sample_dir: Path) -> None:
    report = load_histories(sample_dir).report
    assert isinstance(report, LoadReport)
    ev = report.tables["events"]
    assert (ev.rows, ev.customers, ev.identifiers) == (16, 2, 3)
    assert ev.channels == {"app": 3, "call_center": 1, "email": 3, "store": 4, "web": 5}
    assert sum(ev.event_types.values()) == 16
    assert ev.event_types["purchase"] == 4
    assert ev.start == dt.datetime(2025, 1, 5, 10, 12, tzinfo=UTC)
    assert ev.end == dt.datetime(2025, 2, 20, 15, 0, tzinfo=UTC)
    assert any("4 rows carry only an identifier" in n for n in ev.notes)
    assert ev.unresolved_rows == 4
    assert [report.tables[t].unresolved_rows for t in ("contacts", "consents", "customers")] == [1, 1, 0]
    assert report.tables["identity_links"].identifiers == 4
    text = report.to_text()
    assert "events" in text
    assert "16 rows" in text
    assert "channels:" in text
    assert "event types:" in text


def test_timezones_are_normalised_to_utc(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv=events_csv(
            "a,,2025-01-01T10:00:00+01:00,web,visit,,",  # aware -> converted
            "a,,2025-01-01T10:00:00,web,view,,",  # naive -> taken as UTC
            "a,,2025-01-02,web,cart,,",  # date -> midnight UTC
            "a,,2025-01-03 08:30:00.250 UTC,web,click,,",
            "a,,2025-01-04T08:30Z,web,open,,",
            "a,,2025-01-05 23:30-0530,web,visit,,",
        ),
    )
    ts = load_histories(d).events.collect()["timestamp"].to_list()
    assert ts == [
        dt.datetime(2025, 1, 1, 9, 0, tzinfo=UTC),
        dt.datetime(2025, 1, 1, 10, 0, tzinfo=UTC),
        dt.datetime(2025, 1, 2, 0, 0, tzinfo=UTC),
        dt.datetime(2025, 1, 3, 8, 30, 0, 250_000, tzinfo=UTC),
        dt.datetime(2025, 1, 4, 8, 30, tzinfo=UTC),
        dt.datetime(2025, 1, 6, 5, 0, tzinfo=UTC),
    ]


def test_parquet_timestamp_types_are_normalised(tmp_path: Path) -> None:
    base = {"customer_id": ["a", "b"], "channel": ["web", "web"], "event_type": ["visit", "visit"]}
    cph = pl.Series([dt.datetime(2025, 7, 1, 12), dt.datetime(2025, 1, 1, 12)]).dt.replace_time_zone(
        "Europe/Copenhagen"
    )
    cases = {
        "aware_ns": cph.dt.cast_time_unit("ns"),
        "naive_ms": pl.Series([dt.datetime(2025, 7, 1, 10), dt.datetime(2025, 1, 1, 11)]).dt.cast_time_unit("ms"),
        "date": pl.Series([dt.date(2025, 7, 1), dt.date(2025, 1, 1)]),
    }
    expected = {
        "aware_ns": [dt.datetime(2025, 7, 1, 10, tzinfo=UTC), dt.datetime(2025, 1, 1, 11, tzinfo=UTC)],
        "naive_ms": [dt.datetime(2025, 7, 1, 10, tzinfo=UTC), dt.datetime(2025, 1, 1, 11, tzinfo=UTC)],
        "date": [dt.datetime(2025, 7, 1, tzinfo=UTC), dt.datetime(2025, 1, 1, tzinfo=UTC)],
    }
    for name, ts in cases.items():
        d = write(tmp_path / name, events_parquet=pl.DataFrame({**base, "timestamp": ts}))
        events = load_histories(d).events.collect()
        assert events.schema["timestamp"] == TIMESTAMP, name
        assert events["timestamp"].to_list() == expected[name], name


def test_plain_transaction_log_loads_as_purchases_on_unknown_channel(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv="customer_id,date,amount\nA,2025-01-02,10.5\nB,2025-01-03,3\nA,2025-02-01,7.25\n")
    hist = load_histories(d)
    events = hist.events.collect()
    assert events["event_type"].to_list() == ["purchase"] * 3
    assert events["channel"].to_list() == ["unknown"] * 3
    assert events["amount"].to_list() == [10.5, 3.0, 7.25]
    assert events["timestamp"][0] == dt.datetime(2025, 1, 2, tzinfo=UTC)
    assert not hist.has_channels
    notes = " ".join(hist.report.tables["events"].notes)  # type: ignore[union-attr]
    assert "plain transaction log" in notes
    assert "'date' used as the timestamp" in notes


def test_extra_columns_are_kept_after_the_contract_columns(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv=events_csv("a,,2025-01-01,web,visit,,,store_42", header=EVENTS_HEADER + ",shop"))
    events = load_histories(d).events.collect()
    assert events.columns == [*EVENT_COLUMNS, "shop"]
    assert events["shop"].to_list() == ["store_42"]


def test_strings_are_stripped_lowercased_and_blank_is_null(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv=events_csv(" C1 , ,2025-01-01, Web ,VISIT,, ", "C2,,2025-01-01,  ,view,,"))
    hist = load_histories(d)
    events = hist.events.collect()
    assert events.row(0, named=True) | {"timestamp": None} == {
        "customer_id": "C1",
        "identifier": None,
        "timestamp": None,
        "channel": "web",
        "event_type": "visit",
        "amount": None,
        "product_id": None,
        "category": None,
        "campaign_id": None,
    }
    assert events["channel"][1] == "unknown"  # a blank channel is counted, not dropped
    assert "1 rows without a channel" in " ".join(hist.report.tables["events"].notes)  # type: ignore[union-attr]


def test_numeric_ids_in_parquet_become_their_decimal_text(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_parquet=pl.DataFrame(
            {
                "customer_id": [1001.0, None, 7.5],  # pandas writes integer ids with gaps as floats
                "identifier": [None, "crm:12", None],
                "timestamp": [dt.datetime(2025, 1, 1)] * 3,
                "channel": ["web"] * 3,
                "event_type": ["visit"] * 3,
            }
        ),
        customers_parquet=pl.DataFrame({"customer_id": [1001, 12], "age": [40, 51]}),
    )
    hist = load_histories(d)
    assert hist.events.collect()["customer_id"].to_list() == ["1001", None, "7.5"]
    customers = hist.customers.collect()  # type: ignore[union-attr]
    assert customers["customer_id"].to_list() == ["1001", "12"]
    assert customers.schema["age"] == pl.Int64


def test_boolean_like_consent_values_are_accepted(tmp_path: Path) -> None:
    consents = "customer_id,channel,granted,timestamp\n" + "".join(
        f"C1,email,{v},2025-01-0{i + 1}\n" for i, v in enumerate(["TRUE", "no", " Yes ", "0", "1", "withdrawn"])
    )
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK), consents_csv=consents)
    granted = load_histories(d).consents.collect()["granted"].to_list()  # type: ignore[union-attr]
    assert granted == [True, False, True, False, True, False]
    d2 = write(
        tmp_path / "pq",
        events_csv=events_csv(*EVENTS_OK),
        consents_parquet=pl.DataFrame(
            {
                "customer_id": ["C1", "C1"],
                "channel": ["sms"] * 2,
                "granted": [1, 0],
                "timestamp": [dt.date(2025, 1, 1)] * 2,
            }
        ),
    )
    assert load_histories(d2).consents.collect()["granted"].to_list() == [True, False]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("separator", "bom"),
    [(";", False), ("\t", False), ("|", False), (",", True), (";", True)],
    ids=["semicolon", "tab", "pipe", "bom", "bom-semicolon"],
)
def test_csv_with_other_delimiter_or_bom_loads_the_same(tmp_path: Path, separator: str, bom: bool) -> None:
    text = events_csv(*EVENTS_OK, "C2,,2025-02-03,app,purchase,1299.5,P9")
    reference = load_histories(write(tmp_path / "ref", events_csv=text)).events.collect()
    other = text.replace(",", separator).encode("utf-8")
    d = write(tmp_path / "other", events_csv=(b"\xef\xbb\xbf" if bom else b"") + other)
    loaded = load_histories(d).events.collect()
    assert loaded.columns == EVENT_COLUMNS  # the BOM does not stick to the first column name
    assert loaded.equals(reference)


def test_separator_is_not_fooled_by_commas_inside_quotes(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv='customer_id;timestamp;channel;event_type;note\n"C1";"2025-01-01";"web";"visit";"a, b, c, d"\n',
    )
    events = load_histories(d).events.collect()
    assert events["note"].to_list() == ["a, b, c, d"]


def test_duplicates_are_counted_and_only_exact_ones_dropped(tmp_path: Path) -> None:
    rows = [
        "C1,,2025-01-05T10:00:00Z,web,purchase,10.00,P1",
        "C1,,2025-01-05T10:00:00Z,web,purchase,10.00,P1",  # exact duplicate
        "C1,,2025-01-05T11:00:00+01:00,WEB,purchase,10,P1",  # identical after normalisation
        "C1,,2025-01-05T10:00:00Z,web,purchase,10.01,P1",  # near-duplicate: other amount
        "C1,,2025-01-05T10:00:01Z,web,purchase,10.00,P1",  # near-duplicate: one second later
        "C2,,2025-01-05T10:00:00Z,web,purchase,10.00,P1",  # other customer
        "C2,,2025-01-06T10:00:00Z,app,view,,P1",
        "C2,,2025-01-06T10:00:00Z,app,view,,P1",  # exact duplicate
    ]
    hist = load_histories(write(tmp_path, events_csv=events_csv(*rows)))
    summary = hist.report.tables["events"]  # type: ignore[union-attr]
    events = hist.events.collect()
    assert summary.duplicates_dropped == 3
    assert summary.rows == events.height == 5
    assert events["amount"].to_list() == [10.0, 10.01, 10.0, 10.0, None]  # file order kept, first copy kept
    # channel and event-type counts describe the rows that were kept
    assert summary.channels == {"app": 1, "web": 4}
    assert summary.event_types == {"purchase": 4, "view": 1}
    assert "dropped 3 exact duplicate rows" in hist.report.to_text()  # type: ignore[union-attr]


def test_duplicates_with_coarse_timestamps(tmp_path: Path) -> None:
    # Every timestamp repeats (dates): the full comparison path.
    rows = [f"C{i % 3},,2025-01-0{1 + i % 2},web,purchase,{i % 4}.5," for i in range(24)]
    hist = load_histories(write(tmp_path, events_csv=events_csv(*rows)))
    events = hist.events.collect()
    assert events.height == 12 == events.unique().height
    assert hist.report.tables["events"].duplicates_dropped == 12  # type: ignore[union-attr]


def test_future_rows_are_reported_not_dropped(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK, "C9,,2031-01-01,web,visit,,"))
    hist = load_histories(d, as_of="2025-02-01")
    summary = hist.report.tables["events"]  # type: ignore[union-attr]
    assert summary.future_rows == 2  # at or after as-of: 2025-02-01 itself and 2031
    assert hist.events.collect().height == 4
    assert "2 rows at or after as-of 2025-02-01 00:00" in hist.report.to_text()  # type: ignore[union-attr]
    assert hist.report.as_of == dt.datetime(2025, 2, 1, tzinfo=UTC)  # type: ignore[union-attr]
    assert load_histories(d).report.tables["events"].future_rows == 0  # type: ignore[union-attr]


def test_unknown_table_files_warn_but_do_not_fail(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK), contact_csv="x\n1\n", notes_txt="hello", events_tsv="x")
    with pytest.warns(UnknownTableWarning) as record:
        hist = load_histories(d)
    messages = [str(w.message) for w in record]
    assert any("ignored 'contact.csv'" in m and "Did you mean 'contacts'?" in m for m in messages)
    assert any("ignored 'notes.txt'" in m for m in messages)
    assert any("ignored 'events.tsv'" in m and "Hint: tables are .parquet or .csv" in m for m in messages)
    assert hist.contacts is None
    assert hist.events.collect().height == 3
    assert len(hist.report.warnings) == 3  # type: ignore[union-attr]
    assert "warning: ignored 'contact.csv'" in hist.report.to_text()  # type: ignore[union-attr]


def test_from_frames_validates_like_files(tmp_path: Path) -> None:
    disk = load_histories(write(tmp_path, events_csv=events_csv(*EVENTS_OK))).events.collect()
    frame = pl.read_csv(tmp_path / "events.csv", infer_schema=False)
    memory = Histories.from_frames(frame).events.collect()
    assert memory.equals(disk)
    with pytest.raises(SchemaError, match=r"unknown table\(s\) 'contact' Did you mean 'contacts'\?"):
        Histories.from_frames(frame, contact=frame)
    with pytest.raises(SchemaError, match=r"events.amount: 1 of 1 rows are purchases with a negative amount"):
        Histories.from_frames(pl.DataFrame({"customer_id": ["a"], "timestamp": [dt.date(2025, 1, 1)], "amount": [-1]}))


def test_tables_are_in_memory_and_collect_is_stable(sample_dir: Path) -> None:
    hist = load_histories(sample_dir)
    first = hist.events.collect()
    assert hist.collect().events.collect().equals(first)
    assert hist.replace(contacts=None).contacts is None


# ----------------------------------------------------------------------------- bad input


def test_missing_required_column_suggests_the_close_name(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv=events_csv("a,,2025-01-01,web,visit,,", header=EVENTS_HEADER.replace("timestamp", "Timestmp")),
    )
    msg = load_error(d)
    assert_problem(msg, r"^events: missing required column\(s\) 'timestamp' \(did you mean 'Timestmp'\?\)", "found")
    d2 = write(tmp_path / "noid", events_csv="CustomerID,timestamp,channel,event_type\nA,2025-01-01,web,visit\n")
    assert_problem(load_error(d2), r"'customer_id \(or identifier\)' \(did you mean 'CustomerID'\?\)")


def test_wrong_type_that_cannot_be_cast(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK, "C3,,2025-02-02,store,purchase,12;50 kr,"))
    assert_problem(load_error(d), r"^events\.amount: 1 of 4 rows cannot be cast to a number \(e\.g\. '12;50 kr'\)")
    nested = pl.DataFrame(
        {"customer_id": ["a"], "timestamp": ["2025-01-01"], "channel": [["web"]], "event_type": ["x"]}
    )
    d2 = write(tmp_path / "nested", events_parquet=nested)
    assert_problem(load_error(d2), r"^events\.channel: the column has type List\(String\)")


def test_unparseable_and_missing_timestamps(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv=events_csv(*EVENTS_OK, "C3,,yesterday,web,visit,,", "C3,,,web,visit,,", "C4,,  ,web,view,,"),
    )
    msg = load_error(d)
    assert_problem(
        msg, r"^events\.timestamp: 1 of 6 rows cannot be parsed as a timestamp \(e\.g\. 'yesterday'\)", "ISO 8601"
    )
    assert_problem(msg, r"^events\.timestamp: 2 of 6 rows are missing \(null or empty\) \(e\.g\. '<missing>'\)")
    epochs = pl.DataFrame({"customer_id": ["a"], "timestamp": [1735689600], "channel": ["web"], "event_type": ["x"]})
    d2 = write(tmp_path / "epoch", events_parquet=epochs)
    assert_problem(load_error(d2), r"^events\.timestamp: 1 of 1 rows cannot be parsed .* \(e\.g\. '1735689600'\)")
    nulls = pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "timestamp": [dt.datetime(2025, 1, 1), None],
            "channel": ["w"] * 2,
            "event_type": ["x"] * 2,
        }
    )
    d3 = write(tmp_path / "nulls", events_parquet=nulls)
    assert_problem(load_error(d3), r"^events\.timestamp: 1 of 2 rows are missing")


def test_null_or_empty_customer_ids_and_identifiers(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv=events_csv(*EVENTS_OK, " ,,2025-01-01,web,visit,,", "C5,ann@x.dk,2025-01-01,web,visit,,"),
        identity_links_csv="identifier_a,identifier_b,timestamp\ncookie:1,,2025-01-01\ncookie:1,email:a@x,2025-01-01\n",
        customers_csv="customer_id,region\nC1,north\n,south\nC2,east\nC2,west\n",
    )
    msg = load_error(d)
    assert_problem(msg, r"^events\.customer_id: 1 of 5 rows have neither a customer_id nor an identifier", "'<null>'")
    assert_problem(
        msg, r"^events\.identifier: 1 of 5 rows are not typed identifiers \(e\.g\. 'a\u2022{4}dk'\)", "TYPE:VALUE"
    )
    assert_problem(msg, r"^identity_links\.identifier_b: 1 of 2 rows are null or empty")
    assert_problem(msg, r"^customers\.customer_id: 1 of 4 rows are null or empty")
    assert_problem(msg, r"^customers\.customer_id: 2 of 4 rows repeat a customer_id .* \(e\.g\. 'C2'\)")


def test_negative_purchase_amounts(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv=events_csv(
            *EVENTS_OK, "C1,,2025-02-02,store,purchase,-699,P1", "C1,,2025-02-03,store,return,699,P1"
        ),
    )
    msg = load_error(d)
    assert_problem(
        msg, r"^events\.amount: 1 of 5 rows are purchases with a negative amount \(e\.g\. '-699\.0'\)", "'return'"
    )
    assert len(msg.splitlines()) == 2  # the return with a positive amount is fine
    # a negative amount elsewhere (a return written with its sign) breaks no rule
    signed_return = events_csv(*EVENTS_OK, "C1,,2025-02-03,store,return,-699,P1")
    ok = load_histories(write(tmp_path / "ok", events_csv=signed_return))
    assert ok.events.collect()["amount"].min() == -699.0


def test_consent_granted_not_boolean_like(tmp_path: Path) -> None:
    consents = "customer_id,channel,granted,timestamp\n"
    consents += "C1,email,maybe,2025-01-01\nC1,sms,true,2025-01-01\nC1,push,,2025-01-01\n"
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK), consents_csv=consents)
    msg = load_error(d)
    assert_problem(msg, r"^consents\.granted: 1 of 3 rows are not boolean-like \(e\.g\. 'maybe'\)", "true/false")
    assert_problem(msg, r"^consents\.granted: 1 of 3 rows are missing")


def test_contacts_rules(tmp_path: Path) -> None:
    contacts = "customer_id,timestamp,channel,cost,assignment_probability\n"
    contacts += "C1,2025-01-01,email,-1,0.5\nC1,2025-01-02,sms,0.1,1.5\n"
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK), contacts_csv=contacts)
    msg = load_error(d)
    assert_problem(msg, r"^contacts\.assignment_probability: 1 of 2 rows are outside \(0, 1\] \(e\.g\. '1\.5'\)")
    assert_problem(msg, r"^contacts\.cost: 1 of 2 rows are negative \(e\.g\. '-1\.0'\)")


def test_empty_events_table(tmp_path: Path) -> None:
    assert_problem(
        load_error(write(tmp_path / "csv", events_csv=EVENTS_HEADER + "\n")), r"^events: the table is empty \(0 rows\)"
    )
    empty = pl.DataFrame(
        schema={"customer_id": pl.String, "timestamp": pl.Datetime, "channel": pl.String, "event_type": pl.String}
    )
    assert_problem(load_error(write(tmp_path / "pq", events_parquet=empty)), r"^events: the table is empty")
    with pytest.raises(SchemaError, match=r"events: 'events.csv' is empty \(no header\)\. Hint: write a header row"):
        load_histories(write(tmp_path / "blank", events_csv=""))


def test_empty_optional_table_is_fine(tmp_path: Path) -> None:
    d = write(tmp_path, events_csv=events_csv(*EVENTS_OK), contacts_csv="customer_id,timestamp,channel\n")
    hist = load_histories(d)
    assert hist.report.tables["contacts"].rows == 0  # type: ignore[union-attr]
    assert hist.contacts.collect().schema["timestamp"] == TIMESTAMP  # type: ignore[union-attr]


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    text = events_csv(*EVENTS_OK, "Sø,,2025-01-01,web,visit,,")
    d = write(tmp_path, events_csv=text.encode("latin-1"))
    msg = load_error(d)
    assert_problem(msg, r"^events: 'events\.csv' is not valid UTF-8 \(line 5 has the bytes", "save the file as UTF-8")


def test_problems_of_all_tables_are_listed_together(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        events_csv=events_csv(*EVENTS_OK, "C1,,never,web,visit,,"),
        consents_csv="customer_id,channel,timestamp\nC1,email,2025-01-01\n",
    )
    msg = load_error(d)
    assert msg.startswith(f"histories in {str(d)!r} break the input contract:")
    assert_problem(msg, r"^ *events\.timestamp: 1 of 4 rows cannot be parsed")
    assert_problem(msg, r"consents: missing required column\(s\) 'granted'")


def test_directory_level_errors(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"does not exist or is not a directory"):
        load_histories(tmp_path / "nope")
    write(tmp_path / "noevents", contacts_csv="customer_id,timestamp,channel\n")
    with pytest.raises(SchemaError, match=r"has no events table \(found: contacts\.csv\)\. Hint: .*events\.parquet"):
        load_histories(tmp_path / "noevents")
    d = write(tmp_path / "two", events_csv=events_csv(*EVENTS_OK), events_parquet=pl.DataFrame({"a": [1]}))
    with pytest.raises(SchemaError, match=r"events: two files for one table .* Hint: keep exactly one"):
        load_histories(d)
    with pytest.raises(SchemaError, match=r"as_of: cannot parse 'soon' as a date\. Hint: use ISO 8601"):
        load_histories(write(tmp_path / "ok", events_csv=events_csv(*EVENTS_OK)), as_of="soon")


# ----------------------------------------------------------------------------- properties

_ROW = st.fixed_dictionaries(
    {
        "customer_id": st.one_of(st.none(), st.sampled_from(["C1", "C2", "C3", "17"])),
        "identifier": st.one_of(st.none(), st.sampled_from(["email:a@x.dk", "cookie:9f2c", "crm:C1"])),
        "timestamp": st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2035, 1, 1)),
        "channel": st.sampled_from(["web", "app", "store", "email", "sms"]),
        "event_type": st.sampled_from(EVENT_TYPES),
        "amount": st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False).map(lambda x: round(x, 2))),
        "product_id": st.one_of(st.none(), st.text("abcXYZ09-", min_size=1, max_size=6)),
    }
).filter(lambda r: r["customer_id"] is not None or r["identifier"] is not None)

_FRAMES = st.lists(_ROW, min_size=1, max_size=30).flatmap(
    # repeat some rows to create exact duplicates
    lambda rows: st.lists(st.sampled_from(rows), max_size=5).map(lambda extra: rows + extra)
)


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    schema = {
        "customer_id": pl.String,
        "identifier": pl.String,
        "timestamp": pl.Datetime("us"),
        "channel": pl.String,
        "event_type": pl.String,
        "amount": pl.Float64,
        "product_id": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_FRAMES)
def test_parquet_and_csv_load_to_the_same_frame_and_only_duplicates_are_dropped(
    tmp_path: Path, rows: list[dict[str, object]]
) -> None:
    frame = _frame(rows)
    pq_dir, csv_dir = tmp_path / "pq", tmp_path / "csv"
    for d in (pq_dir, csv_dir):
        d.mkdir(exist_ok=True)
    frame.write_parquet(pq_dir / "events.parquet")
    frame.write_csv(csv_dir / "events.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_pq = load_histories(pq_dir)
        from_csv = load_histories(csv_dir)
    events = from_pq.events.collect()
    assert events.equals(from_csv.events.collect())
    distinct = frame.unique(maintain_order=True)
    assert events.height == distinct.height == from_pq.report.tables["events"].rows  # type: ignore[union-attr]
    assert from_pq.report.tables["events"].duplicates_dropped == frame.height - distinct.height  # type: ignore[union-attr]
    # every distinct input row is there, in first-seen order, with its timestamp taken as UTC
    expected = distinct.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    assert events.select(expected.columns).equals(expected)
    assert sum(from_pq.report.tables["events"].channels.values()) == events.height  # type: ignore[union-attr]


def test_typed_strings_are_cleaned_only_where_needed(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "customer_id": ["C1", "", "C2"],
            "identifier": [None, "cookie:1", None],
            "timestamp": [dt.datetime(2025, 1, 1)] * 3,
            "channel": [" Web", "APP", ""],
            "event_type": ["visit", "View ", "visit"],
            "product_id": ["", "P1", "P2"],
        }
    )
    hist = load_histories(write(tmp_path, events_parquet=frame))
    events = hist.events.collect()
    assert events["customer_id"].to_list() == ["C1", None, "C2"]
    assert events["channel"].to_list() == ["web", "app", "unknown"]
    assert events["event_type"].to_list() == ["visit", "view", "visit"]
    assert events["product_id"].to_list() == [None, "P1", "P2"]
    summary = hist.report.tables["events"]  # type: ignore[union-attr]
    assert summary.channels == {"app": 1, "unknown": 1, "web": 1}
    assert any("1 rows without a channel" in n for n in summary.notes)


def test_many_distinct_channels_are_counted_exactly() -> None:
    n = 5000  # many distinct channels: counted exactly by the joint group-by
    frame = pl.DataFrame(
        {
            "customer_id": [f"C{i % 7}" for i in range(n + 10)],
            "timestamp": [dt.datetime(2025, 1, 1) + dt.timedelta(seconds=i) for i in range(n + 10)],
            "channel": [f"ch{i}" for i in range(n)] + ["ch0"] * 10,
            "event_type": ["visit"] * (n + 10),
        }
    )
    summary = Histories.from_frames(frame).report.tables["events"]  # type: ignore[union-attr]
    assert len(summary.channels) == n
    assert summary.channels["ch0"] == 11
    assert summary.customers == 7


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(0, 30), st.integers(-(2**62), 2**62)), max_size=200))
def test_repeated_values_are_the_values_that_occur_more_than_once(values: list[int | None]) -> None:
    from omni_ml.data._validation import _repeated_values

    ts = pl.Series("timestamp", values, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    repeated = _repeated_values(ts)
    assert repeated.dtype == ts.dtype
    expected = ts.filter(ts.is_duplicated()).drop_nulls().unique().to_physical().to_list()
    assert repeated.to_physical().to_list() == sorted(expected)


def test_duplicates_in_a_time_ordered_export() -> None:
    # Time-ordered input takes the neighbour comparison path; same-instant near-duplicates are kept.
    ts = [dt.datetime(2025, 1, 1, 10, 0, i // 3) for i in range(9)]
    frame = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b", "a", "a", "a", "c", "c", "c"],
            "timestamp": ts,
            "channel": ["web"] * 9,
            "event_type": ["visit"] * 9,
        }
    )
    hist = Histories.from_frames(frame)
    assert hist.events.collect()["customer_id"].to_list() == ["a", "b", "a", "c"]
    assert hist.report.tables["events"].duplicates_dropped == 5  # type: ignore[union-attr]


def test_hashed_and_exact_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import omni_ml.data._validation as data_module

    rng = np.random.default_rng(0)
    n = 3000
    frame = pl.DataFrame(
        {
            "customer_id": [f"C{i}" for i in rng.integers(0, 400, n)],
            "identifier": [None if i % 3 else f"cookie:{i % 50}" for i in range(n)],
            "timestamp": [dt.datetime(2025, 1, 1) + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 2000, n)],
            "channel": rng.choice(["web", "app", "email"], n).tolist(),
            "event_type": rng.choice(["visit", "view"], n).tolist(),
        }
    )
    frame = pl.concat([frame, frame.sample(300, seed=1)])  # exact duplicates
    exact = Histories.from_frames(frame)
    monkeypatch.setattr(data_module, "_HASHED_MIN_ROWS", 0)  # hashed customers, counts in a thread
    hashed = Histories.from_frames(frame)
    assert hashed.events.collect().equals(exact.events.collect())
    assert hashed.report == exact.report
    summary = hashed.report.tables["events"]  # type: ignore[union-attr]
    assert summary.duplicates_dropped == frame.height - frame.unique().height
    assert summary.customers == frame["customer_id"].n_unique()
    assert summary.identifiers == 50


def test_summary_of_kept_rows_takes_dropped_copies_off(tmp_path: Path) -> None:
    rows = [
        "C1,,2031-01-01,web,visit,,",  # future, duplicated twice
        "C1,,2031-01-01,web,visit,,",
        "C1,,2031-01-01,web,visit,,",
        ",cookie:1,2025-01-01,app,view,,",  # identifier only, duplicated once
        ",cookie:1,2025-01-01,app,view,,",
        "C2,,2025-01-02,app,view,,",
    ]
    hist = load_histories(write(tmp_path, events_csv=events_csv(*rows)), as_of="2026-01-01")
    summary = hist.report.tables["events"]  # type: ignore[union-attr]
    assert (summary.rows, summary.duplicates_dropped, summary.future_rows) == (3, 3, 1)
    assert (summary.customers, summary.identifiers) == (2, 1)
    assert summary.channels == {"app": 2, "web": 1}
    assert summary.event_types == {"view": 2, "visit": 1}
    assert any(n.startswith("1 row carries only an identifier") for n in summary.notes)
    assert (summary.start, summary.end) == (dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2031, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("statistics", [True, False])
def test_empty_strings_in_a_late_parquet_row_group_become_null(tmp_path: Path, statistics: bool) -> None:
    n = 50
    frame = pl.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "timestamp": [dt.datetime(2025, 1, 1) + dt.timedelta(minutes=i) for i in range(n)],
            "channel": ["web"] * n,
            "event_type": ["view"] * n,
            "product_id": ["P1"] * (n - 1) + [""],
        }
    )
    d = tmp_path / "events"
    d.mkdir()
    frame.write_parquet(d / "events.parquet", row_group_size=10, statistics=statistics)
    events = load_histories(d).events.collect()
    assert events["product_id"].null_count() == 1
    assert events["product_id"][-1] is None
    assert events["product_id"].drop_nulls().to_list() == ["P1"] * (n - 1)


def test_distinct_customers_are_counted_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import omni_ml.data._validation as validation

    calls: list[int] = []
    real = validation._distinct_count

    def counting(*columns: pl.Series) -> int:
        calls.append(sum(c.len() for c in columns))
        return real(*columns)

    monkeypatch.setattr(validation, "_distinct_count", counting)
    frame = pl.DataFrame(
        {
            "customer_id": ["a", "b", "a", None, "c", "a"],
            "identifier": [None, None, None, "cookie:1", None, None],
            "timestamp": [dt.datetime(2025, 1, 1, h) for h in (1, 2, 3, 4, 5, 3)],
            "channel": ["web"] * 6,
            "event_type": ["view", "view", "visit", "view", "view", "visit"],
        }
    )
    summary = Histories.from_frames(frame).report.tables["events"]  # type: ignore[union-attr]
    assert calls == []  # loading and validating did not count
    assert summary.duplicates_dropped == 1
    assert summary.customers == 3
    assert summary.customers == 3
    assert calls == [5]  # once, over the rows kept
