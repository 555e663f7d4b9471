"""The model runner: every model a training command produced is loaded and called in a child
process (the sandbox where there is one), over a pipe carrying JSON and raw arrays."""

from mlops_ci.runner.client import ModelRunner, RemoteModel

__all__ = ["ModelRunner", "RemoteModel"]
