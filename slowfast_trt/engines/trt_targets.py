"""Which GPUs a TensorRT release builds plans for, by compute capability, and a one-layer build that asks the GPU itself.

The ranges come from NVIDIA's TensorRT support matrices and release notes: 10.0-10.4 build for Volta (7.0) and newer,
10.5 removed Volta, 10.8 added Blackwell (10.x and 12.0); 11.x is built on CUDA 13, whose range starts at Turing (7.5),
and 11.1 added compute capability 12.1. A GPU newer than a release's range is not refused here: the build decides.
"""

from __future__ import annotations

# (first TensorRT version of the row, lowest compute capability it builds for, highest it was released for)
TENSORRT_SUPPORT = (
    ((10, 0), (7, 0), (9, 0)),
    ((10, 5), (7, 5), (9, 0)),
    ((10, 8), (7, 5), (12, 0)),
    ((11, 0), (7, 5), (12, 0)),
    ((11, 1), (7, 5), (12, 1)),
)
NEWEST_KNOWN = TENSORRT_SUPPORT[-1][0]


def parse_version(text: str) -> tuple[int, int]:
    """'10.13.2.6' -> (10, 13)."""
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int(minor)


def support_range(version: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(lowest, highest) compute capability TensorRT `version` builds for; None before 10.0 (which the project does not use)."""
    rows = [r for r in TENSORRT_SUPPORT if r[0] <= version]
    return (rows[-1][1], rows[-1][2]) if rows else None


def builds_for(version: tuple[int, int], cc: tuple[int, int]) -> tuple[bool | None, str]:
    """Whether TensorRT `version` builds for compute capability `cc`: True, False, or None (newer than its known range), and why."""
    v, c = f"{version[0]}.{version[1]}", f"{cc[0]}.{cc[1]}"
    r = support_range(version)
    if r is None:
        return False, f"TensorRT {v} is older than 10.0, the oldest release this project builds with"
    (lo_major, lo_minor), (hi_major, hi_minor) = r
    if cc < r[0]:
        return False, f"TensorRT {v} builds for compute capability {lo_major}.{lo_minor} and newer, this GPU is {c}"
    if cc > r[1]:
        return None, f"this GPU ({c}) is newer than the range known for TensorRT {v} (up to {hi_major}.{hi_minor}); the build decides"
    return True, f"TensorRT {v} builds for compute capability {c} (its range: {lo_major}.{lo_minor} to {hi_major}.{hi_minor})"


def probe_build(trt) -> str | None:
    """Build a one-layer network with the `tensorrt` module on the current GPU: None when it builds, else the reason."""
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        network = builder.create_network(0)  # explicit batch on 10.x, strongly typed on 11.x: both take this
        x = network.add_input("x", trt.float32, (1, 8))
        network.mark_output(network.add_identity(x).get_output(0))
        plan = builder.build_serialized_network(network, builder.create_builder_config())
    except Exception as e:  # the bindings raise TypeError/RuntimeError for whatever the GPU or the libraries refuse
        lines = str(e).strip().splitlines()
        return (lines[0] if lines else type(e).__name__)[:240]
    return None if plan is not None else "build_serialized_network returned no plan (TensorRT's log says why)"
