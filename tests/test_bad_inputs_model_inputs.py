"""Histories the contract accepts but the model cannot read the same way (issue 22): score refuses, exit 2.

The session's model was trained on the small world's customers table (``signup_date`` as a date,
``loyalty_member`` and ``app_user`` as booleans, ``region`` and ``age_band`` as codes). A customers
table without one of those columns, or with values the model cannot read as it did, would score every
customer as if the attribute were unknown: a different campaign without a word.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_bad_inputs import AS_OF, Tables, _assert_refused, _base, _run, _write


def _drop(column: str) -> Callable[[Tables], None]:
    def change(t: Tables) -> None:
        for row in t["customers"]:
            row.pop(column, None)

    return change


def _set_all(**values: object) -> Callable[[Tables], None]:
    def change(t: Tables) -> None:
        for row in t["customers"]:
            row.update(values)

    return change


def _no_customers(t: Tables) -> None:
    del t["customers"]


def _only_ids(t: Tables) -> None:
    t["customers"] = [{"customer_id": row["customer_id"]} for row in t["customers"]]


def _renamed(t: Tables) -> None:
    for row in t["customers"]:
        row["signupdate"] = row.pop("signup_date")


MODEL_INPUT_DEFECTS: list[tuple[str, Callable[[Tables], None], str]] = [
    (
        "customers_no_signup_date",
        _drop("signup_date"),
        r"customers\.signup_date: the customers table has no column \['signup_date'\] .* the model \(trained as of "
        r"2024-12-01\) uses it \(features \['attr_signup_date_days'\]\)",
    ),
    ("customers_no_region", _drop("region"), r"customers\.region: the customers table has no column \['region'\]"),
    (
        "customers_column_renamed",
        _renamed,
        r"customers\.signup_date: .* did you mean 'signupdate' for 'signup_date'\?",
    ),
    (
        "customers_table_absent",
        _no_customers,
        r"customers: the histories have no customers table, but the model .* uses its column\(s\) \['age_band'",
    ),
    ("customers_only_ids", _only_ids, r"customers\.age_band: the customers table has no columns \['age_band', "),
    (
        "customers_signup_date_text",
        _set_all(signup_date="not a date"),
        r"customers\.signup_date: 6 of 6 rows cannot be read as a date \(e\.g\. 'not a date'\)",
    ),
    (
        "customers_loyalty_text",
        _set_all(loyalty_member="maybe"),
        r"customers\.loyalty_member: 6 of 6 rows cannot be read as a boolean \(e\.g\. 'maybe'\)",
    ),
]


@pytest.mark.parametrize(("defect", "engine_chunks"), [(d, c) for d in MODEL_INPUT_DEFECTS for c in ("1", "3")])
def test_a_customers_table_the_model_cannot_read_is_refused_by_score_22(
    defect: tuple[str, Callable[[Tables], None], str], engine_chunks: str, tmp_path: Path, campaign_model_path: Path
) -> None:
    _, change, pattern = defect
    tables = _base()
    change(tables)
    # customers as parquet (typed, as the model saw them) and, for the chunked runs, every table as parquet too
    parquet = ("events", "contacts", "consents", "identity_links", "customers") if engine_chunks == "3" else ()
    hist = _write(tables, tmp_path / "hist", parquet=parquet)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["score", str(hist), "--model", str(campaign_model_path), "--as-of", AS_OF]
    result = _run([*args, "--out", str(out_dir / "c.parquet"), "--chunks", engine_chunks])
    _assert_refused(result, pattern, out_dir)
    # the contract itself holds: validate accepts these histories (it is the model that cannot read them)
    assert _run(["validate", str(hist)]).exit_code == 0


def test_an_unreadable_value_is_refused_even_for_one_customer(tmp_path: Path, campaign_model_path: Path) -> None:
    tables = _base()
    for row in tables["customers"]:  # dates as text, as a csv export would have them; one impossible
        row["signup_date"] = row["signup_date"].isoformat()
    tables["customers"][2]["signup_date"] = "2023-02-30"
    hist = _write(tables, tmp_path / "hist")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["score", str(hist), "--model", str(campaign_model_path), "--as-of", AS_OF, "--out", str(out_dir / "c.csv")]
    _assert_refused(
        _run(args), r"customers\.signup_date: 1 of 6 rows cannot be read as a date \(e\.g\. '2023-02-30'\)", out_dir
    )
