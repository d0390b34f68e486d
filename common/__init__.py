"""Small shared pieces: the project exception, atomic file writes, device selection."""
from common.errors import SlowFastError
from common.io import atomic_write, atomic_write_bytes, atomic_write_text
from common.device import resolve_device

__all__ = ["SlowFastError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "resolve_device"]
