"""Speech data: log-mel features in torch, the built-in synthesised corpora, NeMo manifests.

Built-in corpora are synthesised offline with eSpeak NG and cached as features under
``$OPTBENCH_CACHE`` (default ``~/.cache/optbench``):

- ``sentences`` (default size): 3–7 words drawn at random from the 500 most frequent words of
  Python's documentation, spoken by several English voices at several speeds and pitches, with
  added noise. Random word order leaves no sentence to memorise (an earlier corpus of spans of
  one fixed text reached 0% WER in 200 steps): the model has to spell what it hears.
- ``digits`` (tiny size): one to three spoken digits, for seconds-long tests.

NeMo manifests are decoded to log-mels once and cached there too (keyed by the manifest's path,
content and modification time, and the feature recipe), as one frames × mels float16 tensor that
every process of a node memory-maps: a large corpus is decoded once, not by every rank of every
run, and its pages are shared instead of copied into each process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from experiments.data.cache import cache_dir, save_atomic
from experiments.data.versions import CORPUS_VERSION

__all__ = [
    "SAMPLE_RATE", "VOCABULARY", "encode_text", "decode_tokens", "log_mel", "resample",
    "builtin_corpus", "manifest_corpus", "Utterances", "FeatureCorpus",
]

SAMPLE_RATE = 16_000
N_MELS = 64
FEATURES_VERSION = 1  # bump when log_mel or resample change what they compute: cached manifests key on it
VOCABULARY = " abcdefghijklmnopqrstuvwxyz'"  # index + 1 is the CTC label; 0 is the blank
VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# A sequence of (features F×T float16, transcript) pairs.
Utterances = Sequence[tuple[Tensor, str]]


def encode_text(text: str) -> Tensor:
    """CTC labels of ``text`` (lower-cased; characters outside the vocabulary dropped)."""
    return torch.tensor([VOCABULARY.index(c) + 1 for c in text.lower() if c in VOCABULARY], dtype=torch.int64)


def decode_tokens(labels: list[int]) -> str:
    return "".join(VOCABULARY[i - 1] for i in labels if i > 0)


@functools.cache
def _mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular filters on the HTK mel scale, (n_fft//2+1) × n_mels."""
    def to_mel(f: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def to_hz(m: Tensor) -> Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(torch.linspace(to_mel(torch.tensor(0.0)), to_mel(torch.tensor(sample_rate / 2)), n_mels + 2))
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower[None, :]) / (center - lower)[None, :]
    falling = (upper[None, :] - freqs[:, None]) / (upper - center)[None, :]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def log_mel(wave: Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> Tensor:
    """Per-utterance normalised log-mel spectrogram (n_mels × frames): 25 ms Hann window, 10 ms hop."""
    n_fft, hop = 512, sample_rate // 100
    if wave.numel() < n_fft:  # a clip shorter than one FFT: pad with silence
        wave = F.pad(wave, (0, n_fft - wave.numel()))
    window = torch.hann_window(int(0.025 * sample_rate))
    spectrum = torch.stft(wave.float(), n_fft, hop_length=hop, win_length=window.numel(), window=window,
                          center=True, return_complex=True).abs().square()
    mel = torch.log(_mel_filterbank(n_fft, n_mels, sample_rate).T @ spectrum + 1e-6)
    return (mel - mel.mean(dim=1, keepdim=True)) / (mel.std(dim=1, keepdim=True) + 1e-5)


def resample(wave: Tensor, orig: int, new: int) -> Tensor:
    """Band-limited resampling: low-pass at the lower Nyquist, then linear interpolation."""
    if orig == new:
        return wave
    if new < orig:  # windowed-sinc low-pass before decimating
        cutoff = new / orig * 0.95
        taps = torch.arange(-32, 33, dtype=torch.float32)
        kernel = cutoff * torch.sinc(cutoff * taps) * torch.hann_window(65, periodic=False)
        wave = F.conv1d(wave[None, None].float(), (kernel / kernel.sum())[None, None], padding=32)[0, 0]
    length = int(round(wave.numel() * new / orig))
    return F.interpolate(wave[None, None].float(), size=length, mode="linear", align_corners=False)[0, 0]


@functools.cache
def _vocabulary(size: int = 500) -> list[str]:
    """The ``size`` most frequent words (letters only, 2–10 long) of Python's documentation."""
    import collections
    import re

    from pydoc_data.topics import topics

    counts = collections.Counter(re.findall(r"\b[a-z]{2,10}\b", " ".join(topics.values()).lower()))
    return sorted(word for word, _ in counts.most_common(size))


def _transcripts(kind: str, count: int, rng: random.Random) -> list[str]:
    if kind == "digits":
        return [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 3))) for _ in range(count)]
    words = _vocabulary()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 7))) for _ in range(count)]


def _synthesise(kind: str, count: int, seed: int, split: str) -> Utterances:
    from experiments.data.espeak import speaker
    from experiments.callbacks.progress import track

    rng = random.Random(seed)
    voice_pool = VOICES[:1] if kind == "digits" else VOICES
    spk = speaker()
    utterances = []
    # The first run on a machine spends most of a minute here: say so (cached afterwards).
    for text in track(_transcripts(kind, count, rng), f"synthesising the {kind} corpus ({split}, cached afterwards)"):
        samples = spk.say(text, voice=rng.choice(voice_pool), rate=rng.randint(140, 210), pitch=rng.randint(25, 75))
        wave = resample(torch.from_numpy(samples.astype(np.float32) / 32768.0), spk.sample_rate, SAMPLE_RATE)
        if kind != "digits":
            snr_db = rng.uniform(10.0, 30.0)
            noise = torch.randn(wave.shape, generator=torch.Generator().manual_seed(rng.getrandbits(31)))
            wave = wave + noise * wave.std() * 10 ** (-snr_db / 20)
        utterances.append((log_mel(wave).half(), text))
    return utterances


def builtin_corpus(tiny: bool) -> tuple[Utterances, Utterances]:
    """(train, val) of the built-in corpus, synthesised on first use and cached in
    ``asr-<kind>-<key>-frames.pt``: each split a ``FeatureCorpus``, whose one tensor loads
    (memory-mapped) in milliseconds, where a tensor per utterance took a tenth of a second every
    run. A cache of that older layout (``asr-<kind>-<key>.pt``, the same numbers, which older
    versions read) is converted, not synthesised again, and left in place."""
    kind, n_train, n_val = ("digits", 300, 60) if tiny else ("sentences", 2400, 200)
    key = hashlib.sha256(json.dumps([CORPUS_VERSION, kind, n_train, n_val, VOICES, N_MELS]).encode()).hexdigest()[:12]
    path, older = cache_dir() / f"asr-{kind}-{key}-frames.pt", cache_dir() / f"asr-{kind}-{key}.pt"
    if path.is_file():
        cached = torch.load(path, mmap=True, weights_only=True)
        return tuple(FeatureCorpus(cached[f"{split}_frames"], cached[f"{split}_offsets"], cached[f"{split}_texts"])
                     for split in ("train", "val"))
    if older.is_file():
        cached = torch.load(older, weights_only=True)
        train, val = list(zip(cached["train_x"], cached["train_y"])), list(zip(cached["val_x"], cached["val_y"]))
    else:
        train, val = _synthesise(kind, n_train, seed=1, split="train"), _synthesise(kind, n_val, seed=2, split="validation")
    corpora = FeatureCorpus.of(train), FeatureCorpus.of(val)
    save_atomic({f"{split}_{field}": getattr(corpus, field) for split, corpus in zip(("train", "val"), corpora)
                 for field in ("frames", "offsets", "texts")}, path)
    return corpora


class FeatureCorpus(Sequence[tuple[Tensor, str]]):
    """Utterances stored as one (total frames × mels) tensor with the offsets of each utterance:
    one file to cache and memory-map. Item i is (a mels × frames view, transcript); a slice is a
    corpus over the same storage."""

    def __init__(self, frames: Tensor, offsets: Tensor, texts: list[str]) -> None:
        self.frames, self.offsets, self.texts = frames, offsets, texts

    @classmethod
    def of(cls, utterances: Utterances) -> "FeatureCorpus":
        lengths = torch.tensor([features.shape[1] for features, _ in utterances])
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        return cls(torch.cat([features.T for features, _ in utterances]), offsets, [text for _, text in utterances])

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: Union[int, slice]):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("FeatureCorpus slices are contiguous")
            return FeatureCorpus(self.frames, self.offsets[start : max(start, stop) + 1], self.texts[start:stop])
        index = range(len(self))[index]
        return self.frames[self.offsets[index] : self.offsets[index + 1]].T, self.texts[index]


def _read_manifest(path: Path, limit_seconds: Optional[float]) -> Utterances:
    import soundfile

    utterances = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            audio_path, text = Path(entry["audio_filepath"]), str(entry["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a NeMo manifest line ({type(error).__name__}: {error})") from None
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        if not audio_path.is_file():
            raise FileNotFoundError(f"{path}:{number}: audio file not found: {audio_path}")
        if limit_seconds is not None and entry.get("duration", 0.0) > limit_seconds:
            continue
        samples, rate = soundfile.read(audio_path, dtype="float32", always_2d=True)
        wave = resample(torch.from_numpy(samples.mean(axis=1)), rate, SAMPLE_RATE)
        utterances.append((log_mel(wave).half(), text))
    if not utterances:
        raise ValueError(f"{path} holds no usable utterances")
    return utterances


def _cached_manifest(path: Path, limit_seconds: Optional[float]) -> FeatureCorpus:
    """The manifest's features, decoded on first use into ``$OPTBENCH_CACHE/asr-manifest-<key>.pt``
    and memory-mapped from there. The key covers the manifest's resolved path (relative audio
    paths are relative to it), its bytes and modification time, the duration limit and the feature
    recipe; a file lock makes concurrent processes (ranks started together) decode it once."""
    from filelock import FileLock

    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps([str(path.resolve()), path.stat().st_mtime_ns, limit_seconds, SAMPLE_RATE, N_MELS,
                              FEATURES_VERSION]).encode())
    cache = cache_dir() / f"asr-manifest-{digest.hexdigest()[:16]}.pt"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{cache}.lock"):
        if not cache.is_file():
            corpus = FeatureCorpus.of(_read_manifest(path, limit_seconds))
            save_atomic({"frames": corpus.frames, "offsets": corpus.offsets, "texts": corpus.texts}, cache)
    stored = torch.load(cache, mmap=True, weights_only=True)
    return FeatureCorpus(stored["frames"], stored["offsets"], stored["texts"])


def manifest_corpus(train_path: Path | str, val_path: Optional[Path | str],
                    limit_seconds: Optional[float] = 20.0) -> tuple[Utterances, Utterances]:
    """NeMo JSON-lines manifests (``audio_filepath``, ``duration``, ``text``), audio read with
    soundfile (wav/flac/...) and resampled to 16 kHz, features cached on disk (see the module's
    docstring). Without ``val_path`` 5% of train is held out."""
    train = _cached_manifest(Path(train_path), limit_seconds)
    if val_path is not None:
        return train, _cached_manifest(Path(val_path), limit_seconds)
    if len(train) < 2:
        raise ValueError(f"{train_path} holds {len(train)} usable utterance(s): too few to hold out "
                         "a validation split (give data.val_path)")
    n_val = max(1, math.ceil(len(train) * 0.05))
    return train[n_val:], train[:n_val]
