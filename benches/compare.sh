#!/usr/bin/env bash
# Ours against a peer on the same workload, measured alternately in one run (ours, theirs,
# ours), as the project compares speed: this machine's speed moves from day to day, so only a
# ratio measured in one run means anything. Prints each measurement and the ratio against the
# mean of our two runs.
#
#   benches/compare.sh gen [tiny|gpt2-small]     W-GEN against transformers' generate
#                                                (benches/reference/hf_generate.py)
#
# The peer runs in the project's .venv (scripts/setup.sh --with-transformers). W-PPO against
# TRL is not scripted yet: TRL is not installed by the set-up script.
set -euo pipefail
cd "$(dirname "$0")/.."
workload="${1:-gen}"
size="${2:-tiny}"
case "$workload" in
  gen) ;;
  *) echo "usage: benches/compare.sh gen [tiny|gpt2-small]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || { echo "no .venv: run scripts/setup.sh --with-transformers" >&2; exit 1; }
cargo build --release -q -p rlhf-examples --bin bench
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
ours() { target/release/bench --workload gen --size "$size" --iters 5 | field tokens_per_s; }
theirs() { .venv/bin/python benches/reference/hf_generate.py --size "$size" --iters 5 | field tokens_per_s; }
o1=$(ours); t=$(theirs); o2=$(ours)
peak=$(target/release/bench --workload matmul | field matmul_peak_gflops)
python3 - "$o1" "$t" "$o2" "$peak" "$size" <<'PY'
import sys
o1, t, o2, peak = map(float, sys.argv[1:5])
size = sys.argv[5]
ours = (o1 + o2) / 2
print(f"W-GEN {size}: ours {o1:,.0f} and {o2:,.0f} tokens/s, transformers {t:,.0f} tokens/s")
print(f"ratio ours/transformers: {ours / t:.2f}x (worst of ours: {min(o1, o2) / t:.2f}x); "
      f"matmul peak {peak:.1f} GFLOP/s")
PY
