"""Small shared pieces: the project exception, atomic file writes, device selection, environment facts, progress output."""

from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = ["SlowFastError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "resolve_device"]
