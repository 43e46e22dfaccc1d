#!/usr/bin/env bash
# Ours against a peer on the same workload, measured alternately in one run (ours, theirs,
# ours), as the project compares speed: this machine's speed moves from day to day, so only a
# ratio measured in one run means anything. Prints each measurement and the ratio against the
# mean of our two runs.
#
#   benches/compare.sh gen [tiny|gpt2-small]     W-GEN against transformers' generate
#                                                (benches/reference/hf_generate.py)
#   benches/compare.sh ppo [tiny|gpt2-small]     W-PPO against TRL's PPOTrainer
#                                                (benches/reference/trl_ppo.py)
#
# Arguments after the size go to our `bench` only (e.g. `benches/compare.sh ppo tiny
# --scoring-batch 64`, the rows per scoring forward pass TRL's script uses, or
# `--logprobs-from-generation`, the old log-probs from the sampler as TRL takes them).
# DTYPE=bf16 runs both sides in bf16 (ours: `bench --dtype bf16`; the peers' `--dtype bf16`);
# the default is f32, the workloads' precision.
#
# The peers run in the project's .venv: scripts/setup.sh --with-transformers, and for ppo
# `.venv/bin/python -m pip install trl==1.12.0` (the last TRL with PPOTrainer, under
# trl.experimental.ppo).
set -euo pipefail
cd "$(dirname "$0")/.."
workload="${1:-gen}"
size="${2:-tiny}"
shift $(( $# < 2 ? $# : 2 ))
extra=("$@")
dtype="${DTYPE:-f32}"
case "$dtype" in
  f32 | bf16) ;;
  *) echo "compare.sh: DTYPE must be f32 or bf16, not $dtype" >&2; exit 2 ;;
esac
case "$workload" in
  gen | ppo) ;;
  *) echo "usage: benches/compare.sh gen|ppo [tiny|gpt2-small] [bench options...]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || { echo "no .venv: run scripts/setup.sh --with-transformers" >&2; exit 1; }
cargo build --release -q -p rlhf-examples --bin bench
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
if [ "$workload" = gen ]; then
  ours() { target/release/bench --workload gen --size "$size" --dtype "$dtype" --iters 5 "${extra[@]}" | field tokens_per_s; }
  theirs() { .venv/bin/python benches/reference/hf_generate.py --size "$size" --dtype "$dtype" --iters 5 | field tokens_per_s; }
  unit="tokens/s"; peer="transformers"
else
  .venv/bin/python -c "import trl.experimental.ppo" 2>/dev/null ||
    { echo "TRL with PPOTrainer missing: .venv/bin/python -m pip install trl==1.12.0" >&2; exit 1; }
  ours() { target/release/bench --workload ppo --size "$size" --dtype "$dtype" --iters 3 "${extra[@]}" | field seconds_per_iteration; }
  theirs() { .venv/bin/python benches/reference/trl_ppo.py --size "$size" --dtype "$dtype" --iters 3 | field seconds_per_iteration; }
  unit="s/iteration"; peer="TRL"
fi
o1=$(ours); t=$(theirs); o2=$(ours)
peak=$(target/release/bench --workload matmul --dtype "$dtype" | field matmul_peak_gflops)
python3 - "$o1" "$t" "$o2" "$peak" "$size" "$workload" "$unit" "$peer" "$dtype" <<'PY'
import sys
o1, t, o2, peak = map(float, sys.argv[1:5])
size, workload, unit, peer, dtype = sys.argv[5:10]
ours = (o1 + o2) / 2
# Higher is better for tokens/s, lower for seconds: the ratio is always "times faster".
speedup = (lambda a, b: a / b) if unit == "tokens/s" else (lambda a, b: b / a)
worst = min(o1, o2) if unit == "tokens/s" else max(o1, o2)
print(f"W-{workload.upper()} {size} {dtype}: ours {o1:,.2f} and {o2:,.2f} {unit}, {peer} {t:,.2f} {unit}")
print(f"ours vs {peer}: {speedup(ours, t):.2f}x faster (worst of ours: {speedup(worst, t):.2f}x); "
      f"matmul peak {peak:.1f} GFLOP/s")
PY
