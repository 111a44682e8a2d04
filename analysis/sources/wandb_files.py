"""wandb run folders on disk (``wandb/offline-run-*``, ``wandb/run-*``) as a source.

A run folder's ``run-<id>.wandb`` file holds every record the run sent: its config, history,
summary updates and exit. wandb writes it as a LevelDB log (7-byte file header ``:W&B``, magic
0xBEE1, version 0; then 32 KiB blocks of records: crc32 of type and data, uint16 length, uint8
type FULL/FIRST/MIDDLE/LAST, data) of ``wandb_internal_pb2.Record`` protobufs. wandb ≥ 0.19
reads it in its Go core only and ships no Python reader, so ``records`` implements the reader
of that format here and parses each record with wandb's own protobuf classes.

The attempts of one run (a resumed run writes one folder per process) are one run: its config
and summary updates applied in order, its history concatenated.
"""

from __future__ import annotations

import glob
import json
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow as pa

from analysis.run_map import Identity, RunMap
from analysis.sources.history import History
from analysis.sources.raw_run import run_data
from analysis.sources.run_data import RunData, skip
from analysis.sources.wandb_history import LAYER_TABLE_KEY, wandb_raw_run
from experiments.store import COMPLETED, FAILED, INCOMPLETE

__all__ = ["WandbFileError", "find_wandb_runs", "records", "read_wandb_run", "wandb_run_key", "is_live",
           "is_wandb_dir"]

_FOLDER = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-(.+)$")
_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC = [zlib.crc32(bytes([t])) for t in range(5)]
LIVE_SECONDS = 60  # an offline run whose file changed this recently, without an exit record, runs


class WandbFileError(ValueError):
    """A .wandb file that is not one, or whose record checksums fail (the message names it)."""


def is_wandb_dir(path: Path) -> bool:
    """A folder of wandb runs: named ``wandb``, or itself one run folder."""
    return path.name == "wandb" or bool(_FOLDER.match(path.name))


def find_wandb_runs(root: Path) -> list[list[Path]]:
    """The wandb runs under ``root`` at any depth: per run id, its run folders oldest first."""
    runs: dict[str, list[tuple[str, Path]]] = {}
    for here, dirs, files in os.walk(root):
        match = _FOLDER.match(Path(here).name)
        if match and any(f.endswith(".wandb") for f in files):
            runs.setdefault(match.group(2), []).append((match.group(1), Path(here)))
            dirs.clear()
    return [[folder for _, folder in sorted(attempts)] for _, attempts in sorted(runs.items())]


def _wandb_file(folder: Path) -> Optional[Path]:
    return next(iter(sorted(folder.glob("*.wandb"))), None)


def wandb_run_key(folders: list[Path]) -> list:
    """What a cached run depends on: its .wandb files' sizes and mtimes."""
    key = []
    for folder in folders:
        stat = _wandb_file(folder).stat()
        key.append([str(folder), stat.st_size, stat.st_mtime_ns])
    return key


def is_live(path: str) -> bool:
    """A run without an exit record is still being written if one of its .wandb files (the
    attempts sit side by side) changed in the last minute; else it was killed."""
    folder = Path(path)
    run = _FOLDER.match(folder.name).group(2)
    files = folder.parent.glob(f"*run-*-{glob.escape(run)}/*.wandb")
    return any(time.time() - f.stat().st_mtime < LIVE_SECONDS for f in files)


def records(path: Path) -> Iterator[Any]:
    """The ``Record`` protobufs of a .wandb file. A record cut short at the end (the run is still
    being written, or was killed mid-write) ends the scan; a bad header or checksum raises."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise WandbFileError(f"{path}: not a wandb run file")
    offset, pending = _HEADER.size, b""
    while offset + _RECORD.size <= len(data):
        room = _BLOCK - offset % _BLOCK
        if room < _RECORD.size:  # the block's trailer: zero padding
            offset += room
            continue
        checksum, length, kind = _RECORD.unpack_from(data, offset)
        start, offset = offset + _RECORD.size, offset + _RECORD.size + length
        if offset > len(data):
            return
        chunk = data[start:offset]
        if kind not in (_FULL, _FIRST, _MIDDLE, _LAST) or zlib.crc32(chunk, _TYPE_CRC[kind]) != checksum:
            if length == 0 and kind == 0 and checksum == 0:
                return  # preallocated zeros after the last record
            raise WandbFileError(f"{path}: corrupt record at byte {start - _RECORD.size}")
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") and item.DESCRIPTOR.oneofs else None
    if kind is None or kind == "none":
        return None
    return json.loads(item.json) if kind == "json" else getattr(item, kind)


def _item_json(item: Any) -> str:
    """An item's value as JSON text (decoded later, all of a key's values at once)."""
    return item.value_json or json.dumps(_item_value(item))


def _history_items(record: Any) -> list[tuple[str, str]]:
    """A history record's (key, JSON value) pairs; items under a nested key (media such as a
    logged table: ``layers/stats`` → ``_type``, ``path``, ...) as one dict under the first part."""
    items, nested = [], {}
    for item in record.history.item:
        if len(item.nested_key) > 1:
            _assign(nested, item, _item_value(item))
        else:
            items.append((item.key or item.nested_key[0], _item_json(item)))
    return items + [(key, json.dumps(value)) for key, value in nested.items()]


def _assign(target: dict[str, Any], item: Any, value: Any) -> None:
    path = list(item.nested_key) or [item.key]
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _remove(target: dict[str, Any], item: Any) -> None:
    path = list(item.nested_key) or [item.key]
    for part in path[:-1]:
        target = target.get(part, {})
    target.pop(path[-1], None)


def _apply(target: dict[str, Any], change: Any) -> None:
    """A config or summary record: its updates assigned into ``target``, its removals removed."""
    for item in change.update:
        _assign(target, item, _item_value(item))
    for item in change.remove:
        _remove(target, item)


def read_wandb_run(folders: list[Path], run_map: Optional[RunMap] = None) -> RunData:
    """The attempts of one wandb run (its folders, oldest first) → ``RunData`` (``run_map``: see
    ``analysis.sources.raw_run``). A file that cannot be read is left out with one warning
    naming it."""
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history = History(json_values=True)
    identity = Identity(name=folders[0].name)
    exit_code: Optional[int] = None
    skipped = False
    for folder in folders:
        path = _wandb_file(folder)
        try:
            for record in records(path):
                kind = record.WhichOneof("record_type")
                if kind == "history":
                    history.add(_history_items(record))
                elif kind == "summary":
                    _apply(summary, record.summary)
                elif kind == "run":
                    run = record.run
                    identity = Identity(project=run.project, group=run.run_group or None,
                                        name=run.display_name or run.run_id, tags=tuple(run.tags))
                    for item in run.config.update:
                        _assign(config, item, _item_value(item))
                elif kind == "config":
                    _apply(config, record.config)
                elif kind == "exit":
                    exit_code = record.exit.exit_code
        except (OSError, ValueError) as error:  # WandbFileError, protobuf DecodeError, bad JSON
            skip(f"skipping {path}: {str(error).removeprefix(f'{path}: ')}")
            skipped = True
    try:
        table, layer_tables = history.table(), history.objects(LAYER_TABLE_KEY)
    except ValueError as error:  # a value that is not JSON: the records passed their checksums
        skip(f"skipping the history of {folders[0]}: {error}")
        table, layer_tables, skipped = pa.table({}), [], True
    status = (COMPLETED if exit_code == 0 else FAILED) if exit_code is not None else INCOMPLETE

    def read_table(relative: str) -> Optional[dict[str, Any]]:
        for folder in folders:
            table = folder / "files" / relative
            if relative and table.is_file():
                return json.loads(table.read_text())
        return None

    raw = wandb_raw_run(str(folders[0]), identity=identity, config=config, summary=summary, history=table,
                        layer_tables=layer_tables, status=status, read_table=read_table)
    raw.skipped = skipped
    return run_data(raw, run_map)
