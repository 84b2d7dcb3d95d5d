#!/usr/bin/env bash
# Install the CPU build of torch (the version requirements/torch.txt pins) into a venv, and refuse
# anything else: PyPI's default torch wheel is the CUDA build, GBs this image never uses.
# Usage: install-torch.sh PYTHON INDEX_URL WHEEL_DIR
set -euo pipefail
py=$1; index=$2; wheels=$3
version=$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$(dirname "$0")/../requirements/torch.txt" 2>/dev/null || true)
version=${version:-2.13.0}
want="torch==${version}+cpu"
if compgen -G "$wheels/torch-${version}+cpu-*.whl" >/dev/null; then
    echo "torch: $want from the local wheel in $wheels"
    "$py" -m pip install -q --find-links "$wheels" "$want"
elif ! "$py" -m pip install -q --retries 1 --timeout 30 --index-url "$index" \
        --extra-index-url https://pypi.org/simple "$want"; then
    echo "torch: the CPU build $want could not be had from $index." >&2
    echo "  Put its wheel (torch-${version}+cpu-cp311-...whl) in docker/wheels/ or pass" >&2
    echo "  TORCH_WHEEL=/path/to/that.whl to make docker-image; the CUDA build is not installed." >&2
    exit 1
fi
"$py" -W ignore::UserWarning - <<'PY'
import importlib.metadata as md
import torch

cuda = [d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].startswith("nvidia-")]
if torch.version.cuda is not None or cuda:
    raise SystemExit(f"torch: a CUDA build slipped in ({torch.__version__}, {cuda}); refusing it")
print(f"torch {torch.__version__}: CPU build")
PY
