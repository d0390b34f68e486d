"""Run time: one interface over PyTorch, ONNX Runtime and TensorRT."""
