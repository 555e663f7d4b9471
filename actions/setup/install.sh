#!/usr/bin/env bash
# Install mlops-ci from the checkout this action came from into a venv under RUNNER_TEMP, and
# put it on PATH for later steps: the action and the package are always the same version.
# uv makes the venv and installs in seconds what python -m venv and pip take most of a minute
# for: it is used when it is on PATH or can be installed (one wheel, into a folder of its own);
# pip is the fallback. The venv has pip either way (uv venv --seed), so a later `pip install`
# in the job lands beside mlops-ci.
set -euo pipefail
source_dir="$1"
python="${MLOPS_CI_PYTHON:-python3}"
venv="${RUNNER_TEMP:?RUNNER_TEMP is not set}/mlops-ci-venv"
extras="${MLOPS_CI_EXTRAS:-}"
if [[ -n "$extras" && ! "$extras" =~ ^[a-z,]+$ ]]; then
  echo "::error::input extras: '$extras' is not a comma-separated list of names such as serve"
  exit 2
fi
# The github extra (PyGithub, for report --pr) always: this runs in GitHub Actions.
target="${source_dir}[github${extras:+,$extras}]"
quiet=(--disable-pip-version-check --quiet)
installer=pip
uv=$(command -v uv || true)
if [ -z "$uv" ] && "$python" -m pip install "${quiet[@]}" --target "$RUNNER_TEMP/mlops-ci-uv" uv 2>/dev/null; then
  uv="$RUNNER_TEMP/mlops-ci-uv/bin/uv"
fi
if [ -n "$uv" ] &&
  "$uv" venv --quiet --seed --allow-existing --python "$python" "$venv" &&
  "$uv" pip install --quiet --python "$venv/bin/python" "$target"; then
  installer=uv
else
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install "${quiet[@]}" "$target"
fi
echo "$venv/bin" >> "${GITHUB_PATH:?GITHUB_PATH is not set}"
version=$("$venv/bin/mlops-ci" --version | awk '{print $NF}')
{
  echo "version=$version"
  echo "installer=$installer"
} >> "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
echo "mlops-ci $version installed in $venv with $installer"
