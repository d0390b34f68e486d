"""Composable building blocks of the two pathways: stem, bottleneck, residual stage, non-local block."""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def bn3d(channels: int, zero_init: bool = False) -> nn.BatchNorm3d:
    """BatchNorm3d as the reference models use it; `zero_init` starts the residual branch at identity."""
    bn = nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    nn.init.constant_(bn.weight, 0.0 if zero_init else 1.0)
    nn.init.zeros_(bn.bias)
    return bn


def conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride=(1, 1, 1), bias: bool = False, dilation=(1, 1, 1)) -> nn.Conv3d:
    """A Conv3d with 'same' padding for odd kernels (dilation-aware) and He (fan-out) initialisation."""
    padding = tuple(d * (k // 2) for k, d in zip(kernel, dilation))
    conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=bias, dilation=dilation)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class Stem(nn.Module):
    """conv1 (kt x 7 x 7, spatial stride 2) + BN + ReLU, then pool1 (1 x 3 x 3 max, spatial stride 2)."""

    def __init__(self, cin: int, cout: int, temporal_kernel: int, spatial_stride: int = 2, pool: bool = True):
        super().__init__()
        self.conv = conv3d(cin, cout, (temporal_kernel, 7, 7), stride=(1, spatial_stride, spatial_stride))
        self.bn = bn3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class Bottleneck(nn.Module):
    """ResNet bottleneck: conv_a (kt x 1 x 1) -> conv_b (1 x 3 x 3, spatial stride) -> conv_c (1 x 1 x 1), plus shortcut.

    Only conv_a is temporal (Table 1); nothing is strided in time. A 1x1x1 projection shortcut is used
    when the width or the spatial size changes.
    """

    def __init__(self, cin: int, inner: int, cout: int, temporal_kernel: int, spatial_stride: int = 1, dilation: int = 1):
        super().__init__()
        s = spatial_stride
        self.shortcut = None
        if cin != cout or s != 1:
            self.shortcut = nn.Sequential()
            self.shortcut.add_module("conv", conv3d(cin, cout, (1, 1, 1), stride=(1, s, s)))
            self.shortcut.add_module("bn", bn3d(cout))
        self.conv_a = conv3d(cin, inner, (temporal_kernel, 1, 1))
        self.bn_a = bn3d(inner)
        self.conv_b = conv3d(inner, inner, (1, 3, 3), stride=(1, s, s), dilation=(1, dilation, dilation))
        self.bn_b = bn3d(inner)
        self.conv_c = conv3d(inner, cout, (1, 1, 1))
        self.bn_c = bn3d(cout, zero_init=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + identity)


class NonLocal(nn.Module):
    """Non-local block (Wang et al. 2018) as PySlowFast builds it (the SlowFast appendix uses the first form).

    theta/phi/g are 1x1x1 convs to half the channels; phi and g see a max-pooled input (`pool`, 1x2x2 by
    default). `instantiation="dot_product"` scales the affinity by 1/N (N = pooled positions); "softmax"
    takes a softmax over the pooled positions of the affinity scaled by 1/sqrt(inner). `group` > 1 splits
    time into that many groups attended separately. The output conv is followed by a zero-initialised
    BatchNorm, so the block starts as the identity.
    """

    def __init__(
        self,
        channels: int,
        inner: int | None = None,
        pool: tuple[int, int, int] = (1, 2, 2),
        instantiation: str = "dot_product",
        group: int = 1,
    ):
        super().__init__()
        inner = inner or channels // 2
        self.inner, self.instantiation, self.group = inner, instantiation, group
        self.theta = conv3d(channels, inner, (1, 1, 1), bias=True)
        self.phi = conv3d(channels, inner, (1, 1, 1), bias=True)
        self.g = conv3d(channels, inner, (1, 1, 1), bias=True)
        self.pool = nn.MaxPool3d(tuple(pool), stride=tuple(pool)) if any(p > 1 for p in pool) else nn.Identity()
        self.out = conv3d(inner, channels, (1, 1, 1), bias=True)
        self.bn = bn3d(channels, zero_init=True)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The block on one group: x + BN(out(attention(theta, phi, g)))."""
        n, _, t, h, w = x.shape
        theta = self.theta(x).flatten(2)  # N, Ci, THW
        pooled = self.pool(x)
        phi = self.phi(pooled).flatten(2)  # N, Ci, P
        g = self.g(pooled).flatten(2)  # N, Ci, P
        affinity = torch.bmm(theta.transpose(1, 2), phi)  # N, THW, P
        if self.instantiation == "softmax":
            affinity = torch.softmax(affinity * self.inner**-0.5, dim=-1)
        else:
            affinity = affinity / phi.shape[-1]
        y = torch.bmm(g, affinity.transpose(1, 2))  # N, Ci, THW
        y = y.reshape(n, self.inner, t, h, w)
        return x + self.bn(self.out(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group == 1:
            return self.attend(x)
        n, c, t, h, w = x.shape
        folded = x.reshape(n, c, self.group, t // self.group, h, w).transpose(1, 2).reshape(n * self.group, c, t // self.group, h, w)
        y = self.attend(folded)
        return y.reshape(n, self.group, c, t // self.group, h, w).transpose(1, 2).reshape(n, c, t, h, w)


class ResStage(nn.Module):
    """A residual stage: `len(temporal_kernels)` bottlenecks, the first one strided, optional non-local blocks.

    A non-local block follows each block whose index is in `nonlocal_after`; `nonlocal_options` are NonLocal's
    pool, instantiation and group.
    """

    def __init__(
        self,
        cin: int,
        inner: int,
        cout: int,
        temporal_kernels: list[int],
        spatial_stride: int,
        nonlocal_after: tuple[int, ...] = (),
        dilation: int = 1,
        nonlocal_options: dict | None = None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            Bottleneck(cin if i == 0 else cout, inner, cout, kt, spatial_stride if i == 0 else 1, dilation)
            for i, kt in enumerate(temporal_kernels)
        )
        self.nonlocals = nn.ModuleDict({str(i): NonLocal(cout, **(nonlocal_options or {})) for i in sorted(nonlocal_after)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            key = str(i)
            if key in self.nonlocals:
                x = self.nonlocals[key](x)
        return x
