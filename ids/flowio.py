"""Reading and writing flow records as CSV (WUSTL-EHMS-2020 header) or JSON lines.

Readers are lazy iterators so ``fbci ids watch`` can score stdin as it
arrives; every error names the line and the field, because an operator
feeding a 100 000-line export needs to know where it broke.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TextIO

from core.errors import InvalidInput
from ids.devices import DEFAULT_DEVICES, DeviceCatalog
from ids.record import WUSTL_COLUMNS, FlowRecord, record_from_mapping

Source = str | Path | TextIO


@contextmanager
def _opened(source: Source) -> Iterator[TextIO]:
    if isinstance(source, (str, Path)):
        try:
            with open(source, newline="", encoding="utf-8") as stream:
                yield stream
        except FileNotFoundError:
            raise InvalidInput(f"flow file {source} does not exist") from None
    else:
        yield source


def read_flows_csv(source: Source, devices: DeviceCatalog = DEFAULT_DEVICES) -> Iterator[FlowRecord]:
    """Records from a CSV whose header uses WUSTL column names (or our field names), of ``devices``' types."""
    with _opened(source) as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            where = f"line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                raise InvalidInput(f"{where}: {len(row)} values for {len(header)} columns")
            yield record_from_mapping(dict(zip(header, row, strict=True)), where, devices)


def read_flows_jsonl(source: Source, devices: DeviceCatalog = DEFAULT_DEVICES) -> Iterator[FlowRecord]:
    """Records from JSON lines, one object per line, of ``devices``' types; blank lines are skipped."""
    with _opened(source) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"line {number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"line {number}: expected a JSON object")
            yield record_from_mapping(row, f"line {number}", devices)


def write_flows_csv(records: Iterable[FlowRecord], stream: TextIO) -> None:
    writer = csv.writer(stream)
    writer.writerow([WUSTL_COLUMNS[f.name] for f in fields(FlowRecord)])
    for record in records:
        writer.writerow(record.to_row().values())


def write_flows_jsonl(records: Iterable[FlowRecord], stream: TextIO) -> None:
    for record in records:
        stream.write(json.dumps(record.to_row()) + "\n")
