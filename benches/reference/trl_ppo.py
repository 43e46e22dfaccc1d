#!/usr/bin/env python3
"""W-PPO (benches/WORKLOAD.md) with TRL's PPOTrainer, for comparison with `bench --workload ppo`.

Random-init GPT-2 of the given size as policy, reference (same init), reward model and value
model (separate critics with a scalar head); 64 prompts x 64 random tokens per iteration, 64
sampled tokens each (temperature 1, no stop token, so every response has 64 tokens), per-token
KL beta = 0.05 (k1), GAE gamma 1 lambda 0.95, 4 PPO epochs of 4 minibatches of 16, clip 0.2,
value clip 0.2, vf_coef 0.1, AdamW lr 1e-5, fp32, torch threads = all cores. Times each PPO
update (rollout + scoring + training) with a callback and prints one JSON line: the median
seconds per iteration after the first (warm-up) one.

    .venv/bin/python -m pip install "trl==1.12.0"     # PPO is trl.experimental.ppo there
    .venv/bin/python benches/reference/trl_ppo.py --size tiny --iters 3
"""
import argparse
import json
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models
from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel,
                          PreTrainedTokenizerFast, TrainerCallback)
from trl.experimental.ppo import PPOConfig, PPOTrainer

SIZES = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=256, vocab_size=8192, n_positions=256),
    "gpt2-small": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
}


class Timer(TrainerCallback):
    """Wall-clock time of each PPO update (TRL calls on_step_end once per update)."""

    def __init__(self):
        self.marks = []

    def on_train_begin(self, args, state, control, **kw):
        self.marks.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kw):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="tiny", choices=SIZES)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: TRL's own device placement (accelerate), the first GPU")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: TRL's bf16 mixed precision (PPOConfig bf16=True)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    v = SIZES[args.size]["vocab_size"]
    # A word-level tokenizer over the model's vocabulary: TRL needs a pad id and decodes samples.
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(v)}, unk_token="t0"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token=f"t{v - 1}")
    cfg = GPT2Config(**SIZES[args.size], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=v - 1, eos_token_id=v - 1, pad_token_id=0, num_labels=1)
    policy = GPT2LMHeadModel(cfg)
    ref = GPT2LMHeadModel(cfg)
    ref.load_state_dict(policy.state_dict())
    reward = GPT2ForSequenceClassification(cfg)
    value = GPT2ForSequenceClassification(cfg)
    b, p, n = 64, 64, 64
    iters = args.iters + 1
    # Prompt ids in 1..v-2: no pad (0) inside a prompt, no EOS.
    prompts = torch.randint(1, v - 1, (b * iters, p)).tolist()
    data = Dataset.from_dict({"input_ids": prompts})
    with tempfile.TemporaryDirectory() as out:
        config = PPOConfig(
            output_dir=out, report_to=[], logging_steps=10_000, save_strategy="no",
            # TRL: batch = per_device x accumulation; each of num_mini_batches minibatches is one
            # optimizer step (accumulation counts micro-batches across minibatches, so keep it 1).
            per_device_train_batch_size=b, gradient_accumulation_steps=1, num_mini_batches=4,
            num_ppo_epochs=4, total_episodes=b * iters, local_rollout_forward_batch_size=b,
            response_length=n, temperature=1.0, stop_token=None, missing_eos_penalty=None,
            kl_coef=0.05, kl_estimator="k1", gamma=1.0, lam=0.95, cliprange=0.2,
            cliprange_value=0.2, vf_coef=0.1, learning_rate=1e-5, num_sample_generations=0,
            use_cpu=args.device == "cpu", bf16=args.dtype == "bf16", fp16=False, seed=0,
            dataloader_num_workers=0,
        )
        timer = Timer()
        trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=ref,
                             reward_model=reward, train_dataset=data, value_model=value,
                             callbacks=[timer])
        trainer.train()
    steps = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    assert len(steps) == iters, steps
    secs = statistics.median(steps[1:])
    print(json.dumps({
        "workload": "ppo", "impl": "trl", "size": args.size, "device": args.device, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "seconds_per_iteration": secs,
        "all_iterations_s": steps, "trl_version": __import__("trl").__version__,
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
