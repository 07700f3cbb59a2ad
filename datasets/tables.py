"""Tabular and array files: `csv:<path>`, `parquet:<path>` (with `data.target`) and `npz:<path>`.

CSV files are read as people keep them: the delimiter is sniffed, a header-less file (numbers
from the first line, the UCI layout) is recognised, and so are decimal commas (`5,1;3,5`).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import RawData, SourceOptions, check_discrete, check_real, composed, encode_labels, hash_files, register_source

SNIFF_BYTES = 65536
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
_DECIMAL_POINT = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")
CHANNELS = (1, 3, 4)


def _file_fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    path = Path(argument)
    if path.is_dir():
        raise ValueError(f"Data file {path} is a folder; name a file in it (a folder of class subfolders is folder:{path}, of IDX files idx:{path}).")
    if not path.is_file():
        raise ValueError(f"Data file {path} does not exist.")
    return hash_files([path])


def _sample_lines(path: Path) -> list[str]:
    """The first complete lines of the file (the last line read may be cut short)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:  # -sig: a byte-order mark is not data
        text = handle.read(SNIFF_BYTES)
    lines = text.splitlines()
    return lines[:-1] if len(text) == SNIFF_BYTES and len(lines) > 1 else lines


def _check_not_utf16(path: Path) -> None:
    """Refuse UTF-16 or UTF-32 text (a NUL every second or fourth byte), which read as UTF-8 gives
    column names like '\x00l\x00a...': a message naming the encoding, not a puzzle."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) >= 8 and head.count(0) >= len(head) // 4):
        raise ValueError(f"{path} looks like UTF-16 or UTF-32 text (it is full of zero bytes); save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8.")


def sniff_delimiter(path: Path) -> str:
    """The delimiter that splits every sampled line into the same number (> 1) of fields: tab,
    `;` or `|` before `,` (which may be a decimal comma: `5,1;3,5`); else csv's own sniffer's
    guess; `,` when there is only one column."""
    lines = [line for line in _sample_lines(path) if line.strip()]
    for delimiter in ("\t", ";", "|", ","):
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(counts) == 1 and counts.pop() > 1:
            return delimiter
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _sample_rows(path: Path, delimiter: str) -> list[list[str]]:
    return [[field.strip() for field in row] for row in csv.reader(_sample_lines(path), delimiter=delimiter)]


def sniff_decimal(rows: list[list[str]], delimiter: str) -> str:
    """`,` when the delimiter is not a comma and numbers are written with a decimal comma (`5,1`)
    and none with a decimal point; else `.`."""
    if delimiter == ",":
        return "."
    fields = [field for row in rows for field in row]
    commas = sum(bool(_DECIMAL_COMMA.match(field)) for field in fields)
    points = sum(bool(_DECIMAL_POINT.match(field)) for field in fields)
    return "," if commas and not points else "."


def _is_number(text: str, decimal: str) -> bool:
    try:
        float(text.replace(decimal, ".") if decimal == "," else text)
    except ValueError:
        return False
    return True


def has_header(rows: list[list[str]], decimal: str, setting: str | bool) -> bool:
    """`data.header`: true or false as given; auto: the first row is a header when it has text
    where the rows below have numbers, or text that its column never holds below (a name such as
    `label` over numbered pixel columns). A first row of numbers, or of numbers and a label its
    column holds again (UCI's `iris.data`), is data. A file with no numeric column below its
    first row is read with a header."""
    if isinstance(setting, bool):
        return setting
    if not rows or not rows[0]:
        return False
    first, body = rows[0], rows[1:]
    numeric = [
        column for column in range(len(first))
        if body and all(column < len(row) and _is_number(row[column], decimal) for row in body if any(row))
    ]
    if not body or not numeric:
        return not all(_is_number(field, decimal) for field in first)
    if any(not _is_number(first[column], decimal) for column in numeric):
        return True
    texts = [column for column in range(len(first)) if column not in numeric and not _is_number(first[column], decimal)]
    return any(first[column] not in {row[column] for row in body if column < len(row)} for column in texts)


GROUPED = re.compile(r"^[-+]?\d{1,3}(?:([,. \u00a0'])\d{3})(?:\1\d{3})*(?:[.,]\d+)?$")  # 5,100  1.234.567,8  5 100


def _grouped_number(column: Any) -> str | None:
    """A value of a text column that is a number written with digit groups (`5,100`, `5 100`,
    `1.234.567,8`), when most values are such numbers or plain ones; else None."""
    import pandas as pd

    values = column.dropna().astype(str).str.strip()
    if values.empty:
        return None
    plain = pd.to_numeric(values, errors="coerce").notna()
    matched = values.str.match(GROUPED) & ~plain  # 1.064 reads as a decimal; 5,100 and 5 100 cannot
    return str(values[matched].iloc[0]) if matched.any() and (matched | plain).mean() > 0.5 else None


def _mostly_numbers(column: Any) -> bool:
    import pandas as pd

    values = column.dropna()
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().mean() > 0.5


def _first_bad(mask: Any, column: Any) -> str:
    row = mask[mask].index[0]
    value = column.loc[row]
    return f"row {row} (value {value.item() if isinstance(value, np.generic) else value!r})"


def resolve_target(target: str | int | None, columns: list[str], source: str) -> str:
    """The target column's name from `data.target`: a name, or a position (negative from the end)."""
    listing = f"Columns: {', '.join(columns)}."
    if target is None or target == "":
        raise ValueError(f"{source} needs data.target=<column name or position, e.g. -1 for the last>. {listing}")
    if isinstance(target, int):
        if not -len(columns) <= target < len(columns):
            raise ValueError(f"{source}: data.target={target} is out of range for {len(columns)} columns (0..{len(columns) - 1}, or -1..-{len(columns)}).")
        return columns[target]
    if target not in columns:
        close = difflib.get_close_matches(target, columns, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{source} has no target column {target!r}.{hint} {listing}")
    return target


def _numbers_with_decimal_comma(column: Any) -> Any | None:
    """The column as floats if every value is a number written with a decimal comma, else None."""
    import pandas as pd

    values = column.dropna().astype(str).str.strip()
    if len(values) == 0 or not values.str.match(_DECIMAL_COMMA.pattern).any():
        return None
    parsed = pd.to_numeric(column.astype(str).str.strip().str.replace(",", ".", regex=False), errors="coerce")
    return parsed if parsed[column.notna()].notna().all() else None


def table_to_raw(frame: Any, options: SourceOptions, source: str) -> RawData:
    """Features and labels from a DataFrame: numeric columns as they are (numbers written with a
    decimal comma too), categorical ones one-hot."""
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    target = resolve_target(options.target, columns, source)
    if frame.shape[0] == 0:
        raise ValueError(f"{source} has no rows.")
    labels, notes = frame[target], []
    if labels.isna().any():
        raise ValueError(f"{source}: target column {target!r} is empty at {_first_bad(labels.isna(), labels)}.")
    if pd.api.types.is_object_dtype(labels) or pd.api.types.is_string_dtype(labels):
        text = labels.astype(str)  # as text: integers beyond int64 too
        stripped = text.str.strip()
        changed = int((stripped != text).sum())
        if changed:  # " setosa" and "setosa" are one class
            notes.append(f"{source}: stripped spaces around {changed} labels of {target!r}")
        labels = pd.Series(composed(stripped.to_numpy(dtype=object), source, str(target), notes), index=labels.index, name=labels.name)
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise ValueError(f"{source} has no feature columns besides the target {target!r}.")
    parts, names = [], []
    for name in features.columns:
        column = features[name]
        if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
            raise ValueError(
                f"{source}: column {name!r} holds {'times' if pd.api.types.is_datetime64_any_dtype(column) else 'durations'} ({column.dtype}), "
                "not numbers; convert it to a number first (seconds, a day of the year, ...) or drop it."
            )
        nested = column.map(lambda value: isinstance(value, (list, tuple, dict, set, np.ndarray))) if column.dtype == object else None
        if nested is not None and nested.any():  # Parquet lists and structs: one-hot of their text is no feature
            raise ValueError(
                f"{source}: column {name!r} holds {type(column[nested].iloc[0]).__name__}s (e.g. {column[nested].iloc[0]!r}), not numbers "
                "or categories; spread it into columns of its own first, or drop it."
            )
        grouped = None if options.decimal == "," or pd.api.types.is_numeric_dtype(column) else _grouped_number(column)
        if grouped is not None:  # "5,100" would read as 5.1 beside "200" (or "5 100" as text): refuse, never guess
            raise ValueError(
                f"{source}: column {name!r} holds numbers written with digit groups (e.g. {grouped!r}), which would be read as "
                "decimals or text; remove the group separators, or, if ',' is the decimal mark there, set data.decimal=','."
            )
        if not (pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column)):
            column = _numbers_with_decimal_comma(column) if options.decimal != "." else None
            column = features[name] if column is None else column
        if not (pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column)) and _mostly_numbers(column):
            coerced = pd.to_numeric(column, errors="coerce")
            bad = coerced.isna() & column.notna()
            if bad.any():
                raise ValueError(f"{source}: column {name!r} is numeric except at {_first_bad(bad, column)}; fix or remove that value.")
            column = coerced  # every value is a number, some beyond int64 (99999999999999999999999) or decimals: as floats
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = column.astype(np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                raise ValueError(f"{source}: column {name!r} has NaN or inf at {_first_bad(bad, column)}.")
            huge = values.abs() > np.finfo(np.float32).max
            if huge.any():  # finite here, inf once training's float32 sees it
                raise ValueError(f"{source}: column {name!r} holds a number beyond float32's range (about 3.4e38) at {_first_bad(huge, column)}; rescale it at the source.")
            single = values.to_numpy(np.float32)
            lost = _float32_merges(column.to_numpy() if pd.api.types.is_integer_dtype(column) else values.to_numpy(), single)
            if lost:
                notes.append(
                    f"{source}: column {name!r} holds numbers float32 cannot tell apart (e.g. {lost[0]} and {lost[1]}): "
                    f"{lost[2]:,} distinct values become {lost[3]:,}; subtract an offset or rescale it at the source"
                )
            parts.append(single[:, None])
            names.append(name)
            continue
        if options.categorical == "error":
            raise ValueError(f"{source}: column {name!r} is not numeric (e.g. {column.dropna().iloc[0]!r}) and data.categorical=error.")
        if column.isna().any():
            raise ValueError(f"{source}: categorical column {name!r} is empty at {_first_bad(column.isna(), column)}.")
        distinct = column.nunique()
        if distinct > 20 and distinct > 0.5 * len(column):  # an identifier, or numbers or dates written as text
            notes.append(
                f"{source}: text column {name!r} has {distinct:,} distinct values in {len(column):,} rows (e.g. {column.iloc[0]!r}), "
                f"each a one-hot feature of its own; if it holds numbers, dates or identifiers, convert or drop it"
            )
        dummies = pd.get_dummies(column.astype(str), prefix=name, prefix_sep="=", dtype=np.float32)
        parts.append(dummies.to_numpy())
        names.extend(str(c) for c in dummies.columns)
    check_discrete(labels.to_numpy(), source, target)
    y, class_names = encode_labels(labels.astype(str) if labels.dtype == object else labels)
    return RawData(np.concatenate(parts, axis=1), y, class_names, {"source": source, "target": target}, feature_names=names, warnings=notes)


@register_source("csv", fingerprint=_file_fingerprint, reads=("target", "categorical", "header", "decimal"))
def load_csv(argument: str, options: SourceOptions) -> RawData:
    """`csv:<path>`: the delimiter is sniffed (`,`, `;`, tab, `|`), the decimal mark too
    (`data.decimal`), and a first row of numbers is data, not a header (`data.header`)."""
    import pandas as pd

    path = Path(argument)
    _check_not_utf16(path)
    delimiter = sniff_delimiter(path)
    rows = _sample_rows(path, delimiter)
    decimal = sniff_decimal(rows, delimiter) if options.decimal == "auto" else options.decimal
    header = has_header(rows, decimal, options.header)
    names = rows[0] if header and rows else []
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # pandas would rename the second `target` to `target.1`: a feature leaking the label
        raise ValueError(f"{path}: column {repeated[0]!r} appears {names.count(repeated[0])} times in the header; give each column its own name.")
    try:
        frame = pd.read_csv(path, sep=delimiter, decimal=decimal, header=0 if header else None, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"Cannot read CSV file {path}: {exc}") from exc
    # A decimal comma sniffed from the file (a `;` file of "5,125") is as good as one given.
    raw = table_to_raw(frame, dataclasses.replace(options, decimal=",") if decimal == "," else options, f"csv:{argument}")
    raw.provenance.update({"delimiter": delimiter, "decimal": decimal, "header": header})
    return raw


@register_source("parquet", fingerprint=_file_fingerprint, reads=("target", "categorical"))
def load_parquet(argument: str, options: SourceOptions) -> RawData:
    """`parquet:<path>` (needs pyarrow: `pip install 'gainsplit[parquet]'`)."""
    import pandas as pd

    path = Path(argument)
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ValueError(f"Reading {path} needs pyarrow: pip install 'gainsplit[parquet]'.") from exc
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read Parquet file {path}: {exc}") from exc
    return table_to_raw(frame, options, f"parquet:{argument}")


def channels_first(x: np.ndarray, layout: str, where: str) -> tuple[np.ndarray, str]:
    """4-D images as `(N, C, H, W)`, and the layout they were read in: `data.layout`, or (auto)
    channels-last when the last axis has 1, 3 or 4 entries and the second does not (or the last
    has 1 and the second more); a shape that reads both ways stops with a message."""
    if x.ndim != 4:
        return x, "channels_first"
    if layout == "auto":
        second, last = x.shape[1], x.shape[3]
        if last in CHANNELS and (second not in CHANNELS or (last == 1 and second != 1)):
            layout = "channels_last"
        elif second in CHANNELS and last in CHANNELS and second != 1:
            raise ValueError(
                f"{where} has shape {x.shape}: {second} channels of {x.shape[2]}x{last} images, or {last} channels of "
                f"{second}x{x.shape[2]} images? Say which with data.layout=channels_first or data.layout=channels_last."
            )
        else:
            layout = "channels_first"
    if layout == "channels_last":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), layout
    return x, layout


def _check_numpy_archive(path: Path) -> None:
    """A file that is not a zip of arrays is named as such (and numpy's advice to unpickle it never shown)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise ValueError(f"Cannot read npz file {path}: {exc.strerror or exc}") from exc
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path} holds a single .npy array, not a NumPy archive: save features and labels with np.savez({path.stem}.npz, x=..., y=...).")
    if not head.startswith(b"PK"):
        raise ValueError(f"{path} is not a NumPy archive (.npz, written by np.savez); it starts with {head!r}. For a CSV file use data.source=csv:{path}.")


def _check_declared_size(archive: Any, name: str, path: Path) -> None:
    """Refuse a member whose header declares more data than the member holds, before reading it
    (a header saying (10**12,) over 64 bytes would otherwise ask for terabytes)."""
    member = f"{name}.npy"
    if member not in archive.zip.namelist():
        return
    info = archive.zip.getinfo(member)
    with archive.zip.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        held = info.file_size - handle.tell()
    if dtype.hasobject:  # pickled Python objects: their size says nothing, and they are never read
        raise ValueError(f"{path}: array {name!r} holds Python objects, which only unpickling could read; gainsplit never unpickles data. Save numeric arrays.")
    declared = math.prod(shape) * dtype.itemsize
    if declared > held:
        raise ValueError(f"{path}: array {name!r} declares shape {shape} of {dtype} ({declared:,} bytes) but holds {held:,} bytes: the file is damaged or not what it says.")


def _read_array(archive: Any, name: str, path: Path) -> np.ndarray:
    _check_declared_size(archive, name, path)
    try:
        return archive[name]
    except ValueError as exc:  # numpy's message advises allow_pickle=True: never pass that on
        if "allow_pickle" not in str(exc):
            raise
        raise ValueError(f"{path}: array {name!r} holds Python objects, which only unpickling could read; gainsplit never unpickles data. Save numeric arrays.") from None


def _float32_merges(values: np.ndarray, single: np.ndarray) -> tuple[Any, Any, int, int] | None:
    """Two of `values` (as read: integers exactly) that float32 rounds to one, and the distinct
    counts before and after, when rounding merges any (integers beyond 2**24, timestamps); None
    when every distinct value stays apart."""
    if values.size == 0:
        return None
    as_float = values.astype(np.float64)
    if values.dtype.kind in "iub":
        if float(np.abs(as_float).max()) < 2**24:  # every integer below 2**24 is exact in float32
            return None
    elif float(np.abs(single - as_float).max()) <= 1e-4 * float(as_float.std()):  # rounding far below the spread
        return None
    before, index = np.unique(values, return_index=True)
    after = np.unique(single[index])
    if len(after) >= 0.99 * len(before):  # a few neighbours merged: float32's resolution, not lost data
        return None
    rounded = single[index]
    order = np.argsort(rounded, kind="stable")
    same = np.flatnonzero(rounded[order][1:] == rounded[order][:-1])[0]
    return before[order][same].item(), before[order][same + 1].item(), len(before), len(after)


@register_source("npz", fingerprint=_file_fingerprint, reads=("x_key", "y_key", "layout"))
def load_npz(argument: str, options: SourceOptions) -> RawData:
    """`npz:<path>` with features under `data.x_key` and labels under `data.y_key`.

    2-D features are tabular; 3-D are grayscale images `(N, H, W)`; 4-D are images `(N, C, H, W)`,
    or `(N, H, W, C)` (see `channels_first`).
    """
    path = Path(argument)
    _check_numpy_archive(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (options.x_key, options.y_key) if key not in archive.files]
            if missing:
                raise ValueError(f"{path} has no array {missing[0]!r}. Arrays: {', '.join(archive.files)}.")
            x, labels = _read_array(archive, options.x_key, path), _read_array(archive, options.y_key, path)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"Cannot read npz file {path}: {exc}") from exc
    for name, array in ((options.x_key, x), (options.y_key, labels)):
        check_real(array, str(path), name)
    x, layout = channels_first(x, options.layout, f"{path}: array {options.x_key!r}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise ValueError(f"{path}: array {options.x_key!r} has shape {x.shape}; expected (N, F), (N, H, W) or (N, C, H, W).")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{path}: array {options.x_key!r} has dtype {x.dtype}; expected numbers.")
    if x.dtype.kind == "f" and x.dtype.itemsize > 8:  # long double: no tensor holds it
        x = x.astype(np.float64)
    if labels.ndim != 1:
        raise ValueError(f"{path}: array {options.y_key!r} has shape {labels.shape}; expected one label per sample (N,).")
    notes = []
    labels = composed(labels, str(path), options.y_key, notes)
    if labels.dtype.kind in "US":  # "c0 " and "c0" are one class, as in a table
        stripped = np.char.strip(labels)
        changed = int(np.sum(stripped != labels))
        if changed:
            notes.append(f"{path}: stripped spaces around {changed} labels of {options.y_key!r}")
            labels = stripped
    check_discrete(labels, str(path), options.y_key)
    y, class_names = encode_labels(labels)
    return RawData(x, y, class_names, {"source": f"npz:{argument}", "layout": layout}, warnings=notes)
