"""Model runtime: ONNX Runtime sessions and the one device check (onnx), the model zoo and what
each network reads and returns (models), the shipped models' settings (settings)."""
