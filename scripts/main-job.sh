#!/usr/bin/env bash
# The main job (`./run`): the InstructGPT pipeline end to end on the built-in toy world
# (data split by user -> pretrain -> SFT -> rankings -> RM -> PPO and PPO-ptx -> evaluation),
# printing the paper's table. Arguments go to the pipeline binary (e.g. --out DIR to resume).
set -euo pipefail
cd "$(dirname "$0")/.."
exec target/release/pipeline "$@"
