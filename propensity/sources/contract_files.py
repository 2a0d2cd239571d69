"""Files already in event contract v1 (the Kafka topic's archive format) -> contract events (unvalidated).

Formats, chosen by extension: `.parquet`; `.csv` (header row); `.jsonl` / `.json` (one JSON object per line; a
`.json` file holding one JSON array of objects is accepted too). A path may be a file or a directory, searched
recursively for those extensions (names starting with `_` or `.`, such as Spark's `_SUCCESS` and `.crc` files, are
skipped).

Values are read as they are: CSV and JSON scalars as text (JSON numbers keep their literal text too), so nothing is
lost or rounded before the gate; parquet keeps its own types. Only an empty CSV field and a JSON `null` are null.
`validate_events` then coerces, deduplicates and quarantines. Each file must carry exactly the contract's
columns; a file with missing or extra columns is a producer bug and raises `ValueError` naming the file and the
columns (every JSON record must carry every key; a record cannot be half-shaped).

`write_contract_jsonl` writes the wire format: one object per event, keys in contract order, `event_time` as
ISO-8601 UTC with microseconds and a `Z` suffix, nulls as `null`, floats in shortest round-trip form.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from propensity.contract import EVENT_COLUMNS
from propensity.sources import SourceBatch

SUFFIX_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
WIRE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _check_columns(path: Path, columns: list[str], where: str = "") -> None:
    missing = [c for c in EVENT_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in EVENT_COLUMNS]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or extra or repeated:
        problems = []
        if missing:
            problems.append(f"missing columns {missing}")
        if extra:
            problems.append(f"extra columns {extra}")
        if repeated:
            problems.append(f"repeated columns {repeated}")
        location = f"{path}: {where}" if where else f"{path}"
        expected = list(EVENT_COLUMNS)
        raise ValueError(f"{location}: not event contract columns: {'; '.join(problems)} (expected {expected})")


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    _check_columns(path, header)  # the file's own header, before pandas renames a repeated name ("x" -> "x.1")
    return pd.read_csv(path, dtype="object", keep_default_na=False, na_values=[""], encoding="utf-8-sig")


def _json_records(path: Path) -> list[dict]:
    def parse(text: str, where: str):
        try:
            # Numbers keep their literal text (ids of any length, prices without float rounding).
            return json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: {where}: not valid JSON ({error})") from error

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        records = parse(text, "file")
        located = [(f"record {n}", r) for n, r in enumerate(records, start=1)]
    else:
        lines = enumerate(text.splitlines(), start=1)
        located = [(f"line {n}", parse(line, f"line {n}")) for n, line in lines if line.strip()]
    for where, record in located:
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {where}: expected a JSON object, got {type(record).__name__}")
        if set(record) != set(EVENT_COLUMNS):
            _check_columns(path, list(record), where)
    return [record for _, record in located]


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = _json_records(path)
    frame = pd.DataFrame.from_records(records, columns=list(EVENT_COLUMNS)) if records else None
    if frame is None:
        frame = pd.DataFrame({c: pd.Series(dtype="object") for c in EVENT_COLUMNS})
    return frame.astype("object")


def _read_parquet(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    _check_columns(path, [str(c) for c in frame.columns])
    return frame.reset_index(drop=True)


_READERS = {"parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl}


def contract_files(paths: str | Path | list[str | Path]) -> list[Path]:
    """The files a path (or list of paths) names: files as given, directories searched recursively, sorted."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(
                p
                for p in entry.rglob("*")
                if p.is_file()
                and p.suffix.lower() in SUFFIX_FORMATS
                and not any(part.startswith(("_", ".")) for part in p.relative_to(entry).parts)
            )
            if not found:
                raise ValueError(f"{entry}: no contract files ({', '.join(SUFFIX_FORMATS)}) in this directory")
            files.extend(found)
        elif entry.is_file():
            if entry.suffix.lower() not in SUFFIX_FORMATS:
                expected = list(SUFFIX_FORMATS)
                raise ValueError(f"{entry}: unsupported file type {entry.suffix!r}; expected one of {expected}")
            files.append(entry)
        else:
            raise FileNotFoundError(f"{entry}: no such file or directory")
    return files


def read_contract_file(path: str | Path) -> pd.DataFrame:
    """One file's rows, columns in contract order, values as read."""
    path = Path(path)
    frame = _READERS[SUFFIX_FORMATS[path.suffix.lower()]](path)
    return frame[list(EVENT_COLUMNS)]


def load_contract_files(paths: str | Path | list[str | Path]) -> SourceBatch:
    """Contract-format files (a file, a directory, or a list of either) as one unvalidated event frame.

    Rows keep file order, files in sorted path order. `source` is whatever each row says.
    """
    frames = [read_contract_file(p) for p in contract_files(paths)]
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return SourceBatch(events=pd.DataFrame({c: pd.Series(dtype="object") for c in EVENT_COLUMNS}))
    if len(non_empty) == 1:
        return SourceBatch(events=non_empty[0].reset_index(drop=True))
    if len({tuple(map(str, f.dtypes)) for f in non_empty}) > 1:  # typed parquet with text CSV/JSON: keep values
        non_empty = [f.astype("object") for f in non_empty]
    return SourceBatch(events=pd.concat(non_empty, ignore_index=True))


def _wire_time(value) -> object:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime(WIRE_TIME_FORMAT)
    return value  # a raw value (e.g. unparsed text) is archived as it is; the gate judges it


def _wire_value(value) -> object:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def contract_json_lines(events: pd.DataFrame) -> list[str]:
    """Contract events as JSON strings, one per row: the wire format of the Kafka topic and of JSON-lines files.

    `event_time` becomes ISO-8601 UTC (`2017-11-26T01:00:00.000000Z`; a naive time is taken as UTC); floats are
    written in Python's shortest round-trip form, so validating the parsed lines gives back the validated frame.
    """
    frame = events[list(EVENT_COLUMNS)]
    if pd.api.types.is_datetime64_any_dtype(frame["event_time"]):
        times = frame["event_time"]
        times = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
        wire_times = times.dt.strftime(WIRE_TIME_FORMAT).astype("object").where(times.notna(), None).tolist()
    else:
        wire_times = [_wire_time(v) for v in frame["event_time"].astype("object")]
    columns = {c: frame[c].astype("object").tolist() for c in EVENT_COLUMNS if c != "event_time"}
    columns["event_time"] = wire_times
    return [
        json.dumps({c: _wire_value(columns[c][row]) for c in EVENT_COLUMNS}, ensure_ascii=False, allow_nan=False)
        for row in range(len(frame))
    ]


def write_contract_jsonl(events: pd.DataFrame, path: str | Path) -> Path:
    """Write contract events as JSON lines (`contract_json_lines`), atomically. Returns the path.
    `validate_events(load_contract_files(path).events).valid` equals the validated frame that was written."""
    path = Path(path)
    _check_columns(path, [str(c) for c in events.columns])
    lines = contract_json_lines(events)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(line + "\n" for line in lines)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
