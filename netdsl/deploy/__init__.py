"""PyTorch -> ONNX: export with verification against PyTorch and self-describing metadata (onnx.py), the faults an
export guards against (export_guard.py), int8 quantization (quantize.py) and `netdsl bench` (bench.py). Imports torch,
onnx and onnxruntime when used."""
