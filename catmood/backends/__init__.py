"""Run an artifact (checkpoint, ONNX, TensorRT engine) behind one small Classifier interface."""
