"""Packaging a model version: ONNX conversion and parity, profiling, build context, image."""
