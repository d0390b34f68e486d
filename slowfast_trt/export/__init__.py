"""Build time: torch -> ONNX, INT8 Q/DQ quantization, TensorRT plans and their JSON sidecars."""
