"""The U-Net of Ronneberger et al. (2015) in PyTorch.

Defaults are the paper's network: depth 4 (four 2x2 max-poolings), 64
channels doubling to 1024, two unpadded 3x3 convolutions + ReLU per block, 2x2
up-convolutions + ReLU halving the channels, crop-and-concatenate skip connections,
drop-out at the end of the contracting path, a 1x1 convolution to K classes:
23 convolutional layers, 572x572 in, 388x388 out, about 31.0 million weights.

This file also imports on its own, outside the unetflow package: it is the architecture
source of exported bioimage.io model packages (:class:`ProbabilityUNet`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

if __package__:  # inside unetflow; a bioimage.io package imports this file without it
    from .methods.architectures import ModelConfig


def center_crop(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The central ``size`` region of an (N, C, H, W) tensor."""
    top = (tensor.shape[-2] - size[0]) // 2
    left = (tensor.shape[-1] - size[1]) // 2
    return tensor[..., top : top + size[0], left : left + size[1]]


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional batch norm and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str, batch_norm: bool):
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1 if padding == "same" else 0))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net for K-class per-pixel classification; see :class:`ModelConfig` for the options.

    Drop-out follows the paper's Caffe model: on the last contracting block and
    on the bottleneck ("drop-out layers at the end of the contracting path").
    So does the ReLU after each up-convolution (``relu_u3a`` .. ``relu_u0a`` in the
    authors' ``phseg_v5-train.prototxt``): without it the initialisation, which
    assumes rectified inputs, doubles the variance at every level of the expansive
    path, and the untrained paper network starts with logits of standard
    deviation 5.6 instead of 1.9 (weighted loss 11 instead of 3.9 on ISBI samples).
    """

    def __init__(self, config: ModelConfig | UNetOptions | None = None):
        super().__init__()
        config = ModelConfig() if config is None else config  # the paper's network
        self.config = config
        channels = [config.base_channels * 2**level for level in range(config.depth + 1)]
        options = {"padding": config.padding, "batch_norm": config.batch_norm}
        self.down = nn.ModuleList()
        previous = config.in_channels
        for level in range(config.depth):
            self.down.append(ConvBlock(previous, channels[level], **options))
            previous = channels[level]
        self.pool = nn.MaxPool2d(2)
        self.bottom = ConvBlock(channels[-2] if config.depth else config.in_channels, channels[-1], **options)
        self.dropout = nn.Dropout(config.dropout)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2) for level in reversed(range(config.depth))
        )
        self.up = nn.ModuleList(
            ConvBlock(2 * channels[level], channels[level], **options) for level in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(channels[0], config.num_classes, 1)
        self.apply(initialise)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        features = image
        for level, block in enumerate(self.down):
            features = block(features)
            if level == self.config.depth - 1:
                features = self.dropout(features)
            skips.append(features)
            features = self.pool(features)
        features = self.dropout(self.bottom(features))
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips)):
            features = torch.relu(upsample(features))
            features = block(torch.cat([center_crop(skip, features.shape[-2:]), features], dim=1))
        return self.head(features)


class UNetOptions(NamedTuple):
    """The arguments of a U-Net (see :class:`ModelConfig`), for building one without unetflow."""

    depth: int
    base_channels: int
    padding: str
    batch_norm: bool
    dropout: float
    in_channels: int
    num_classes: int


class ProbabilityUNet(UNet):
    """The U-Net with class probabilities as its output (softmax over the class axis), built
    from keyword arguments: the network of an exported bioimage.io model package.

    Its weights are those of the :class:`UNet` with the same arguments (the same state_dict
    keys), and its output is what unetflow's prediction writes for an input tile.
    """

    def __init__(self, *, depth: int, base_channels: int, padding: str, batch_norm: bool, dropout: float,
                 in_channels: int, num_classes: int):
        super().__init__(UNetOptions(depth, base_channels, padding, batch_norm, dropout, in_channels, num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(image), dim=1)


def initialise(module: nn.Module) -> None:
    """Weights from N(0, sqrt(2/N)), N the incoming nodes of a neuron (paper); biases 0.

    For a 3x3 convolution N = 9 x input channels; for the 2x2 up-convolution
    with stride 2 each output pixel receives one tap per input channel, so
    N = input channels.
    """
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
    elif isinstance(module, nn.ConvTranspose2d):
        taps = module.kernel_size[0] * module.kernel_size[1] // (module.stride[0] * module.stride[1])
        fan_in = module.in_channels * max(taps, 1)
    else:
        return
    nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
    nn.init.zeros_(module.bias)


def count_convolutions(model: nn.Module) -> int:
    """Convolutional layers, up-convolutions included (the paper counts 23)."""
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def non_finite_tensors(model: nn.Module) -> list[str]:
    """Names of the weights and floating-point buffers holding NaN or infinity."""
    tensors = [(name, tensor) for name, tensor in model.state_dict().items() if tensor.is_floating_point()]
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in tensors]).tolist()
    return [name for (name, _), ok in zip(tensors, finite) if not ok]
