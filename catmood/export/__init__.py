"""Export stage: checkpoint -> ONNX, FP16 ONNX, TensorRT engine, each gated by parity with PyTorch."""
