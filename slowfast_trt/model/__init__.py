"""The SlowFast model family: one config, named presets, a builder, GFLOPs/params counting, checkpoints.

from slowfast_trt import model
net = model.build("slowfast_r50_4x16", num_classes=10)
model.presets()                       # all preset names
model.count("slowfast_r50_4x16")      # params and GFLOPs (multiply-adds x 1e9) at 256x256
model.save(net, "run.safetensors")    # weights + config (+ training state), atomically
net = model.load("run.safetensors")   # no other argument needed
net = model.convert("SLOWFAST_8x8_R50.pyth")   # PySlowFast / PyTorchVideo / Caffe2 weights
"""

from slowfast_trt.model.build import build
from slowfast_trt.model.checkpoint import load, save
from slowfast_trt.model.checkpoint import read_info as checkpoint_info
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.convert import convert, to_pyslowfast_state, to_pytorchvideo_state
from slowfast_trt.model.flops import count
from slowfast_trt.model.slowfast import SlowFast
from slowfast_trt.model.zoo import Preset, get_config, get_preset, presets

__all__ = [
    "SlowFastConfig",
    "SlowFast",
    "Preset",
    "build",
    "count",
    "get_config",
    "get_preset",
    "presets",
    "save",
    "load",
    "checkpoint_info",
    "convert",
    "to_pyslowfast_state",
    "to_pytorchvideo_state",
]
