"""A small QuartzNet-style CTC acoustic model (Kriman et al., 2020): 1-D time-channel separable
convolutions (depthwise over time, then pointwise over channels) with residual blocks."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["QuartzNet"]


class SeparableConv(nn.Sequential):
    """Depthwise conv over time, pointwise conv over channels, batch norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv1d(in_channels, in_channels, kernel, stride, padding=kernel // 2, groups=in_channels, bias=False),
            nn.Conv1d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm1d(out_channels),
        )


class Block(nn.Module):
    """``repeats`` separable convs with ReLU; the residual joins before the last ReLU."""

    def __init__(self, channels: int, kernel: int, repeats: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(channels, channels, kernel) for _ in range(repeats))
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for i, conv in enumerate(self.convs):
            out = conv(out)
            if i < len(self.convs) - 1:
                out = self.relu(out)
        return self.relu(out + x)


class QuartzNet(nn.Module):
    """Features (B × n_mels × T) → CTC log-probabilities (B × T/2 × classes); stride 2 in the stem."""

    stride = 2

    def __init__(self, n_mels: int, classes: int, channels: int = 128, blocks: int = 3,
                 repeats: int = 3, kernels: tuple[int, ...] = (11, 13, 15, 17, 19)) -> None:
        super().__init__()
        self.stem = nn.Sequential(SeparableConv(n_mels, channels, 11, stride=self.stride), nn.ReLU())
        self.blocks = nn.Sequential(*(Block(channels, kernels[i % len(kernels)], repeats) for i in range(blocks)))
        self.head = nn.Sequential(
            SeparableConv(channels, 2 * channels, 29), nn.ReLU(), nn.Conv1d(2 * channels, classes, 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        logits = self.head(self.blocks(self.stem(features)))
        return logits.transpose(1, 2).log_softmax(dim=-1)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return (lengths + self.stride - 1) // self.stride
