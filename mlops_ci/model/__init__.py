"""The model as mlops-ci knows it: its input contract (features), its files, an ONNX export with
scikit-learn's face, and the sha256 manifest that guards its artifacts."""
