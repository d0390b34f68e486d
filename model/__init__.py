"""The SlowFast model family: one config, named presets, a builder, and GFLOPs/params counting.

    import model
    net = model.build("slowfast_r50_4x16", num_classes=10)
    model.presets()                       # all preset names
    model.count("slowfast_r50_4x16")      # params and GFLOPs (multiply-adds x 1e9) at 256x256
"""
from model.build import build
from model.config import SlowFastConfig
from model.flops import count
from model.slowfast import SlowFast
from model.zoo import Preset, get_config, get_preset, presets

__all__ = ["SlowFastConfig", "SlowFast", "Preset", "build", "count", "get_config", "get_preset", "presets"]
