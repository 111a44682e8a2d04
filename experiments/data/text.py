"""Text data as bytes: Python's own documentation (built in) or WikiText-style files.

Each split is a uint8 tensor of its UTF-8 bytes (the LM task widens the windows it takes to
int64): WikiText-103's 540 MB of training text stays 540 MB in every process, not 4.3 GB.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["builtin_pydoc", "text_files"]


def _bytes(text: str) -> Tensor:
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)


def _read(files: list[Path]) -> Tensor:
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    if not text:
        raise ValueError(f"{', '.join(str(f) for f in files)}: empty")
    return _bytes(text)


def builtin_pydoc(tiny: bool) -> tuple[Tensor, Tensor]:
    """The topics of ``pydoc_data`` (the text behind ``help()``, ~465 kB, shipped with Python):
    the first 90% for training, the last 10% for validation. ``tiny`` keeps 60 kB of training text."""
    from pydoc_data.topics import topics

    data = _bytes("\n\n".join(topics[key] for key in sorted(topics)))
    split = int(len(data) * 0.9)
    train, val = data[:split], data[split:]
    return (train[:60_000], val[:20_000]) if tiny else (train, val)


def text_files(root: Path | str) -> tuple[Tensor, Tensor]:
    """``*.train.tokens`` / ``*.valid.tokens`` (WikiText-103) or ``train.txt`` / ``valid.txt`` in ``root``."""
    root = Path(root)
    for train_pattern, valid_pattern in (("*.train.tokens", "*.valid.tokens"), ("train.txt", "valid.txt")):
        train_files, valid_files = sorted(root.glob(train_pattern)), sorted(root.glob(valid_pattern))
        if train_files and valid_files:
            return _read(train_files), _read(valid_files)
    raise FileNotFoundError(f"{root} holds neither *.train.tokens/*.valid.tokens nor train.txt/valid.txt")
