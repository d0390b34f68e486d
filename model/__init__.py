"""The SlowFast model family: one config, named presets, a builder, and GFLOPs/params counting."""
from model.config import SlowFastConfig
from model.slowfast import SlowFast

__all__ = ["SlowFastConfig", "SlowFast"]
