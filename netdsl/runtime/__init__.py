"""Running exported models with onnxruntime: provider choice, inference, benchmarks. Torch-free except `bench`'s PyTorch side."""
