"""Build time: torch -> ONNX, INT8 Q/DQ quantization (calibration, placement, ranges, bias correction, selection), TensorRT plans."""
