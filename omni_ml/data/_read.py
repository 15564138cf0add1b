"""Reading table files: names, csv separators and encodings, read errors."""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from omni_ml._time import as_utc
from omni_ml.data._contract import _SEPARATORS, DEFAULT_TIMESTAMP_RANGE, TIMESTAMP_RANGE_ENV
from omni_ml.exceptions import SchemaError


def _split_name(name: str) -> tuple[str, str]:
    p = Path(name)
    return p.stem.lower(), p.suffix.lower()


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate (case-insensitive), or an empty string."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower().strip(), list(by_lower), n=1, cutoff=0.6)
    return f" Did you mean {by_lower[close[0]]!r}?" if close else ""


def _count_outside_quotes(line: str, sep: str) -> int:
    n, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            n += 1
    return n


def _sniff_separator(text: str) -> str:
    """The separator that splits the header, preferring one that splits every sampled line alike."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end mid-line
    lines = lines[:50]

    def score(sep: str) -> tuple[bool, int, int]:
        counts = [_count_outside_quotes(ln, sep) for ln in lines]
        consistent = counts[0] > 0 and all(c == counts[0] for c in counts[1:])
        return consistent, counts[0], -_SEPARATORS.index(sep)

    return max(_SEPARATORS, key=score)


def _scan(file: Path) -> pl.LazyFrame:
    if file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(file).names
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise SchemaError(_read_error(file.stem, file, exc)) from None
        _refuse_repeated_names(file, names)
        return pl.scan_parquet(file)
    with file.open("rb") as fh:
        head = fh.read(64 * 1024)
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        msg = f"{file.stem}: {file.name!r} is empty (no header). Hint: write a header row with the column names."
        raise SchemaError(msg)
    separator = _sniff_separator(text)
    header = next(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=separator), [])
    _refuse_repeated_names(file, [h.strip() for h in header])
    lf = pl.scan_csv(file, separator=separator, infer_schema=False, encoding="utf8")
    names = lf.collect_schema().names()
    clean = {n: n.lstrip("\ufeff").strip() for n in names}
    return lf.rename({k: v for k, v in clean.items() if k != v})


def _refuse_repeated_names(file: Path, names: list[str]) -> None:
    """Raise when a column name repeats: readers rename or drop the copy, and a column is silently lost."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            msg = (
                f"{file.stem}: {file.name!r} has the column {name!r} twice (columns {seen[name]} and {i})."
                " Hint: give every column one unique name; rename or remove the copy."
            )
            raise SchemaError(msg)
        seen[name] = i


def _utf8_problem(file: Path) -> str | None:
    """Line number and bytes of the first invalid UTF-8 sequence in ``file`` (error path only)."""
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line:,} has the bytes {data[exc.start : exc.start + 4]!r}"
    return None


def _to_utc(value: str | dt.date | dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value, error=SchemaError)


TimestampRange = tuple[str | dt.date | dt.datetime, str | dt.date | dt.datetime]


def _timestamp_range(value: TimestampRange | None) -> tuple[dt.datetime, dt.datetime]:
    """The plausible ``[from, until)`` of timestamps: ``value``, else ``$OMNI_ML_TIMESTAMP_RANGE``, else the default.

    The variable holds ``FROM..UNTIL`` in ISO 8601 (``1900-01-01..2100-01-01``).
    """
    where = "timestamp_range"
    if value is None:
        text = os.environ.get(TIMESTAMP_RANGE_ENV, "").strip()
        where = f"${TIMESTAMP_RANGE_ENV}"
        if not text:
            value = DEFAULT_TIMESTAMP_RANGE
        else:
            parts = text.split("..")
            if len(parts) != 2:
                msg = f"{where}: {text!r} is not FROM..UNTIL. Hint: e.g. {TIMESTAMP_RANGE_ENV}=1900-01-01..2100-01-01."
                raise SchemaError(msg)
            value = (parts[0], parts[1])
    lo, hi = (as_utc(v, name=where, error=SchemaError) for v in value)
    if not lo < hi:
        msg = f"{where}: the range {lo:%Y-%m-%d} .. {hi:%Y-%m-%d} is empty. Hint: give FROM before UNTIL."
        raise SchemaError(msg)
    return lo, hi


def _read_error(table: str, file: Path | None, exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"{file.name!r}" if file else "the table"
    if file is not None and file.suffix.lower() == ".csv" and "utf-8" in str(exc).lower():
        detail = _utf8_problem(file)
        return (
            f"{table}: {where} is not valid UTF-8 ({detail or first_line})."
            " Hint: save the file as UTF-8 (Excel: 'CSV UTF-8'); a BOM is fine."
        )
    if "more than one occurrence" in str(exc) or "duplicate" in type(exc).__name__.lower():
        return (
            f"{table}: {where} has a column name twice ({first_line})."
            " Hint: give every column one unique name; a repeated header would silently drop a column."
        )
    if isinstance(exc, pl.exceptions.PanicException) or "out-of-range" in str(exc) or "overflow" in str(exc):
        return (
            f"{table}: {where} holds values polars cannot represent ({type(exc).__name__}: {first_line})."
            " Hint: a timestamp or number is far out of range (e.g. year 300000); fix or remove it in the export."
        )
    return (
        f"{table}: {where} cannot be read ({type(exc).__name__}: {first_line})."
        " Hint: the file is damaged or not what its name says; export it again."
    )
