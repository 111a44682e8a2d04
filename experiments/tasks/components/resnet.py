"""ResNets (He et al., 2016) for small images: a 3×3 stem without pooling (the CIFAR-10 stem),
stages of basic or bottleneck blocks, global average pooling and a linear classifier.

``ResNet(c, k, width=16, blocks=2)`` is a CIFAR-style ResNet of three stages of basic blocks;
``ResNet(c, k, width=64, blocks=(3, 4, 6, 3), bottleneck=True)`` is ResNet-50's ImageNet layout
(23.5M parameters for 10 classes) with the CIFAR-10 stem for 32×32 inputs.
"""

from __future__ import annotations

from typing import Sequence, Union

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ResNet"]


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a 1×1 projection where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _shortcut(in_channels, channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided, as in torchvision's ResNet v1.5), 1×1 expand to 4× ``channels``."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """``width`` channels in the first stage, doubled per stage (×4 at a bottleneck's output).

    ``blocks``: blocks per stage; an int means that many in each of three stages.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16,
                 blocks: Union[int, Sequence[int]] = 2, bottleneck: bool = False) -> None:
        super().__init__()
        per_stage = (blocks,) * 3 if isinstance(blocks, int) else tuple(blocks)
        block = Bottleneck if bottleneck else BasicBlock
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, channels = [], width
        for stage, count in enumerate(per_stage):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                stages.append(block(channels, width * 2**stage, stride))
                channels = width * 2**stage * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.stages(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))
