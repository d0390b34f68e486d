"""The SlowFast model family: one config, named presets, a builder, GFLOPs/params counting, checkpoints.

    import model
    net = model.build("slowfast_r50_4x16", num_classes=10)
    model.presets()                       # all preset names
    model.count("slowfast_r50_4x16")      # params and GFLOPs (multiply-adds x 1e9) at 256x256
    model.save(net, "run.safetensors")    # weights + config (+ training state), atomically
    net = model.load("run.safetensors")   # no other argument needed
    net = model.convert("SLOWFAST_8x8_R50.pyth")   # PySlowFast / PyTorchVideo / Caffe2 weights
"""
from model.build import build
from model.checkpoint import load, read_info as checkpoint_info, save
from model.config import SlowFastConfig
from model.convert import convert, to_pyslowfast_state, to_pytorchvideo_state
from model.flops import count
from model.slowfast import SlowFast
from model.zoo import Preset, get_config, get_preset, presets

__all__ = ["SlowFastConfig", "SlowFast", "Preset", "build", "count", "get_config", "get_preset", "presets",
           "save", "load", "checkpoint_info", "convert", "to_pyslowfast_state", "to_pytorchvideo_state"]
