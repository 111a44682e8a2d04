"""The ``.wandb`` file: how a wandb run's records are framed on disk.

A run folder's ``run-<id>.wandb`` file holds every record the run sent: its config, history,
summary updates and exit. wandb writes it as a LevelDB log (7-byte file header ``:W&B``, magic
0xBEE1, version 0; then 32 KiB blocks of records: crc32 of type and data, uint16 length, uint8
type FULL/FIRST/MIDDLE/LAST, data; a block's last < 7 bytes are zeros) of
``wandb_internal_pb2.Record`` protobufs. wandb ≥ 0.19 reads it in its Go core only and ships no
Python reader or writer, so this module implements both, the records parsed (or serialized)
with wandb's own protobuf classes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["WandbFileError", "chunks", "records", "write_records", "HISTORY", "SUMMARY"]

_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC = [zlib.crc32(bytes([t])) for t in range(5)]
HISTORY, SUMMARY = 0x12, 0x1a  # the tags of Record.history (field 2) and Record.summary (field 3)


class WandbFileError(ValueError):
    """A .wandb file that is not one, or whose record checksums fail (the message names it)."""


def chunks(path: Path) -> tuple[list[bytes], bytearray]:
    """The serialized records of a .wandb file, in order, and each one's ``tag`` (a byte each): the first byte
    after its number (field 1, a varint, wandb's first field), which is the tag of the record's
    type for records as wandb writes them (``Record.history``: 0x12, ``Record.summary``: 0x1a),
    so that a reader parses only the records it needs (a run has thousands). A record cut short
    at the end (the run is still being written, or was killed mid-write) ends them; a bad header
    or checksum raises ``WandbFileError``, naming the file."""
    data = path.read_bytes()
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise WandbFileError(f"{path}: not a wandb run file")
    # This loop runs once per record: its names are locals, and it does nothing it can leave out.
    unpack, crc32, type_crc = _RECORD.unpack_from, zlib.crc32, _TYPE_CRC
    out: list[bytes] = []
    tags = bytearray()
    append, tag = out.append, tags.append
    offset, end, pending = _HEADER.size, len(data), b""
    while offset + 7 <= end:
        room = _BLOCK - offset % _BLOCK
        if room < 7:  # the block's trailer: zero padding
            offset += room
            continue
        checksum, length, kind = unpack(data, offset)
        start = offset + 7
        offset = start + length
        if offset > end:
            break
        chunk = data[start:offset]
        if not 0 < kind < 5 or crc32(chunk, type_crc[kind]) != checksum:
            if length == 0 and kind == 0 and checksum == 0:
                break  # preallocated zeros after the last record
            raise WandbFileError(f"{path}: corrupt record at byte {start - 7}")
        if kind == _FIRST:
            pending = chunk
            continue
        if kind != _FULL:
            pending += chunk
            if kind != _LAST:
                continue
            chunk = pending
        append(chunk)
        # a number below 2**14 is one or two bytes (a varint); _tag reads any other
        if len(chunk) > 3 and chunk[0] == 0x08:
            tag(chunk[2] if chunk[1] < 0x80 else chunk[3] if chunk[2] < 0x80 else _tag(chunk))
        else:
            tag(_tag(chunk))
    return out, tags


def _tag(chunk: bytes) -> int:
    if not chunk:
        return 0
    if chunk[0] != 0x08:
        return chunk[0]
    at = 1
    while at < len(chunk) and chunk[at] > 0x7F:
        at += 1
    return chunk[at + 1] if at + 1 < len(chunk) else 0


def records(path: Path) -> Iterator[Any]:
    """The ``Record`` protobufs of a .wandb file (``chunks``, parsed)."""
    from wandb.proto import wandb_internal_pb2 as pb

    for chunk in chunks(path)[0]:
        yield pb.Record.FromString(chunk)


def write_records(path: Path, serialized: Iterable[bytes]) -> None:
    """Write ``serialized`` records (``Record.SerializeToString()``) framed as wandb frames a
    .wandb file: the inverse of ``chunks``, block for block. The benchmark generates runs so."""
    out = bytearray(_HEADER.pack(b":W&B", 0xBEE1, 0))
    for data in serialized:
        first = True
        while True:
            room = _BLOCK - len(out) % _BLOCK
            if room < _RECORD.size:  # too little for a header: the block's trailer
                out += bytes(room)
                continue
            chunk, data = data[:room - _RECORD.size], data[room - _RECORD.size:]
            kind = (_FULL if not data else _FIRST) if first else (_LAST if not data else _MIDDLE)
            out += _RECORD.pack(zlib.crc32(chunk, _TYPE_CRC[kind]), len(chunk), kind) + chunk
            first = False
            if not data:
                break
    path.write_bytes(bytes(out))
