"""wandb run folders on disk (``wandb/offline-run-*``, ``wandb/run-*``) as a source.

Each run folder holds a ``.wandb`` file of the run's records (``analysis.sources.wandb_log``
reads its framing). A run's history is most of it (a record per ``wandb.log`` call, and wandb
writes two summary updates beside each), so records are told apart by their first bytes and
parsed only as needed: all history records at once, in one protobuf parse (``_history``); the
summary only when asked for; the few others (run, config, exit) one by one.

The attempts of one run (a resumed run writes one folder per process) are one run: its config
and summary updates applied in order, its history concatenated.
"""

from __future__ import annotations

import glob
import json
import operator
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError

from analysis.run_map import Identity, RunMap
from analysis.sources.history import History
from analysis.sources.raw_run import run_data
from analysis.sources.run_data import RunData, skip
from analysis.sources.wandb_history import LAYER_TABLE_KEY, wandb_raw_run
from analysis.sources.wandb_log import HISTORY, SUMMARY, chunks
from experiments.store import COMPLETED, FAILED, INCOMPLETE

__all__ = ["find_wandb_runs", "read_wandb_run", "wandb_run_key", "is_live", "is_wandb_dir"]

_FOLDER = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-(.+)$")
LIVE_SECONDS = 60  # an offline run whose file changed this recently, without an exit record, runs
_NEVER_READ = frozenset((number << 3) | 2 for number in (4, 6, 7, 8, 9, 10, 11, 12, 13))  # output, files, stats, ...
_NOT_OTHERS = np.array(sorted({HISTORY, SUMMARY, *_NEVER_READ}), dtype=np.uint8)  # the tags never parsed one by one


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


@lru_cache(maxsize=1)
def _merged() -> tuple[Any, bytes]:
    """A message type that reads a run's history records, concatenated, in one parse, and the
    separator that goes after each.

    Its field 2 (a Record's ``history``) and that one's field 1 (a HistoryRecord's ``item``) are
    single messages, not repeated ones: protobuf merges repeated occurrences of a single message
    field, concatenating their repeated fields. So every item's ``key``, ``nested_key`` and
    ``value_json`` (fields 1, 2 and 16 of a HistoryItem) land, in order, in three flat lists
    that the C parser fills; as bytes (Arrow checks and decodes their UTF-8 all at once, faster
    than protobuf makes a Python string of each). The separator, an item that no real history
    has (key and value "\\x01": never JSON), marks where each record ends."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="optbench_wandb_history.proto", package="optbench",
                                               syntax="proto3")
    kinds = descriptor_pb2.FieldDescriptorProto
    items = proto.message_type.add(name="Items")
    for name, number in (("key", 1), ("nested_key", 2), ("value_json", 16)):
        items.field.add(name=name, number=number, type=kinds.TYPE_BYTES, label=kinds.LABEL_REPEATED)
    for name, inner, number in (("History", "Items", 1), ("Records", "History", 2)):
        proto.message_type.add(name=name).field.add(name="inner", number=number, type=kinds.TYPE_MESSAGE,
                                                    type_name=f".optbench.{inner}", label=kinds.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    records = message_factory.GetMessageClass(pool.FindMessageTypeByName("optbench.Records"))
    separator = records()
    separator.inner.inner.nested_key.append(_SEPARATOR.encode())
    separator.inner.inner.value_json.append(_SEPARATOR.encode())
    return records, separator.SerializeToString()


_SEPARATOR = "\x01"  # never JSON, and no key wandb writes


def _history(records: list[bytes]) -> History:
    """The history of a run's serialized history records (in order). Rows whose items are each
    one key and one JSON value (wandb's own) come from the one merged parse; any other row (a
    nested key, a value in a typed field, an older wandb's ``key``) from its own record."""
    from wandb.proto import wandb_internal_pb2 as pb

    history = History(json_values=True)
    n = len(records)
    merged_type, separator = _merged()
    try:
        items = merged_type.FromString(separator.join(records) + separator).inner.inner
        keys, values = (pa.array(list(texts), pa.binary()).cast(pa.string())
                        for texts in (items.nested_key, items.value_json))
        legacy = len(items.key) > 0
    except (DecodeError, pa.ArrowInvalid):  # e.g. text that is not UTF-8: each record's own parse says where
        keys = values = pa.array([], pa.string())
        legacy = True
    key_ends, value_ends = (np.flatnonzero(pc.equal(a, _SEPARATOR).to_numpy(zero_copy_only=False))
                            for a in (keys, values))
    aligned = np.zeros(n, dtype=bool)
    if not legacy and len(key_ends) == n and len(value_ends) == n:
        # as many keys as values in a row: each of its items has one of each (an item has a key)
        aligned = np.diff(key_ends, prepend=-1) == np.diff(value_ends, prepend=-1)
    if aligned.any():
        key_rows = np.repeat(np.arange(n), np.diff(key_ends, prepend=-1))
        value_rows = np.repeat(np.arange(n), np.diff(value_ends, prepend=-1))
        keep_keys, keep_values = aligned[key_rows], aligned[value_rows]
        keep_keys[key_ends] = keep_values[value_ends] = False
        history.add_items(key_rows[keep_keys], keys.filter(keep_keys), values.filter(keep_values))
    for row in np.flatnonzero(~aligned):
        pairs = _history_items(pb.Record.FromString(records[row]))
        history.add_items([int(row)] * len(pairs), [k for k, _ in pairs], [v for _, v in pairs])
    history.rows = n
    return history


@dataclass
class _Attempt:
    """What one .wandb file says: its serialized history and summary records, in order, and its
    run, config and exit records, parsed."""

    histories: list[bytes] = field(default_factory=list)
    summaries: list[bytes] = field(default_factory=list)
    others: list[Any] = field(default_factory=list)


def _read_attempt(path: Path) -> _Attempt:
    """The records of one .wandb file that a run's reading needs; raises for a damaged file."""
    from wandb.proto import wandb_internal_pb2 as pb

    found, tags = chunks(path)
    codes = np.frombuffer(tags, dtype=np.uint8)
    rest = [(index, pb.Record.FromString(found[index]))
            for index in np.flatnonzero(~np.isin(codes, _NOT_OTHERS)).tolist()]
    kinds = [record.WhichOneof("record_type") for _, record in rest]
    attempt = _Attempt(others=[record for (_, record), kind in zip(rest, kinds) if kind in ("run", "config", "exit")])
    for (index, _), kind in zip(rest, kinds):  # a history or summary written with its fields in another order
        if kind in ("history", "summary"):
            tags[index] = HISTORY if kind == "history" else SUMMARY
    codes = np.frombuffer(tags, dtype=np.uint8)
    attempt.histories = _pick(found, np.flatnonzero(codes == HISTORY))
    attempt.summaries = _pick(found, np.flatnonzero(codes == SUMMARY))
    return attempt


def _pick(items: list[bytes], indices: np.ndarray) -> list[bytes]:
    """``[items[i] for i in indices]``, without a Python loop over thousands of records."""
    if len(indices) == 0:
        return []
    picked = operator.itemgetter(*indices.tolist())(items)
    return [picked] if len(indices) == 1 else list(picked)


def read_wandb_run(folders: list[Path], run_map: Optional[RunMap] = None) -> RunData:
    """The attempts of one wandb run (its folders, oldest first) → ``RunData`` (``run_map``: see
    ``analysis.sources.raw_run``). A file that cannot be read is left out with one warning
    naming it."""
    from wandb.proto import wandb_internal_pb2 as pb

    config: dict[str, Any] = {}
    histories: list[bytes] = []
    summaries: list[bytes] = []
    identity = Identity(name=folders[0].name)
    exit_code: Optional[int] = None
    skipped = False
    for folder in folders:
        path = _wandb_file(folder)
        try:
            attempt = _read_attempt(path)
        except (OSError, ValueError, IndexError, DecodeError) as error:  # WandbFileError, a record that is not one
            skip(f"skipping {path}: {str(error).removeprefix(f'{path}: ')}")
            skipped = True
            continue
        histories += attempt.histories
        summaries += attempt.summaries
        for record in attempt.others:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                identity = Identity(project=run.project, group=run.run_group or None,
                                    name=run.display_name or run.run_id, tags=tuple(run.tags))
                for item in run.config.update:
                    _assign(config, item, _item_value(item))
            elif kind == "config":
                _apply(config, record.config)
            else:
                exit_code = record.exit.exit_code
    try:
        history = _history(histories)
        table, layer_tables = history.table(), history.objects(LAYER_TABLE_KEY)
    except (ValueError, DecodeError) as error:  # the records passed their checksums, yet do not parse
        skip(f"skipping the history of {folders[0]}: {error}")
        table, layer_tables, skipped = History(json_values=True).table(), [], True
    status = (COMPLETED if exit_code == 0 else FAILED) if exit_code is not None else INCOMPLETE

    def summary() -> dict[str, Any]:
        replayed: dict[str, Any] = {}
        for chunk in summaries:
            _apply(replayed, pb.Record.FromString(chunk).summary)
        return replayed

    def read_table(relative: str) -> Optional[dict[str, Any]]:
        for folder in folders:
            table_file = folder / "files" / relative
            if relative and table_file.is_file():
                return json.loads(table_file.read_text())
        return None

    raw = wandb_raw_run(str(folders[0]), identity=identity, config=config, summary=summary, history=table,
                        layer_tables=layer_tables, status=status, read_table=read_table)
    raw.skipped = skipped
    return run_data(raw, run_map)
