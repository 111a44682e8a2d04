"""Speech recognition: a QuartzNet-style CTC model on log-mel features; WER with greedy decoding."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from torchmetrics.text import WordErrorRate

from experiments.data import speech
from experiments.data.module import StreamDataModule
from experiments.tasks.base import TaskData, TaskModule
from experiments.tasks.components.quartznet import QuartzNet, QuartzNetConfig

__all__ = ["SpeechTask", "asr_data", "collate"]

_SIZES = {
    "tiny": QuartzNetConfig(blocks=((32, 11),), repeats=2, stem=(32, 11), head=(64, 29, 1)),
    "default": QuartzNetConfig(),
    "large": QuartzNetConfig.quartznet_5x5(),
}

# features B×F×T (zero-padded), feature lengths, labels B×L (zero-padded), label lengths
SpeechBatch = tuple[Tensor, Tensor, Tensor, Tensor]


def collate(items: list[tuple[Tensor, str]]) -> SpeechBatch:
    """Pad a list of (features, transcript) into a batch."""
    features = [x.float() for x, _ in items]
    labels = [speech.encode_text(text) for _, text in items]
    feature_lengths = torch.tensor([x.shape[1] for x in features])
    label_lengths = torch.tensor([len(y) for y in labels])
    padded = torch.zeros(len(items), features[0].shape[0], int(feature_lengths.max()))
    for i, x in enumerate(features):
        padded[i, :, : x.shape[1]] = x
    label_matrix = torch.zeros(len(items), max(1, int(label_lengths.max())), dtype=torch.int64)
    for i, y in enumerate(labels):
        label_matrix[i, : len(y)] = y
    return padded, feature_lengths, label_matrix, label_lengths


class _Utterances(Dataset):
    def __init__(self, utterances: speech.Utterances) -> None:
        self.utterances = utterances

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        return self.utterances[index]


def _spec_augment(features: Tensor, lengths: Tensor, generators: list[torch.Generator], width: int = 8) -> Tensor:
    """One random frequency band and one random time span (within the utterance, so that its draw
    does not depend on the batch's padding) zeroed per utterance (SpecAugment-lite)."""
    out = features.clone()
    bins = out.shape[1]
    for i, (generator, frames) in enumerate(zip(generators, lengths.tolist())):
        f0 = int(torch.randint(0, max(1, bins - width), (), generator=generator))
        t0 = int(torch.randint(0, max(1, frames - 2 * width), (), generator=generator))
        out[i, f0 : f0 + width, :] = 0
        out[i, :, t0 : t0 + 2 * width] = 0
    return out


def asr_data(config: DictConfig) -> TaskData:
    """Log-mel features of whole utterances with their transcripts; SpecAugment-lite on the
    training batches of sizes above tiny."""
    if config.data.source == "builtin":
        train, val = speech.builtin_corpus(tiny=config.size == "tiny")
    else:  # manifest
        train, val = speech.manifest_corpus(config.data.path, config.data.val_path)
    augment = config.size != "tiny"

    def make_batch(indices: Tensor, generators: list[torch.Generator]) -> SpeechBatch:
        features, feature_lengths, labels, label_lengths = collate([train[i] for i in indices.tolist()])
        if augment:
            features = _spec_augment(features, feature_lengths, generators)
        return features, feature_lengths, labels, label_lengths

    module = StreamDataModule(len(train), make_batch, _Utterances(val), config.data.batch_size, config.seed,
                              config.data.num_workers, val_collate=collate)
    return TaskData(module)


class SpeechTask(TaskModule):
    """Character-level CTC recognition; validation word error rate (lower is better) is the metric."""

    def build_model(self, size: str) -> nn.Module:
        return QuartzNet(speech.N_MELS, len(speech.VOCABULARY) + 1, _SIZES[size])

    def build_metric(self) -> WordErrorRate:
        return WordErrorRate()

    def loss(self, batch: Any) -> Tensor:
        features, feature_lengths, labels, label_lengths = batch
        log_probs = self.model(features)
        return F.ctc_loss(log_probs.transpose(0, 1).float(), labels, self.model.output_lengths(feature_lengths),
                          label_lengths, blank=0, zero_infinity=True)

    def update_metric(self, batch: Any) -> None:
        features, feature_lengths, labels, label_lengths = batch
        best = self.model(features).argmax(dim=-1).cpu()
        lengths = self.model.output_lengths(feature_lengths).cpu()
        hypotheses = []
        for path, length in zip(best.tolist(), lengths.tolist()):
            collapsed = [token for i, token in enumerate(path[:length]) if i == 0 or token != path[i - 1]]
            hypotheses.append(speech.decode_tokens(collapsed))
        references = [speech.decode_tokens(row[:n]) for row, n in zip(labels.tolist(), label_lengths.tolist())]
        self.val_metric.update(hypotheses, references)
