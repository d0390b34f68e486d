"""Loading a state dict into a fresh network, with one-line errors that name the keys and shapes at fault."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.slowfast import SlowFast

MAX_LISTED = 4  # keys named in one error line before "and N more"


def listing(items: list[str], limit: int = MAX_LISTED) -> str:
    """`a, b, c and 7 more`: a list cut to a readable length for one error line."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _meta_net(cfg: SlowFastConfig) -> SlowFast:
    with torch.device("meta"):  # no memory, no real initialisation
        return SlowFast(cfg)


def expected_shapes(cfg: SlowFastConfig, net: SlowFast | None = None) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of the network `cfg` builds, with its shape."""
    net = _meta_net(cfg) if net is None else net
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def compare(expected: Mapping[str, tuple], got: Mapping[str, tuple], name: Callable[[str], str] = str) -> list[str]:
    """Problems between two {key: shape} maps, as phrases (missing keys, unexpected keys, shape mismatches).

    `name` turns our key into the name the user knows (its key in the source file's layout). BatchNorm's
    `num_batches_tracked` counters may be absent: they carry no weight and are filled with zeros.
    """
    missing = [k for k in expected if k not in got and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in got if k not in expected]
    mismatched = [k for k in expected if k in got and tuple(got[k]) != tuple(expected[k])]
    problems = []
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatch(es): "
            + listing([f"{name(k)} (file {shape_str(got[k])}, model {shape_str(expected[k])})" for k in mismatched])
        )
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + listing([name(k) for k in missing]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + listing([name(k) for k in unexpected]))
    return problems


def build_with_state(cfg: SlowFastConfig, state: dict[str, torch.Tensor], what: str, name: Callable[[str], str] = str) -> SlowFast:
    """A network for `cfg` holding exactly the tensors of `state` (our layout), in eval mode.

    Built on the meta device and filled with `assign=True`, so no random initialisation runs and no second
    copy of the weights is made. Any missing, unexpected or mis-shaped entry is a one-line SlowFastError.
    """
    net = _meta_net(cfg)
    expected = expected_shapes(cfg, net)
    problems = compare(expected, {k: tuple(v.shape) for k, v in state.items()}, name)
    if problems:
        raise SlowFastError(f"{what} does not fit a {cfg.name} network: " + "; ".join(problems))
    state = dict(state)
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=torch.long)
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()
