"""Reading table files: names, csv separators and encodings, read errors."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from omni_ml._time import as_utc
from omni_ml.data._contract import _SEPARATORS
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
        return pl.scan_parquet(file)
    with file.open("rb") as fh:
        head = fh.read(64 * 1024)
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        msg = f"{file.stem}: {file.name!r} is empty (no header). Hint: write a header row with the column names."
        raise SchemaError(msg)
    lf = pl.scan_csv(file, separator=_sniff_separator(text), infer_schema=False, encoding="utf8")
    names = lf.collect_schema().names()
    clean = {n: n.lstrip("\ufeff").strip() for n in names}
    return lf.rename({k: v for k, v in clean.items() if k != v})


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


def _read_error(table: str, file: Path | None, exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"{file.name!r}" if file else "the table"
    if file is not None and file.suffix.lower() == ".csv" and "utf-8" in str(exc).lower():
        detail = _utf8_problem(file)
        return (
            f"{table}: {where} is not valid UTF-8 ({detail or first_line})."
            " Hint: save the file as UTF-8 (Excel: 'CSV UTF-8'); a BOM is fine."
        )
    return f"{table}: {where} cannot be read ({type(exc).__name__}: {first_line})."


def _nonempty_strings(file: Path | None, columns: Iterable[str]) -> frozenset[str]:
    """The ``columns`` of a parquet file whose statistics prove that no value is the empty string.

    The empty string sorts before every other string, so a column whose every row group records
    a non-empty minimum (a truncated minimum is a prefix of the true one) or holds only nulls has
    none. Missing statistics prove nothing; so does anything but a parquet file.
    """
    if file is None or file.suffix.lower() != ".parquet":
        return frozenset()
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(file)
    except (OSError, ValueError):  # the read reports what is wrong with the file
        return frozenset()
    index = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    proven = set()
    for col in columns:
        if col not in index:
            continue
        for r in range(meta.num_row_groups):
            chunk = meta.row_group(r).column(index[col])
            stats = chunk.statistics
            if stats is None:
                break
            if stats.has_min_max:
                if len(stats.min) == 0:
                    break
            elif not (stats.has_null_count and stats.null_count == chunk.num_values):
                break
        else:
            proven.add(col)
    return frozenset(proven)
