"""Atomic, deterministic, streaming writer of the campaign file (parquet or csv).

Rows arrive chunk by chunk; they go to a hidden temporary file next to the target
(``.<name>.<pid>.<random>.tmp``, same directory so the final rename is atomic on one file system) and
the temporary file is renamed to the target only by :meth:`AtomicTableWriter.commit`. Leaving the
``with`` block without committing (an exception, Ctrl-C) deletes the temporary file; a process killed
with SIGKILL may leave the temporary file behind, never a file with the target's name; the next writer of
the same target removes it (:func:`omni_ml._io.clean_stale_temps`).

Parquet output is cut into row groups of exactly ``row_group_size`` rows (the last one shorter),
whatever the chunks were, so the same rows in the same order give the same bytes for any chunk count.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from omni_ml._io import clean_stale_temps, commit, temp_path

__all__ = ["AtomicTableWriter", "output_format"]

ROW_GROUP_SIZE = 100_000


def output_format(path: Path) -> Literal["parquet", "csv"] | None:
    """``parquet`` or ``csv`` from the file extension, ``None`` for anything else."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    return None


class AtomicTableWriter:
    """Write frames of one fixed schema to ``path`` atomically.

    Parameters
    ----------
    path
        Target file; its extension picks the format (``.parquet`` or ``.csv``).
    schema
        The polars schema every frame is cast to (so that an all-null column keeps its type).
    row_group_size
        Rows per parquet row group.
    """

    def __init__(self, path: Path, schema: pl.Schema, *, row_group_size: int = ROW_GROUP_SIZE) -> None:
        fmt = output_format(path)
        if fmt is None:
            msg = f"unsupported output extension {path.suffix!r}; use .parquet or .csv"
            raise ValueError(msg)
        self.path = path
        self.format: Literal["parquet", "csv"] = fmt
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        self.tmp_path = temp_path(path)
        self._arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._fh: BinaryIO | None = None
        self._header_written = False
        self._committed = False

    def __enter__(self) -> AtomicTableWriter:
        clean_stale_temps(self.path)
        self._fh = self.tmp_path.open("wb")
        if self.format == "parquet":
            try:
                self._parquet = pq.ParquetWriter(
                    self._fh, self._arrow_schema, compression="zstd", write_statistics=True
                )
            except BaseException as exc:  # __exit__ does not run when __enter__ fails: no temporary file left
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    def write(self, frame: pl.DataFrame) -> None:
        """Append the rows of ``frame`` (columns in schema order; types cast to the schema)."""
        frame = frame.select(pl.col(name).cast(dtype) for name, dtype in self.schema.items())
        self.rows += frame.height
        if self.format == "csv":
            if frame.height or not self._header_written:
                frame.write_csv(self._fh, include_header=not self._header_written)
                self._header_written = True
            return
        if frame.height == 0:
            return
        self._pending.append(frame.to_arrow().cast(self._arrow_schema))
        self._pending_rows += frame.height
        self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        assert self._parquet is not None
        if not self._pending_rows or (not final and self._pending_rows < self.row_group_size):
            return
        table = pa.concat_tables(self._pending)
        full = (table.num_rows // self.row_group_size) * self.row_group_size
        if full:
            self._parquet.write_table(table.slice(0, full), row_group_size=self.row_group_size)
        rest = table.slice(full)
        if final and rest.num_rows:
            self._parquet.write_table(rest, row_group_size=self.row_group_size)
            rest = rest.slice(rest.num_rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def commit(self) -> Path:
        """Finish the file and move it to its final name in one atomic rename."""
        if self._fh is None:
            msg = "AtomicTableWriter.commit() outside its with-block"
            raise RuntimeError(msg)
        if self._parquet is not None:
            self._flush(final=True)
            self._parquet.close()
            self._parquet = None
        elif not self._header_written:
            self.write(pl.DataFrame(schema=self.schema))
        self._fh.close()
        self._fh = None
        commit(self.tmp_path, self.path)  # fsync, rename, fsync the directory (omni_ml._io)
        self._committed = True
        return self.path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._committed:
            return
        try:
            if self._parquet is not None:
                self._parquet.close()
            if self._fh is not None:
                self._fh.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)
