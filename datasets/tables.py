"""Tabular and array files: `csv:<path>`, `parquet:<path>` (with `data.target`) and `npz:<path>`."""

from __future__ import annotations

import csv
import difflib
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import RawData, SourceOptions, encode_labels, hash_files, register_source


def _file_fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    path = Path(argument)
    if not path.is_file():
        raise ValueError(f"Data file {path} does not exist.")
    return hash_files([path])


def sniff_delimiter(path: Path) -> str:
    """`,`, `;`, tab or `|`, judged from the start of the file; `,` when there is only one column."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        sample = handle.read(65536)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _mostly_numbers(column: Any) -> bool:
    import pandas as pd

    values = column.dropna()
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().mean() > 0.5


def _first_bad(mask: Any, column: Any) -> str:
    row = mask[mask].index[0]
    return f"row {row} (value {column.loc[row]!r})"


def table_to_raw(frame: Any, options: SourceOptions, source: str) -> RawData:
    """Features and labels from a DataFrame: numeric columns as they are, categorical ones one-hot."""
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    target = options.target
    if not target:
        raise ValueError(f"{source} needs data.target=<column>. Columns: {', '.join(columns)}.")
    if target not in columns:
        close = difflib.get_close_matches(target, columns, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{source} has no target column {target!r}.{hint} Columns: {', '.join(columns)}.")
    if frame.shape[0] == 0:
        raise ValueError(f"{source} has no rows.")
    labels = frame[target]
    if labels.isna().any():
        raise ValueError(f"{source}: target column {target!r} is empty at {_first_bad(labels.isna(), labels)}.")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise ValueError(f"{source} has no feature columns besides the target {target!r}.")
    parts, names = [], []
    for name in features.columns:
        column = features[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = column.astype(np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                raise ValueError(f"{source}: column {name!r} has NaN or inf at {_first_bad(bad, column)}.")
            parts.append(values.to_numpy(np.float32)[:, None])
            names.append(name)
            continue
        if _mostly_numbers(column):
            bad = pd.to_numeric(column, errors="coerce").isna()
            raise ValueError(f"{source}: column {name!r} is numeric except at {_first_bad(bad, column)}; fix or remove that value.")
        if options.categorical == "error":
            raise ValueError(f"{source}: column {name!r} is not numeric (e.g. {column.dropna().iloc[0]!r}) and data.categorical=error.")
        if column.isna().any():
            raise ValueError(f"{source}: categorical column {name!r} is empty at {_first_bad(column.isna(), column)}.")
        dummies = pd.get_dummies(column.astype(str), prefix=name, prefix_sep="=", dtype=np.float32)
        parts.append(dummies.to_numpy())
        names.extend(str(c) for c in dummies.columns)
    y, class_names = encode_labels(labels.astype(str) if labels.dtype == object else labels)
    return RawData(np.concatenate(parts, axis=1), y, class_names, {"source": source, "target": target}, feature_names=names)


@register_source("csv", fingerprint=_file_fingerprint)
def load_csv(argument: str, options: SourceOptions) -> RawData:
    """`csv:<path>`: the delimiter is sniffed, so `;`-separated files work as well as `,`."""
    import pandas as pd

    path = Path(argument)
    delimiter = sniff_delimiter(path)
    try:
        frame = pd.read_csv(path, sep=delimiter)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"Cannot read CSV file {path}: {exc}") from exc
    raw = table_to_raw(frame, options, f"csv:{argument}")
    raw.provenance["delimiter"] = delimiter
    return raw


@register_source("parquet", fingerprint=_file_fingerprint)
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


@register_source("npz", fingerprint=_file_fingerprint)
def load_npz(argument: str, options: SourceOptions) -> RawData:
    """`npz:<path>` with features under `data.x_key` and labels under `data.y_key`.

    2-D features are tabular; 3-D are grayscale images `(N, H, W)`; 4-D are images `(N, C, H, W)`.
    """
    path = Path(argument)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (options.x_key, options.y_key) if key not in archive.files]
            if missing:
                raise ValueError(f"{path} has no array {missing[0]!r}. Arrays: {', '.join(archive.files)}.")
            x, labels = archive[options.x_key], archive[options.y_key]
    except (OSError, EOFError) as exc:
        raise ValueError(f"Cannot read npz file {path}: {exc}") from exc
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise ValueError(f"{path}: array {options.x_key!r} has shape {x.shape}; expected (N, F), (N, H, W) or (N, C, H, W).")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{path}: array {options.x_key!r} has dtype {x.dtype}; expected numbers.")
    if labels.ndim != 1:
        raise ValueError(f"{path}: array {options.y_key!r} has shape {labels.shape}; expected one label per sample (N,).")
    y, class_names = encode_labels(labels)
    return RawData(x, y, class_names, {"source": f"npz:{argument}"})
