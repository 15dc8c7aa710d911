"""Running exported models with onnxruntime: provider choice, inputs, inference and outputs. Never imports torch."""
