"""Image data: built-in scikit-learn digits, CIFAR-10 python batches, ImageFolder directories.

Every reader returns ``(train, val)`` pairs of ``(images, labels)`` tensors: images float32
N×C×H×W normalised per channel, labels int64. The data sets here fit in memory.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from experiments.data.cache import cache_dir, save_atomic

__all__ = ["ImageSplit", "sklearn_digits", "builtin_digits", "cifar10", "image_folder", "augment"]

ImageSplit = tuple[Tensor, Tensor]
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _normalise(train: Tensor, val: Tensor) -> tuple[Tensor, Tensor]:
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (val - mean) / std


def sklearn_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8×8 digits as (images uint8 N×8×8 with values 0–16, labels int64),
    cached in ``$OPTBENCH_CACHE/digits.pt`` on first use: importing scikit-learn (and the
    pandas it loads) takes longer than a tiny run trains. scikit-learn ships the same digits in
    every release, so the cache needs no key."""
    path = cache_dir() / "digits.pt"
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        return cached["images"], cached["labels"]
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.uint8)  # whole numbers 0..16: exact
    labels = torch.tensor(digits.target, dtype=torch.int64)
    save_atomic({"images": images, "labels": labels}, path)
    return images, labels


def builtin_digits(tiny: bool, seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """scikit-learn's 1,797 8×8 handwritten digits, upsampled to 16×16; 20% held out.

    ``tiny`` keeps 400 training images (a seconds-long smoke test).
    """
    raw, labels = sklearn_digits()
    images = raw.to(torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = len(labels) // 5
    val_index, train_index = order[:n_val], order[n_val:]
    if tiny:
        train_index = train_index[:400]
    train_images, val_images = _normalise(images[train_index], images[val_index])
    return (train_images, labels[train_index]), (val_images, labels[val_index])


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def cifar10(root: Path | str) -> tuple[ImageSplit, ImageSplit]:
    """CIFAR-10 from its "python version" directory (data_batch_1..5, test_batch)."""
    root = Path(root)
    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"
    if not train_files or not test_file.is_file():
        raise FileNotFoundError(f"{root} is not a CIFAR-10 python directory (needs data_batch_* and test_batch)")

    def load(files: list[Path]) -> ImageSplit:
        batches = [_unpickle(f) for f in files]
        data = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([np.asarray(b[b"labels"]) for b in batches])
        return torch.tensor(data, dtype=torch.float32) / 255.0, torch.tensor(labels, dtype=torch.int64)

    (train_x, train_y), (val_x, val_y) = load(train_files), load([test_file])
    train_x, val_x = _normalise(train_x, val_x)
    return (train_x, train_y), (val_x, val_y)


def image_folder(root: Path | str, size: int = 32) -> tuple[ImageSplit, ImageSplit]:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``, resized to ``size``×``size`` RGB."""
    from PIL import Image

    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{root} is not an ImageFolder root: {root / split} is missing")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{root / 'train'} has no class directories")

    def load(split: str) -> ImageSplit:
        images, labels = [], []
        for index, name in enumerate(classes):
            for file in sorted((root / split / name).glob("*")):
                if file.suffix.lower() in _IMAGE_SUFFIXES:
                    image = Image.open(file).convert("RGB").resize((size, size))
                    images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
                    labels.append(index)
        if not images:
            raise FileNotFoundError(f"{root / split} holds no images")
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64)

    (train_x, train_y), (val_x, val_y) = load("train"), load("val")
    train_x, val_x = _normalise(train_x, val_x)
    return (train_x, train_y), (val_x, val_y)


def augment(images: Tensor, generators: list[torch.Generator], shift: int = 2, noise: float = 0.0,
            flip: bool = False, distractor: float = 0.0, pool: Optional[Tensor] = None) -> Tensor:
    """Random translation by up to ``shift`` pixels (zero padding), optional flip and noise, and
    optionally an image drawn from ``pool``, shifted by a quarter, blended in at weight ``distractor``.

    Image j's draws come from ``generators[j]`` alone, so its augmentation does not depend on the
    other images of the batch (see ``experiments.data.stream.sample_generators``).
    """
    n, channels, h, w = images.shape
    draws = torch.stack([torch.rand(4, generator=g) for g in generators])  # dx, dy, flip, distractor
    dx, dy = (draws[:, 0] * (2 * shift + 1)).long(), (draws[:, 1] * (2 * shift + 1)).long()
    padded = F.pad(images, (shift, shift, shift, shift))
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]
    if flip:
        mask = draws[:, 2] < 0.5
        out[mask] = out[mask].flip(-1)
    if distractor:
        if pool is None:
            raise ValueError("augment: distractor needs a pool of images to draw from")
        others = (draws[:, 3] * len(pool)).long()
        out = out + distractor * pool[others].roll(shifts=(h // 4, w // 4), dims=(2, 3))
    if noise:
        out = out + noise * torch.stack([torch.randn(out.shape[1:], generator=g) for g in generators])
    return out
