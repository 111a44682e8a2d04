"""QuartzNet (Kriman et al., 2020): a CTC acoustic model of 1-D time-channel separable
convolutions (depthwise over time, then pointwise over channels) in residual blocks.

The layout follows the paper's: a strided stem C1, blocks B1..Bn of R separable convs each, a
dilated separable conv C2, an optional 1×1 expansion C3, and the 1×1 classifier C4.
``QuartzNetConfig.quartznet_5x5()`` is the paper's QuartzNet 5x5: 6.1M parameters (the paper's
6.7M also count a 1×1 projection on every residual, which here only blocks that change width have).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["QuartzNetConfig", "QuartzNet"]


@dataclass(frozen=True)
class QuartzNetConfig:
    blocks: tuple[tuple[int, int], ...] = ((128, 11), (128, 13), (128, 15))  # (channels, kernel) of B1..Bn
    repeats: int = 3  # R: separable convs per block
    stem: tuple[int, int] = (128, 11)  # C1: channels, kernel (stride 2)
    head: tuple[int, int, int] = (256, 29, 1)  # C2: channels, kernel, dilation
    expand: int = 0  # C3: 1×1 conv to this many channels before the classifier; 0: no C3

    @classmethod
    def quartznet_5x5(cls) -> "QuartzNetConfig":
        """QuartzNet 5x5 as in the paper's Table 1 (NeMo's quartznet_5x5 config)."""
        return cls(blocks=((256, 33), (256, 39), (512, 51), (512, 63), (512, 75)), repeats=5,
                   stem=(256, 33), head=(512, 87, 2), expand=1024)


class SeparableConv(nn.Sequential):
    """Depthwise conv over time, pointwise conv over channels, batch norm (length kept at stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv1d(in_channels, in_channels, kernel, stride, padding=dilation * (kernel - 1) // 2,
                      dilation=dilation, groups=in_channels, bias=False),
            nn.Conv1d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm1d(out_channels),
        )


class Block(nn.Module):
    """``repeats`` separable convs with ReLU; the residual (1×1-projected where the channels
    change) joins before the last ReLU."""

    def __init__(self, in_channels: int, channels: int, kernel: int, repeats: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            SeparableConv(in_channels if i == 0 else channels, channels, kernel) for i in range(repeats)
        )
        self.residual = nn.Identity() if in_channels == channels else nn.Sequential(
            nn.Conv1d(in_channels, channels, 1, bias=False), nn.BatchNorm1d(channels)
        )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for i, conv in enumerate(self.convs):
            out = conv(out)
            if i < len(self.convs) - 1:
                out = self.relu(out)
        return self.relu(out + self.residual(x))


class QuartzNet(nn.Module):
    """Features (B × n_mels × T) → CTC log-probabilities (B × T/2 × classes); stride 2 in the stem."""

    stride = 2

    def __init__(self, n_mels: int, classes: int, config: QuartzNetConfig = QuartzNetConfig()) -> None:
        super().__init__()
        stem_channels, stem_kernel = config.stem
        self.stem = nn.Sequential(SeparableConv(n_mels, stem_channels, stem_kernel, stride=self.stride), nn.ReLU())
        blocks, channels = [], stem_channels
        for block_channels, kernel in config.blocks:
            blocks.append(Block(channels, block_channels, kernel, config.repeats))
            channels = block_channels
        self.blocks = nn.Sequential(*blocks)
        head_channels, head_kernel, dilation = config.head
        head: list[nn.Module] = [SeparableConv(channels, head_channels, head_kernel, dilation=dilation), nn.ReLU()]
        if config.expand:
            head += [nn.Conv1d(head_channels, config.expand, 1, bias=False), nn.BatchNorm1d(config.expand), nn.ReLU()]
        head.append(nn.Conv1d(config.expand or head_channels, classes, 1))
        self.head = nn.Sequential(*head)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.head(self.blocks(self.stem(features)))
        return logits.transpose(1, 2).log_softmax(dim=-1)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return (lengths + self.stride - 1) // self.stride
