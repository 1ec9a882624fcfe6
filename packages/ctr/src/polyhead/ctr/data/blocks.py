"""Fast reading of well-formed delimited CTR files: byte blocks parsed by polars' native CSV reader.

The line-level reader of ``polyhead.ctr.data.formats`` splits every line into a list of strings and
validates each field with string expressions, so it can name any malformed line; it is also several times
slower than parsing the file natively. Real click logs (Criteo's day files, Avazu's train.csv) are almost
always well formed, so preprocessing first reads the file this way:

- the file is read in byte blocks (``block_bytes``, cut after the last newline of each block; nothing is
  memory-mapped, so memory is a few blocks whatever the file size) and each block is parsed by
  ``pl.read_csv`` with the columns typed (integer fields as Int64, other numeric fields as Float64), which
  refuses a non-numeric value or a line with too many fields;
- cheap checks cover what the native parser accepts but the line-level reader would refuse: a short line
  or a blank line (the block's separators are not ``(fields - 1) x lines``), a label outside 0/1, an invalid
  split name or empty time value, a NUL byte, U+FFFD (how invalid UTF-8 reads), a quote in a CSV block,
  leading spaces in a field (the native integer parser skips them, the line-level one refuses them).
  Blank lines at the end of the file are dropped, as the line-level reader ignores them.

A block that fails any of this raises :class:`NotFastReadable`, and the caller reads the whole file with the
line-level reader, which reports the line (or skips and counts the bad lines). Both readers produce the
same frame for a well-formed file (``line``, ``label``, features, ``id``, ``_split``, ``_time``; tested).
Compressed files and Parquet are not block-readable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import polars as pl

from polyhead.ctr.data.formats import (
    _COMPRESSED,
    SPLIT_NAMES,
    DatasetSpec,
    check_text_file,
    delimited_layout,
    format_features,
    formatted_fields,
    row_meta_columns,
)

BLOCK_BYTES = 16 << 20
_SEPARATORS = {"criteo": ("\t", False), "tsv": ("\t", True), "csv": (",", True), "avazu": (",", True)}


class NotFastReadable(Exception):
    """A block the native parser or the block checks refuse (the file is then read line by line)."""


class BlockReader:
    """Iterates over a delimited file's rows as DataFrames, one per block; see the module docstring.

    Use :meth:`open`, which returns ``None`` for files the reader does not handle (compressed, Parquet).
    """

    def __init__(
        self,
        path: Path,
        spec: DatasetSpec,
        *,
        separator: str,
        header: bool,
        columns: list[str],
        labeled: bool,
        block_bytes: int = BLOCK_BYTES,
        categorical: Mapping[str, pl.DataType] | None = None,
    ) -> None:
        if block_bytes < 1:
            raise ValueError(f"block_bytes must be positive, got {block_bytes}")
        self.path, self.spec, self.separator, self.header = path, spec, separator, header
        self.columns, self.labeled, self.block_bytes = columns, labeled, block_bytes
        self.categorical = dict(categorical or {})
        types = {f.name: f for f in spec.fields}
        # Categorical features are parsed straight into their Categorical dtype, except the columns that
        # are also read as text (row id, split, time) or rewritten by the format: those are cast after.
        as_text = {spec.id_column, spec.split_column, spec.time_column, *formatted_fields(spec)}
        self._late_cast = [c for c in self.categorical if c in as_text]
        self._schema: dict[str, pl.DataType | type[pl.DataType]] = {}
        for c in columns:
            f = types.get(c)
            if c == spec.label and labeled:
                self._schema[c] = pl.Int8
            elif f is not None and f.type == "numeric":
                self._schema[c] = pl.Int64 if f.integer else pl.Float64
            elif c in self.categorical and c not in as_text:
                self._schema[c] = self.categorical[c]
            else:
                self._schema[c] = pl.Utf8
        sep = separator.encode()
        # Byte patterns that send the file to the line-level reader (see the module docstring).
        markers = [(b"\x00", [b"\x00"]), (b"\xef", ["\ufffd".encode()]), (b" ", [sep + b" ", b"\n "])]
        if separator == ",":
            markers.append((b'"', [b'"']))
        self._markers = markers
        self._sep = sep

    @classmethod
    def open(
        cls,
        path: str | Path,
        spec: DatasetSpec,
        *,
        require_label: bool = True,
        block_bytes: int = BLOCK_BYTES,
        categorical: Mapping[str, pl.DataType] | None = None,
    ) -> BlockReader | None:
        """A reader for ``path``, or ``None`` where the format or the file (compressed) is not block-readable.

        ``categorical`` maps categorical features to the ``pl.Categorical`` dtypes their values are read
        into (one ``pl.Categories`` per field: the codes are the same in every block); without it they are
        read as text, as the line-level reader reads them. Raises the same errors as the line-level reader
        for an empty or binary file or a bad header.
        """
        path = Path(path)
        if spec.format not in _SEPARATORS:
            return None
        separator, header = _SEPARATORS[spec.format]
        check_text_file(path)
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        if head.startswith(_COMPRESSED):
            return None
        if header and separator == "," and b'"' in head.split(b"\n", 1)[0]:
            return None  # a quoted header: its end need not be the first newline
        columns, labeled = delimited_layout(
            path, spec, separator=separator, header=header, require_label=require_label
        )
        return cls(
            path,
            spec,
            separator=separator,
            header=header,
            columns=columns,
            labeled=labeled,
            block_bytes=block_bytes,
            categorical=categorical,
        )

    @property
    def schema(self) -> pl.Schema:
        """The schema of the frames (that of the line-level reader's good rows)."""
        spec = self.spec
        out: dict[str, pl.DataType | type[pl.DataType]] = {"line": pl.get_index_type()}
        if self.labeled:
            out["label"] = pl.Int8()
        for f in spec.fields:
            out[f.name] = pl.Float64() if f.type == "numeric" else self.categorical.get(f.name, pl.Utf8())
        if spec.id_column and spec.id_column in self.columns:
            out["id"] = pl.Utf8()
        if spec.split_column:
            out["_split"] = pl.UInt8()
        if spec.time_column:
            dt = self._schema[spec.time_column]  # text or a numeric type: never a Categorical
            out["_time"] = dt() if isinstance(dt, type) else dt
        return pl.Schema(out)

    def _byte_blocks(self) -> Iterator[tuple[bytes, int, int]]:
        """``(block, first line number, lines)``: whole lines, the header skipped, trailing blank lines dropped."""
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            line = 1
            if self.header:
                line += bool(f.readline())
            while chunk := f.read(self.block_bytes):
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: read to its end
                    chunk += f.readline()
                elif cut < len(chunk):  # the partial last line starts the next block
                    f.seek(cut - len(chunk), 1)
                    chunk = chunk[:cut]
                if f.tell() >= size:  # the last block: its trailing blank lines are not data
                    chunk = _drop_trailing_blank_lines(chunk)
                if chunk:
                    n_lines = count_byte(chunk, b"\n") + (not chunk.endswith(b"\n"))
                    yield chunk, line, n_lines
                    line += n_lines

    def parse(self, block: bytes, first_line: int, n_lines: int | None = None) -> pl.DataFrame:
        """One block's rows as the line-level reader's good-rows frame, or :class:`NotFastReadable`.

        ``n_lines``: the block's line count where the caller has it.
        """
        if n_lines is None:
            n_lines = count_byte(block, b"\n") + (not block.endswith(b"\n"))
        # A one-byte search is a memchr over the block; the longer patterns are only looked for when their
        # first byte occurs at all (clean Criteo/Avazu logs have no spaces, quotes or non-ASCII bytes).
        for lead, patterns in self._markers:
            if lead in block:
                found = [m for m in patterns if m in block or (m == b"\n " and block.startswith(b" "))]
                if found:
                    raise NotFastReadable(
                        f"lines from {first_line}: {found[0]!r} needs the line-level reader"
                    )
        if count_byte(block, self._sep) != n_lines * (len(self.columns) - 1):
            raise NotFastReadable(f"lines from {first_line}: a line without {len(self.columns)} fields")
        try:
            df = pl.read_csv(
                block,
                has_header=False,
                separator=self.separator,
                quote_char=None,
                schema=self._schema,
                encoding="utf8",
                raise_if_empty=False,
            )
        except pl.exceptions.PolarsError as err:
            raise NotFastReadable(f"lines from {first_line}: {str(err).splitlines()[0]}") from None
        if df.height != n_lines:
            raise NotFastReadable(f"lines from {first_line}: {df.height} rows parsed from {n_lines} lines")
        spec = self.spec
        bad = []
        if self.labeled:
            bad.append(~pl.col(spec.label).is_in([0, 1]).fill_null(False))
        if spec.split_column:
            code = pl.col(spec.split_column).str.strip_chars().str.to_lowercase()
            bad.append(~code.is_in(list(SPLIT_NAMES)).fill_null(False))
        if spec.time_column:
            bad.append(pl.col(spec.time_column).is_null())
        if bad and df.select(pl.any_horizontal(bad).any()).item():
            raise NotFastReadable(
                f"lines from {first_line}: a label, split or time value to check line by line"
            )
        keep: list[pl.Expr | str] = [
            pl.int_range(first_line, first_line + df.height, dtype=pl.get_index_type()).alias("line")
        ]
        if self.labeled:
            keep.append(pl.col(spec.label).alias("label"))
        keep += [
            pl.col(f.name).cast(pl.Float64) if f.type == "numeric" else pl.col(f.name) for f in spec.fields
        ]
        keep += row_meta_columns(spec, self.columns)
        out = format_features(df.lazy().select(keep), spec)
        if self._late_cast:
            out = out.with_columns(pl.col(c).cast(self.categorical[c]) for c in self._late_cast)
        return out.collect()

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for block, first_line, n_lines in self._byte_blocks():
            yield self.parse(block, first_line, n_lines)


def count_byte(buf: bytes, byte: bytes) -> int:
    """How often the single byte ``byte`` occurs in ``buf`` (numpy's vectorised compare: about 3x
    ``bytes.count``, which the block checks spent 0.24 s in on a 244 MB file)."""
    return int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8) == byte[0]))


def _drop_trailing_blank_lines(buf: bytes) -> bytes:
    """``buf`` without the whitespace-only lines at its end (the last data line keeps its newline)."""
    end = len(buf)
    while end and buf[end - 1 : end] in (b" ", b"\t", b"\r", b"\n"):
        end -= 1
    if end == 0:
        return b""
    nl = buf.find(b"\n", end)
    return buf if nl < 0 else buf[: nl + 1]
