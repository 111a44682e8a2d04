"""The data readers on small data written here: CIFAR-10 python batches, ImageFolder trees,
WikiText-style text, NeMo manifests with real WAV files; the log-mel front end, resampling and
eSpeak NG; the built-in corpora (sizes, splits, the ASR feature cache).

The ``write_*`` helpers are also used by ``test_tasks.py`` to train on the same files.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from experiments.data import images, speech, text
from experiments.data.espeak import speaker
from tests.experiments.support import REPO, subprocess_env

# --------------------------------------------------------------------------------------------
# Writers of real-format data
# --------------------------------------------------------------------------------------------


def write_cifar10(root: Path, sizes: tuple[int, ...] = (12, 8), n_test: int = 6, seed: int = 0) -> dict:
    """``data_batch_<i>`` (one per entry of ``sizes``) and ``test_batch`` as CIFAR-10's python
    version writes them; returns the raw arrays (uint8 N×3072, label lists) by file name."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, len(sizes) + 1)] + ["test_batch"]
    for name, n in zip(names, [*sizes, n_test]):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(root / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
        written[name] = (data, labels)
    return written


# One colour per class: after per-channel normalisation an image's brightest channel names its class.
CLASS_COLOURS = {"cat": (0, 0, 230), "ant": (230, 0, 0), "bee": (0, 230, 0)}


def write_image_folder(root: Path, per_class: Optional[dict[str, int]] = None, size: int = 8) -> None:
    """``root/{train,val}/<class>/*.png``: 8×8 RGB images, noisy but dominated by the class colour."""
    from PIL import Image

    per_class = per_class or {"train": 4, "val": 2}
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for name, colour in CLASS_COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.integers(0, 25, size=(size, size, 3)), 0, 255)
                # Mixed-case suffixes are images too.
                Image.fromarray(pixels.astype(np.uint8), "RGB").save(folder / f"{i}.{'PNG' if i == 0 else 'png'}")
            (folder / "notes.txt").write_text("not an image")


TRAIN_TEXT = "Zürich — the naïve café serves crème brûlée.\n" * 120  # ~5.8 kB, non-ASCII included
VALID_TEXT = "Ångström units: 1 Å = 0.1 nm; π ≈ 3.14159.\n" * 12


def write_text_dir(root: Path, style: str) -> tuple[str, str]:
    """WikiText-style ``wiki.{train,valid,test}.tokens`` or ``train.txt``/``valid.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    names = ("wiki.train.tokens", "wiki.valid.tokens") if style == "wikitext" else ("train.txt", "valid.txt")
    (root / names[0]).write_text(TRAIN_TEXT, encoding="utf-8")
    (root / names[1]).write_text(VALID_TEXT, encoding="utf-8")
    if style == "wikitext":
        (root / "wiki.test.tokens").write_text("never read", encoding="utf-8")
    return TRAIN_TEXT, VALID_TEXT


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.4) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def write_manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return path


def speech_files(root: Path) -> dict[str, tuple[Path, float]]:
    """Three short WAV files: 8 kHz mono, 22.05 kHz mono, 16 kHz stereo. name → (path, seconds)."""
    files = {
        "low": (write_wav(root / "audio" / "low.wav", tone(300, 1.0, 8_000), 8_000), 1.0),
        "high": (write_wav(root / "audio" / "high.wav", tone(1_000, 0.5, 22_050), 22_050), 0.5),
        "stereo": (write_wav(root / "audio" / "stereo.wav", np.stack([tone(500, 0.8, 16_000)] * 2, axis=1), 16_000), 0.8),
    }
    return files


def write_speech_manifests(root: Path, n_train: int = 6, n_val: int = 3) -> tuple[Path, Path]:
    """``train.json`` and ``val.json`` over the three WAV files, relative and absolute paths mixed."""
    files = speech_files(root)
    names = list(files)
    texts = ["one two", "three", "four five six"]

    def entries(count: int) -> list[dict]:
        out = []
        for i in range(count):
            name = names[i % 3]
            path, seconds = files[name]
            audio = str(path.relative_to(root)) if i % 2 == 0 else str(path.resolve())
            out.append({"audio_filepath": audio, "duration": seconds, "text": texts[i % 3]})
        return out

    return write_manifest(root / "train.json", entries(n_train)), write_manifest(root / "val.json", entries(n_val))


def frames(seconds: float) -> int:
    """log_mel frames of ``seconds`` of 16 kHz audio: 10 ms hop, centred windows."""
    return 1 + int(round(seconds * speech.SAMPLE_RATE)) // (speech.SAMPLE_RATE // 100)


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------


def test_cifar10_reads_python_batches(tmp_path):
    """All data_batch_* for training, test_batch for validation: N×3×32×32 float images in the
    pickled order, labels as given, normalised per channel with the training statistics."""
    written = write_cifar10(tmp_path)
    (train_x, train_y), (val_x, val_y) = images.cifar10(tmp_path)

    raw_train = np.concatenate([written["data_batch_1"][0], written["data_batch_2"][0]])
    raw_val = written["test_batch"][0]
    assert train_x.shape == (20, 3, 32, 32) and val_x.shape == (6, 3, 32, 32)
    assert train_x.dtype == val_x.dtype == torch.float32
    assert train_y.dtype == val_y.dtype == torch.int64
    assert train_y.tolist() == written["data_batch_1"][1] + written["data_batch_2"][1]
    assert val_y.tolist() == written["test_batch"][1]

    # Rows of 3072 bytes are channel-major (1024 red, 1024 green, 1024 blue), row-major pixels.
    train_raw = torch.tensor(raw_train, dtype=torch.float32).view(-1, 3, 32, 32) / 255
    mean = train_raw.mean(dim=(0, 2, 3), keepdim=True)
    std = train_raw.std(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(train_x, (train_raw - mean) / std)
    val_raw = torch.tensor(raw_val, dtype=torch.float32).view(-1, 3, 32, 32) / 255
    torch.testing.assert_close(val_x, (val_raw - mean) / std)
    torch.testing.assert_close(train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("present", [(), ("data_batch_1",), ("test_batch",)])
def test_cifar10_without_its_batches_names_the_directory(tmp_path, present):
    """A directory lacking data_batch_* or test_batch: FileNotFoundError naming the directory."""
    write_cifar10(tmp_path / "full", sizes=(4,), n_test=2)
    root = tmp_path / "partial"
    root.mkdir()
    for name in present:
        (root / name).write_bytes((tmp_path / "full" / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="partial.*data_batch_\\* and test_batch"):
        images.cifar10(root)


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------


def test_image_folder_reads_train_and_val(tmp_path):
    """PNG files under train/<class>/ and val/<class>/: RGB resized to 32×32, labels numbered by
    sorted class name (ant=0, bee=1, cat=2), non-image files ignored, mixed-case suffixes read."""
    write_image_folder(tmp_path)
    (train_x, train_y), (val_x, val_y) = images.image_folder(tmp_path)

    assert train_x.shape == (12, 3, 32, 32) and val_x.shape == (6, 3, 32, 32)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert val_y.tolist() == [0] * 2 + [1] * 2 + [2] * 2
    # ant is red, bee green, cat blue: the label is the brightest normalised channel.
    for x, y in ((train_x, train_y), (val_x, val_y)):
        assert x.mean(dim=(2, 3)).argmax(dim=1).tolist() == y.tolist()
    torch.testing.assert_close(train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_image_folder_size_option(tmp_path):
    write_image_folder(tmp_path, {"train": 1, "val": 1})
    (train_x, _), (val_x, _) = images.image_folder(tmp_path, size=12)
    assert train_x.shape == val_x.shape == (3, 3, 12, 12)


@pytest.mark.parametrize("missing", ["train", "val"])
def test_image_folder_without_a_split_names_it(tmp_path, missing):
    write_image_folder(tmp_path, {"train": 1, "val": 1})
    shutil.rmtree(tmp_path / missing)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / missing} is missing"):
        images.image_folder(tmp_path)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def utf8(value: str) -> list[int]:
    return list(value.encode("utf-8"))


@pytest.mark.parametrize("style", ["wikitext", "txt"])
def test_text_files_are_utf8_bytes(tmp_path, style):
    """Both layouts read to uint8 tensors of exactly the files' UTF-8 bytes (multi-byte
    characters as several tokens); WikiText's test split is not read."""
    train_text, valid_text = write_text_dir(tmp_path, style)
    train, valid = text.text_files(tmp_path)
    assert train.dtype == valid.dtype == torch.uint8
    assert train.tolist() == utf8(train_text) and valid.tolist() == utf8(valid_text)
    assert len(train) > len(train_text)  # non-ASCII characters take more than one byte
    assert bytes(train.tolist()).decode("utf-8") == train_text


def test_text_files_prefer_wikitext_over_txt(tmp_path):
    write_text_dir(tmp_path, "wikitext")
    (tmp_path / "train.txt").write_text("other", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("other", encoding="utf-8")
    train, valid = text.text_files(tmp_path)
    assert train.tolist() == utf8(TRAIN_TEXT) and valid.tolist() == utf8(VALID_TEXT)


@pytest.mark.parametrize("files", [(), ("train.txt",), ("wiki.train.tokens", "valid.txt")])
def test_text_files_without_a_pair_names_the_directory(tmp_path, files):
    """No complete (train, valid) pair of one layout: FileNotFoundError naming the directory."""
    for name in files:
        (tmp_path / name).write_text("text", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} holds neither"):
        text.text_files(tmp_path)


def test_text_files_empty_split_is_named(tmp_path):
    """An empty split file is an error naming the file (an empty tensor would fail later, unnamed)."""
    (tmp_path / "train.txt").write_text(TRAIN_TEXT, encoding="utf-8")
    (tmp_path / "valid.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"valid\.txt: empty"):
        text.text_files(tmp_path)


# --------------------------------------------------------------------------------------------
# NeMo manifests
# --------------------------------------------------------------------------------------------


def test_manifest_corpus_reads_audio_at_any_rate(tmp_path):
    """Relative (to the manifest) and absolute paths, 8/16/22.05 kHz, mono and stereo: each line
    gives (64 × frames float16 log-mel, text) with ~100 frames per second of audio; a stereo
    file with equal channels gives the features of its mono signal."""
    train_path, val_path = write_speech_manifests(tmp_path)
    train, val = speech.manifest_corpus(train_path, val_path)
    lines = [json.loads(line) for line in train_path.read_text().splitlines()]
    assert [t for _, t in train] == [line["text"] for line in lines]
    assert [t for _, t in val] == ["one two", "three", "four five six"]
    assert any(Path(line["audio_filepath"]).is_absolute() for line in lines)
    assert any(not Path(line["audio_filepath"]).is_absolute() for line in lines)
    for (features, _), line in zip(train, lines):
        assert features.dtype == torch.float16
        assert features.shape == (speech.N_MELS, frames(line["duration"]))
        assert torch.isfinite(features).all()
    import soundfile

    left = soundfile.read(tmp_path / "audio" / "stereo.wav", dtype="float32", always_2d=True)[0][:, 0]
    assert torch.equal(train[2][0], speech.log_mel(torch.from_numpy(left)).half())


def test_manifest_features_are_decoded_once_and_cached(tmp_path, monkeypatch):
    """The second load of a manifest reads its features from $OPTBENCH_CACHE: it succeeds with
    the audio gone and gives the same features; rewriting the manifest (a new modification time)
    decodes it again, and then the missing audio is named."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    train_path, val_path = write_speech_manifests(tmp_path / "speech")
    first = speech.manifest_corpus(train_path, val_path)
    assert len(list((tmp_path / "cache").glob("asr-manifest-*.pt"))) == 2  # train and validation
    for audio in (tmp_path / "speech" / "audio").iterdir():
        audio.unlink()
    second = speech.manifest_corpus(train_path, val_path)
    for split, again in zip(first, second):
        assert len(split) == len(again) > 0
        for (x, text), (x2, text2) in zip(split, again):
            assert text == text2 and torch.equal(x, x2)
    os.utime(train_path, ns=(train_path.stat().st_atime_ns, train_path.stat().st_mtime_ns + 10**9))
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        speech.manifest_corpus(train_path, val_path)


def test_feature_corpus_items_and_slices_are_the_utterances():
    """A FeatureCorpus holds its utterances in one tensor: item i is utterance i (features and
    text), a slice is the corpus of those items, negative indices count from the end."""
    utterances = [(torch.randn(speech.N_MELS, n).half(), f"u{n}") for n in (3, 5, 1, 4)]
    corpus = speech.FeatureCorpus.of(utterances)
    assert corpus.frames.shape == (13, speech.N_MELS)
    for (x, text), (x2, text2) in zip(corpus, utterances):
        assert text == text2 and torch.equal(x, x2)
    assert [t for _, t in corpus[1:3]] == ["u5", "u1"] and torch.equal(corpus[1:3][1][0], utterances[2][0])
    assert corpus[-1][1] == "u4" and len(corpus[4:]) == 0
    with pytest.raises(IndexError):
        corpus[4]


@pytest.mark.parametrize("n_lines,n_val", [(20, 1), (21, 2), (40, 2)])
def test_manifest_without_val_path_holds_out_five_percent(tmp_path, n_lines, n_val):
    """Without a validation manifest the first ceil(5%) utterances are held out, in order."""
    files = speech_files(tmp_path)
    path, seconds = files["stereo"]
    write_manifest(tmp_path / "m.json", [
        {"audio_filepath": str(path), "duration": seconds, "text": f"utterance {i}"} for i in range(n_lines)
    ])
    train, val = speech.manifest_corpus(tmp_path / "m.json", None)
    assert [t for _, t in val] == [f"utterance {i}" for i in range(n_val)]
    assert [t for _, t in train] == [f"utterance {i}" for i in range(n_val, n_lines)]


def test_manifest_without_val_path_keeps_training_data(tmp_path):
    """Holding out 5% never leaves the training split empty (or it says so clearly)."""
    path, seconds = speech_files(tmp_path)["low"]
    write_manifest(tmp_path / "m.json", [{"audio_filepath": str(path), "duration": seconds, "text": "one"}])
    try:
        train, _ = speech.manifest_corpus(tmp_path / "m.json", None)
    except ValueError as error:
        assert "m.json" in str(error)
    else:
        assert len(train) >= 1, "every utterance was held out for validation"


def test_manifest_skips_long_utterances_and_blank_lines(tmp_path):
    """Entries whose ``duration`` is over ``limit_seconds`` (default 20 s) are skipped; blank
    lines too; nothing left is an error."""
    path, seconds = speech_files(tmp_path)["low"]
    lines = [json.dumps({"audio_filepath": str(path), "duration": seconds, "text": "kept"}), "",
             json.dumps({"audio_filepath": str(path), "duration": 25.0, "text": "too long"}), "   "]
    (tmp_path / "m.json").write_text("\n".join(lines) + "\n")
    train, val = speech.manifest_corpus(tmp_path / "m.json", tmp_path / "m.json")
    assert [t for _, t in train] == [t for _, t in val] == ["kept"]
    with pytest.raises(ValueError, match="holds no usable utterances"):
        speech.manifest_corpus(tmp_path / "m.json", None, limit_seconds=0.5)


@pytest.mark.parametrize("bad_line", ["{not json", '{"audio_filepath": "audio/low.wav", "duration": 1.0}',
                                      '{"text": "no audio"}'])
def test_malformed_manifest_line_names_file_and_line(tmp_path, bad_line):
    train_path, _ = write_speech_manifests(tmp_path, n_train=2)
    train_path.write_text(train_path.read_text() + bad_line + "\n")
    with pytest.raises(ValueError, match=f"{train_path}:3: not a NeMo manifest line"):
        speech.manifest_corpus(train_path, None)


@pytest.mark.parametrize("bad_line", ["[1, 2]", "42", '{"audio_filepath": null, "text": "x"}'])
def test_non_object_manifest_line_names_file_and_line(tmp_path, bad_line):
    train_path, _ = write_speech_manifests(tmp_path, n_train=2)
    train_path.write_text(train_path.read_text() + bad_line + "\n")
    with pytest.raises(ValueError, match=f"{train_path}:3"):
        speech.manifest_corpus(train_path, None)


# --------------------------------------------------------------------------------------------
# Log-mel front end, resampling, CTC text
# --------------------------------------------------------------------------------------------


def mel_band_edges(n_mels: int = speech.N_MELS, rate: int = speech.SAMPLE_RATE) -> np.ndarray:
    """HTK mel scale, computed here independently: filter k spans edges[k] .. edges[k+2]."""
    mel = 2595.0 * np.log10(1.0 + (rate / 2) / 700.0)
    return 700.0 * (10.0 ** (np.linspace(0.0, mel, n_mels + 2) / 2595.0) - 1.0)


@pytest.mark.parametrize("seconds", [0.25, 1.0, 1.37])
def test_log_mel_shape_and_per_row_normalisation(seconds):
    """(64, 1 + samples // 160) for 16 kHz audio; every mel row has zero mean and unit std."""
    wave = torch.randn(int(seconds * speech.SAMPLE_RATE), generator=torch.Generator().manual_seed(0))
    features = speech.log_mel(wave)
    assert features.shape == (64, frames(seconds))
    torch.testing.assert_close(features.mean(dim=1), torch.zeros(64), atol=1e-4, rtol=0)
    torch.testing.assert_close(features.std(dim=1), torch.ones(64), atol=1e-3, rtol=0)


def test_log_mel_at_another_sample_rate_keeps_a_10ms_hop():
    wave = torch.randn(8_000, generator=torch.Generator().manual_seed(1))  # 1 s at 8 kHz
    assert speech.log_mel(wave, sample_rate=8_000).shape == (64, 101)
    assert speech.log_mel(wave, n_mels=40).shape[0] == 40


def test_log_mel_rows_follow_the_mel_scale():
    """An exponential sweep 100 Hz → 7.5 kHz over 3 s: each mel row (from the third up) is at its
    maximum while the sweep's frequency lies inside that row's triangular filter, so a higher
    tone peaks in a higher row. (Per-row normalisation keeps each row's argmax over time.)"""
    rate, seconds, f0, f1 = speech.SAMPLE_RATE, 3.0, 100.0, 7_500.0
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    k = math.log(f1 / f0) / seconds
    sweep = torch.sin(2 * math.pi * f0 * (torch.exp(k * t) - 1) / k).float()
    peak_frame = speech.log_mel(sweep).argmax(dim=1).numpy()
    frequency_at_peak = f0 * np.exp(k * peak_frame * 0.010)
    edges = mel_band_edges()
    rows = range(2, 64)  # the lowest two filters are narrower than the 25 ms window resolves
    inside = [bool(edges[r] <= frequency_at_peak[r] <= edges[r + 2]) for r in rows]
    assert all(inside), [r for r, ok in zip(rows, inside) if not ok]
    assert np.all(np.diff(peak_frame) >= 0)


@pytest.mark.parametrize("low,high", [(300.0, 1_000.0), (1_000.0, 2_500.0), (2_500.0, 6_000.0)])
def test_tone_energy_lands_in_the_mel_filter_containing_it(low, high):
    """A steady tone's power spectrum (log_mel's STFT) through the filterbank peaks in the filter
    whose centre is nearest the tone; the higher tone's peak filter is higher."""
    edges = mel_band_edges()
    filterbank = speech._mel_filterbank(512, speech.N_MELS, speech.SAMPLE_RATE)
    peaks = []
    for freq in (low, high):
        wave = torch.from_numpy(tone(freq, 0.5, speech.SAMPLE_RATE))
        spectrum = torch.stft(wave, 512, hop_length=160, win_length=400, window=torch.hann_window(400),
                              center=True, return_complex=True).abs().square()
        peak = int((filterbank.T @ spectrum).mean(dim=1).argmax())
        assert peak == int(np.abs(edges[1:-1] - freq).argmin())
        assert edges[peak] <= freq <= edges[peak + 2]
        peaks.append(peak)
    assert peaks[0] < peaks[1]


def dominant_frequency(wave: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave.double() * torch.hann_window(len(wave), dtype=torch.float64)).abs()
    return float(spectrum.argmax()) * rate / len(wave)


@pytest.mark.parametrize("orig,new", [(22_050, 16_000), (8_000, 16_000), (44_100, 16_000)])
def test_resample_keeps_frequency_and_duration(orig, new):
    """A 1 kHz sine stays at 1 kHz (FFT peak within one bin), the length scales by new/orig and
    the level is kept (RMS within 10%: linear interpolation damps a little when upsampling)."""
    wave = torch.from_numpy(tone(1_000, 1.0, orig, amplitude=0.5))
    out = speech.resample(wave, orig, new)
    assert len(out) == round(len(wave) * new / orig)
    assert abs(dominant_frequency(out, new) - 1_000) <= new / len(out)
    rms = float(out[100:-100].square().mean().sqrt())
    assert abs(rms - 0.5 / math.sqrt(2)) < 0.1 * 0.5 / math.sqrt(2)


def test_resample_low_passes_before_decimating():
    """A 10 kHz tone (above the new 8 kHz Nyquist) is removed, not aliased to 6 kHz."""
    out = speech.resample(torch.from_numpy(tone(10_000, 1.0, 22_050, amplitude=0.5)), 22_050, 16_000)
    assert float(out[200:-200].std()) < 0.01


def test_resample_same_rate_is_identity():
    wave = torch.randn(100)
    assert speech.resample(wave, 16_000, 16_000) is wave


@pytest.mark.parametrize("transcript", ["hello world", "it's nine o'clock", "zero one two"])
def test_ctc_text_round_trip(transcript):
    labels = speech.encode_text(transcript)
    assert labels.dtype == torch.int64 and labels.min() >= 1  # 0 is the CTC blank
    assert labels.max() <= len(speech.VOCABULARY)
    assert speech.decode_tokens(labels.tolist()) == transcript


def test_encode_text_lowercases_and_drops_other_characters():
    assert speech.decode_tokens(speech.encode_text("Hello, World! 42").tolist()) == "hello world "
    assert speech.decode_tokens([0, 9, 0, 10, 0]) == "hi"  # blanks are dropped


# --------------------------------------------------------------------------------------------
# eSpeak NG
# --------------------------------------------------------------------------------------------


def test_espeak_says_hello_world():
    voice = speaker()
    assert voice is speaker()  # one instance per process
    assert voice.sample_rate == 22_050
    audio = voice.say("hello world")
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.3 < len(audio) / voice.sample_rate < 3.0
    assert np.abs(audio).max() > 1_000  # audible, not silence
    slow = voice.say("hello world", rate=100)
    assert len(slow) > len(audio)


def test_espeak_unknown_voice_names_it_and_recovers():
    with pytest.raises(ValueError, match="no voice 'no-such-voice'"):
        speaker().say("hello", voice="no-such-voice")
    assert len(speaker().say("hello", voice="en-us")) > 0


# --------------------------------------------------------------------------------------------
# Built-in corpora
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_builtin_digit_corpus_is_synthesised_once_and_cached(tmp_path, monkeypatch):
    """The tiny ASR corpus: 300 + 60 utterances of one to three digit words, synthesised on the
    first call into one asr-digits-*.pt file under $OPTBENCH_CACHE and read back unchanged."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("OPTBENCH_CACHE", str(cache))
    train, val = speech.builtin_corpus(tiny=True)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("asr-digits-") and files[0].name.endswith("-frames.pt")
    stamp = files[0].stat().st_mtime_ns

    assert len(train) == 300 and len(val) == 60
    for features, transcript in [*train, *val]:
        assert features.dtype == torch.float16 and features.shape[0] == speech.N_MELS
        assert features.shape[1] > 20  # at least 0.2 s of speech
        words = transcript.split(" ")
        assert 1 <= len(words) <= 3 and set(words) <= set(speech.DIGITS)

    again_train, again_val = speech.builtin_corpus(tiny=True)
    assert list(cache.iterdir()) == files and files[0].stat().st_mtime_ns == stamp  # not re-synthesised
    for (x, y), (x2, y2) in zip([*train, *val], [*again_train, *again_val]):
        assert y == y2 and torch.equal(x, x2)
    assert len(again_train) == 300 and len(again_val) == 60


def test_builtin_corpus_reads_the_older_cache_layout_once_and_stores_it_as_one_tensor(tmp_path, monkeypatch):
    """A cache file of the older layout (a tensor per utterance) is read instead of synthesising
    again, stored as the one-tensor ``-frames`` file and left in place for older versions; later
    calls read the new file (with synthesis switched off, they still get the same numbers)."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(speech, "_synthesise", lambda kind, n, seed, split: [
        (torch.full((speech.N_MELS, 3 + i % 5), float(i)).half(), f"u{i}") for i in range(n)])
    speech.builtin_corpus(tiny=True)
    (new,) = tmp_path.iterdir()
    older = new.with_name(new.name.replace("-frames", ""))
    old = {"train_x": [torch.arange(speech.N_MELS * 4.0).reshape(speech.N_MELS, 4).half()], "train_y": ["seven"],
           "val_x": [torch.ones(speech.N_MELS, 2).half()], "val_y": ["one"]}
    torch.save(old, older)
    new.unlink()
    train, val = speech.builtin_corpus(tiny=True)
    assert new.is_file() and older.is_file()
    assert [text for _, text in train] == ["seven"] and [text for _, text in val] == ["one"]
    assert torch.equal(train[0][0], old["train_x"][0]) and torch.equal(val[0][0], old["val_x"][0])
    monkeypatch.setattr(speech, "_synthesise", None)
    again, _ = speech.builtin_corpus(tiny=True)
    assert torch.equal(again[0][0], old["train_x"][0])


def test_the_digits_are_cached_and_read_back_without_scikit_learn(tmp_path, monkeypatch):
    """The first call reads scikit-learn's digits and caches them in $OPTBENCH_CACHE/digits.pt;
    later processes read the same numbers from there and never import scikit-learn (nor the
    pandas it loads): that import takes longer than a tiny run trains."""
    from sklearn.datasets import load_digits

    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))
    raw, labels = images.sklearn_digits()
    reference = load_digits()
    assert [p.name for p in tmp_path.iterdir()] == ["digits.pt"]
    assert raw.dtype == torch.uint8 and torch.equal(raw.double(), torch.from_numpy(reference.images))
    assert torch.equal(labels, torch.from_numpy(reference.target).long())
    program = ("import sys, torch; from experiments.data.images import builtin_digits, sklearn_digits; "
               "images, labels = sklearn_digits(); builtin_digits(tiny=True); "
               "print(sorted(m for m in ('sklearn', 'pandas') if m in sys.modules), int(images.sum()), int(labels.sum()))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**subprocess_env(), "OPTBENCH_CACHE": str(tmp_path)})
    assert result.stdout.split() == ["[]", str(int(raw.sum())), str(int(labels.sum()))], result.stderr


def test_builtin_digits_sizes_and_split():
    """scikit-learn's 1,797 digits at 16×16: 359 held out (20%), 1,438 for training, 400 when
    tiny; the same held-out set at both sizes, disjoint from training, all ten classes."""
    (train_x, train_y), (val_x, val_y) = images.builtin_digits(tiny=False)
    (tiny_x, tiny_y), (tiny_val_x, tiny_val_y) = images.builtin_digits(tiny=True)
    assert train_x.shape == (1438, 1, 16, 16) and val_x.shape == (359, 1, 16, 16)
    assert tiny_x.shape == (400, 1, 16, 16) and tiny_val_x.shape == (359, 1, 16, 16)
    assert torch.equal(tiny_val_y, val_y)
    assert set(train_y.tolist()) == set(val_y.tolist()) == set(tiny_y.tolist()) == set(range(10))
    torch.testing.assert_close(train_x.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_x.std(), torch.tensor(1.0), atol=1e-4, rtol=0)
    # The 1,797 source images are distinct: a shared image would be a shared sample.
    flat_train, flat_val = train_x.flatten(1), val_x.flatten(1)
    assert torch.cdist(flat_val, flat_train).min() > 1e-3
    other_seed = images.builtin_digits(tiny=False, seed=1)[1][1]
    assert not torch.equal(other_seed, val_y)


def test_builtin_pydoc_sizes_and_split():
    """Python's help() topics as bytes: the first 90% train, the last 10% validation (together
    the whole text, no overlap); tiny keeps the first 60 kB and 20 kB of them."""
    from pydoc_data.topics import topics

    full = "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    train, val = text.builtin_pydoc(tiny=False)
    tiny_train, tiny_val = text.builtin_pydoc(tiny=True)
    assert len(train) == int(len(full) * 0.9) and len(train) + len(val) == len(full)
    assert bytes(torch.cat([train, val]).tolist()) == full
    assert len(tiny_train) == 60_000 and len(tiny_val) == 20_000
    assert len(tiny_train) < len(train) and len(tiny_val) < len(val)
    assert torch.equal(tiny_train, train[:60_000]) and torch.equal(tiny_val, val[:20_000])
    assert train.dtype == torch.uint8


def test_manifest_with_missing_audio_names_the_file(tmp_path):
    train_path, _ = write_speech_manifests(tmp_path, n_train=2)
    train_path.write_text(train_path.read_text()
                          + json.dumps({"audio_filepath": "audio/missing.wav", "duration": 1.0, "text": "x"}) + "\n")
    with pytest.raises((OSError, ValueError), match="missing.wav"):
        speech.manifest_corpus(train_path, None)


def test_manifest_with_a_very_short_clip_reads_it(tmp_path):
    """A 5 ms clip (shorter than one FFT window) is padded and read: a few frames of 64 mels."""
    path = write_wav(tmp_path / "click.wav", tone(1_000, 0.005, 16_000), 16_000)
    write_manifest(tmp_path / "m.json", [{"audio_filepath": str(path), "duration": 0.005, "text": "a"}])
    train, _ = speech.manifest_corpus(tmp_path / "m.json", tmp_path / "m.json")
    assert train[0][0].shape[0] == speech.N_MELS and train[0][0].shape[1] >= 1
