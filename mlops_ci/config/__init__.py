"""mlops.yaml: the file read and checked against its JSON Schema (the single source), the frozen
dataclasses every step takes, and the starter file `mlops-ci init` writes."""
