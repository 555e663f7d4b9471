#!/usr/bin/env bash
# Install mlops-ci from the checkout this action came from into a venv under RUNNER_TEMP, and
# put it on PATH for later steps: the action and the package are always the same version.
set -euo pipefail
source_dir="$1"
python="${MLOPS_CI_PYTHON:-python3}"
venv="${RUNNER_TEMP:?RUNNER_TEMP is not set}/mlops-ci-venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$source_dir"
echo "$venv/bin" >> "${GITHUB_PATH:?GITHUB_PATH is not set}"
version=$("$venv/bin/mlops-ci" --version | awk '{print $NF}')
echo "version=$version" >> "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
echo "mlops-ci $version installed in $venv"
