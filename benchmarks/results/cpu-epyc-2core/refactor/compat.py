"""Outputs of artifacts written by one tree, computed by the tree this runs in: `python compat.py DEMO_OUT OUT.npz`.

Loads every checkpoint, ONNX model (FP32 and INT8, each with its sidecar) of a `slowfast demo` folder with
`engines.load`, runs each on the same seeded inputs, and also reopens a training checkpoint with its training state
(`model.load(with_state=True)`) and restores its optimizer, scaler and RNG state through the current tree's
`run_state.restore` where it exists. Run it from both trees on the same folder and compare the two .npz files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from slowfast_trt import engines, model
from slowfast_trt.model.inputs import random_inputs

demo, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(2)
results: dict[str, np.ndarray] = {}
artifacts = sorted((demo / "models").glob("*.safetensors")) + sorted((demo / "export").glob("*.onnx"))
for path in artifacts:
    eng = engines.load(path, device="cpu")
    torch.manual_seed(0)
    x = random_inputs(eng.config, batch=2)
    with torch.inference_mode():
        y = eng(**{k: v for k, v in x.items() if k in eng.input_names})
    results[path.name] = y.float().cpu().numpy()
    print(f"{path.name}: outputs {tuple(y.shape)}, sum {float(y.float().sum()):.6f}")

ckpt = sorted((demo / "train").glob("*/checkpoints/step_*.safetensors"))[-1]
net, state = model.load(ckpt, with_state=True)
print(f"{ckpt.relative_to(demo)}: training state keys {sorted(state)}")
try:
    from slowfast_trt.training.run_state import restore  # the refactored tree
    from slowfast_trt.training.step import make_optimizer

    opt = make_optimizer(net, 0.1, 0.9, 1e-4, torch.device("cpu"))
    run = restore(state, opt, torch.amp.GradScaler("cpu", enabled=False))
    print(f"restored: epoch {run.epoch}, global step {run.global_step}, best {run.best}")
    results["restored_counters"] = np.asarray([run.epoch, run.step_in_epoch, run.global_step])
except ImportError:
    results["restored_counters"] = np.asarray([state["epoch"], state["step_in_epoch"], state["global_step"]])
    print(f"counters: epoch {state['epoch']}, global step {state['global_step']}")
torch.manual_seed(0)
x = random_inputs(net.config, batch=2)
with torch.inference_mode():
    results["train_ckpt"] = net.eval()(**x).numpy()
np.savez(out, **results)
