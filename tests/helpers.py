"""Test helpers shared by several test files."""
from __future__ import annotations

import torch
from torch import nn


def randomize_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics, and the classifier real weights.

    Freshly built nets have zero-initialised residual BNs and a tiny classifier, so their outputs are
    nearly constant; comparisons on them would prove little.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.4 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 4 / m.in_features**0.5)
    return net
