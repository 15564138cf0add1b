"""Arrow columns of the simulator's tables, built from integer codes without materialising strings.

A chunk's tables are ``pyarrow`` tables whose string columns with few distinct values (channel, event
type, category, product, campaign, and customer ids within a chunk) are dictionary arrays: codes plus
the list of names. They cross process boundaries as a few flat buffers and are written to parquet as
dictionary pages directly. The files store no arrow schema (``store_schema=False``), so every reader
(polars, pyarrow, duckdb) sees plain ``string`` columns, the data contract of :mod:`omni_ml.data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ParquetTable", "codes", "strings", "timestamps", "to_polars"]

UTC_US = pa.timestamp("us", tz="UTC")


def codes(names: Sequence[str] | pa.Array, code: np.ndarray, null: np.ndarray | None = None) -> pa.DictionaryArray:
    """``names[code]`` as a dictionary array (``null`` where the mask holds).

    The index type depends only on ``names`` (not on the codes), so every chunk of a table has one schema.
    """
    width: type[np.signedinteger[Any]]
    if isinstance(names, pa.Array):  # e.g. a chunk's customer ids: the same index type in every chunk
        dictionary, width = names, np.int32
    else:  # a fixed list of names: the narrowest index type
        dictionary = pa.array(list(names), type=pa.string())
        width = np.int8 if len(names) <= 127 else np.int16 if len(names) <= 32_767 else np.int32
    indices = pa.array(np.asarray(code, dtype=width), mask=null)
    return pa.DictionaryArray.from_arrays(indices, dictionary, safe=False)


def strings(values: pa.Array, position: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """``values[position]`` as a plain string array (``null`` where the mask holds)."""
    return values.take(pa.array(np.asarray(position, dtype=np.int64), mask=null))


def timestamps(us: np.ndarray) -> pa.Array:
    """Microseconds since the epoch as ``timestamp[us, UTC]``."""
    return pa.array(np.asarray(us, dtype=np.int64), type=UTC_US)


def to_polars(table: pa.Table) -> pl.DataFrame:
    """The table as polars reads it back from parquet (dictionary columns decoded to strings)."""
    cols = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pl.from_arrow(pa.table(cols, names=table.column_names))  # type: ignore[return-value]


class ParquetTable:
    """Append chunks (arrow tables) to one parquet file as row groups, with the first chunk's schema.

    Dictionary columns are written as dictionary pages (no statistics: they are cheap to scan and their
    min/max would cost more than the page); every other column gets statistics. zstd level 1.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (cast to the file's schema when a chunk's types differ, e.g. all-null columns)."""
        if self.writer is None:
            self.schema = table.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
            dictionary = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
            self.writer = pq.ParquetWriter(
                self.path,
                self.schema,
                compression="zstd",
                compression_level=1,
                use_dictionary=dictionary,
                write_statistics=[f.name for f in table.schema if f.name not in dictionary],
                dictionary_pagesize_limit=4 << 20,
                store_schema=False,
            )
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        """Write the footer (an empty file when nothing was written)."""
        if self.writer is not None:
            self.writer.close()
