#!/usr/bin/env bash
# The main job (`./run`), until the end-to-end pipeline lands (issue 6): make a small
# random-init GPT-2 checkpoint with a byte-level tokenizer, sample from it with the KV-cache
# sampler, and run the W-GEN tiny benchmark. The text is noise: the weights are untrained.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/demo}"
bin=target/release
echo "== init-model: random tiny GPT-2 -> $out/model" >&2
"$bin/init-model" --out "$out/model" --size byte-tiny --seed 0
echo "== generate (top-k 40, seed 0): continuation of 'Once upon a time'" >&2
"$bin/generate" --model "$out/model" --prompt "Once upon a time" --max-new-tokens 32 --top-k 40 --seed 0
echo "== generate (greedy)" >&2
"$bin/generate" --model "$out/model" --prompt "Once upon a time" --max-new-tokens 32 --greedy
echo "== bench: W-GEN tiny, fp32, CPU" >&2
"$bin/bench" --workload gen --size tiny --iters 3
