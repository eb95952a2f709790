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
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn


def center_crop(tensor: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The central ``size`` region of the last ``len(size)`` axes of a tensor, e.g. (N, C, H, W)."""
    start = [(have - want) // 2 for have, want in zip(tensor.shape[-len(size):], size)]
    return tensor[(..., *(slice(first, first + want) for first, want in zip(start, size)))]


CONVOLUTION = {2: nn.Conv2d, 3: nn.Conv3d}
UP_CONVOLUTION = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class ConvBlock(nn.Sequential):
    """Two 3x3 (3x3x3) convolutions, each followed by (optional batch norm and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str, batch_norm: bool, dims: int = 2):
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(CONVOLUTION[dims](channels, out_channels, 3, padding=1 if padding == "same" else 0))
            if batch_norm:
                layers.append(BATCH_NORM[dims](out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net for K-class per-pixel classification.

    ``config`` holds the options as attributes: a :class:`unetflow.methods.architectures.ModelConfig`
    (the one options type, with the defaults; this file does not import it, so that it also
    imports on its own in an exported package, see :class:`ProbabilityUNet`).

    Drop-out follows the paper's Caffe model: on the last contracting block and
    on the bottleneck ("drop-out layers at the end of the contracting path").
    So does the ReLU after each up-convolution (``relu_u3a`` .. ``relu_u0a`` in the
    authors' ``phseg_v5-train.prototxt``): without it the initialisation, which
    assumes rectified inputs, doubles the variance at every level of the expansive
    path, and the untrained paper network starts with logits of standard
    deviation 5.6 instead of 1.9 (weighted loss 11 instead of 3.9 on ISBI samples).
    """

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        channels = [config.base_channels * 2**level for level in range(config.depth + 1)]
        dims = config.dims
        poolings = [pooling_factors(config, level) for level in range(config.depth)]
        options = {"padding": config.padding, "batch_norm": config.batch_norm, "dims": dims}
        self.down = nn.ModuleList()
        previous = config.in_channels
        for level in range(config.depth):
            self.down.append(ConvBlock(previous, channels[level], **options))
            previous = channels[level]
        self.pools = nn.ModuleList(POOLING[dims](factors) for factors in poolings)
        self.bottom = ConvBlock(channels[-2] if config.depth else config.in_channels, channels[-1], **options)
        self.dropout = nn.Dropout(config.dropout)
        self.upsample = nn.ModuleList(
            UP_CONVOLUTION[dims](channels[level + 1], channels[level], poolings[level], stride=poolings[level])
            for level in reversed(range(config.depth))
        )
        self.up = nn.ModuleList(
            ConvBlock(2 * channels[level], channels[level], **options) for level in reversed(range(config.depth))
        )
        outputs = config.num_classes + len(getattr(config, "affinities", ()))  # classes, then affinities
        self.head = CONVOLUTION[dims](channels[0], outputs, 1)
        self.apply(initialise)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        features = image
        for level, (block, pool) in enumerate(zip(self.down, self.pools)):
            features = block(features)
            if level == self.config.depth - 1:
                features = self.dropout(features)
            skips.append(features)
            features = pool(features)
        features = self.dropout(self.bottom(features))
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips)):
            features = torch.relu(upsample(features))
            features = block(torch.cat([center_crop(skip, features.shape[2:]), features], dim=1))
        return self.head(features)


POOLING = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def pooling_factors(config: Any, level: int) -> tuple[int, ...]:
    """Pooling (and up-convolution) factors per axis at ``level``: 2 everywhere, but 1 in z for
    the first ``planar_poolings`` levels of a 3-D network (for voxels longer in z than in y/x).
    ``ModelConfig.axis_factors`` states the same rule without torch, for tile arithmetic."""
    if config.dims == 3 and level < config.planar_poolings:
        return (1, 2, 2)
    return (2,) * config.dims


class ProbabilityUNet(UNet):
    """The U-Net with probabilities as its output, built from keyword arguments: the network of
    an exported bioimage.io model package.

    Its weights are those of the :class:`UNet` with the same arguments (the same state_dict
    keys), and its output is what unetflow's prediction writes for an input tile: the class
    probabilities (softmax over the class channels), then the affinities (a sigmoid each).
    """

    def __init__(self, *, depth: int, base_channels: int, padding: str, batch_norm: bool, dropout: float,
                 in_channels: int, num_classes: int, dims: int = 2, planar_poolings: int = 0,
                 affinities: tuple = ()):
        super().__init__(SimpleNamespace(depth=depth, base_channels=base_channels, padding=padding,
                                         batch_norm=batch_norm, dropout=dropout, in_channels=in_channels,
                                         num_classes=num_classes, dims=dims, planar_poolings=planar_poolings,
                                         affinities=tuple(tuple(offset) for offset in affinities)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return probabilities_of(super().forward(image), self.config.num_classes)


def probabilities_of(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Softmax over the first ``num_classes`` channels (the classes), a sigmoid on each channel
    after them (the affinities)."""
    classes = torch.softmax(logits[:, :num_classes], dim=1)
    if logits.shape[1] == num_classes:
        return classes
    return torch.cat([classes, torch.sigmoid(logits[:, num_classes:])], dim=1)


def initialise(module: nn.Module) -> None:
    """Weights from N(0, sqrt(2/N)), N the incoming nodes of a neuron (paper); biases 0.

    For a 3x3 convolution N = 9 x input channels; for the 2x2 up-convolution
    with stride 2 each output pixel receives one tap per input channel, so
    N = input channels.
    """
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_in = module.in_channels * math.prod(module.kernel_size)
    elif isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
        taps = math.prod(module.kernel_size) // math.prod(module.stride)
        fan_in = module.in_channels * max(taps, 1)
    else:
        return
    nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
    nn.init.zeros_(module.bias)


def count_convolutions(model: nn.Module) -> int:
    """Convolutional layers, up-convolutions included (the paper counts 23)."""
    return sum(isinstance(m, (*CONVOLUTION.values(), *UP_CONVOLUTION.values())) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def non_finite_tensors(model: nn.Module) -> list[str]:
    """Names of the weights and floating-point buffers holding NaN or infinity."""
    tensors = [(name, tensor) for name, tensor in model.state_dict().items() if tensor.is_floating_point()]
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in tensors]).tolist()
    return [name for (name, _), ok in zip(tensors, finite) if not ok]
