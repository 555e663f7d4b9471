"""mlops-ci: CI/CD for machine-learning models, one small core behind the CLI and CI adapters."""

__version__ = "0.1.0"
