#!/usr/bin/env python3
"""W-GEN (benches/WORKLOAD.md) with Hugging Face transformers, for comparison with `bench --workload gen`.

64 prompts x 64 random tokens, 64 sampled tokens each (temperature 1, no top-k/top-p, no EOS),
KV cache on, random-init GPT-2 of the given size, torch threads = all cores. Prints one JSON line.

    scripts/setup.sh --with-transformers
    .venv/bin/python benches/reference/hf_generate.py --size tiny [--dtype f32|bf16] [--device cpu|cuda]
"""
import argparse
import json
import os
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SIZES = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=256, vocab_size=8192, n_positions=256),
    "gpt2-small": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="tiny", choices=SIZES)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    v = SIZES[args.size]["vocab_size"]
    cfg = GPT2Config(**SIZES[args.size], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=v - 1, eos_token_id=v - 1)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = GPT2LMHeadModel(cfg).eval().to(device=args.device, dtype=dtype)
    b, p, n = 64, 64, 64
    prompts = torch.randint(cfg.vocab_size, (b, p)).to(args.device)
    mask = torch.ones_like(prompts)
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=True, temperature=1.0, top_k=0,
              top_p=1.0, pad_token_id=0, eos_token_id=None, use_cache=True)

    def run():
        with torch.inference_mode():
            out = model.generate(prompts, attention_mask=mask, **kw)
        assert out.shape == (b, p + n), out.shape
        if args.device == "cuda":
            torch.cuda.synchronize()

    run()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    secs = statistics.median(times)
    print(json.dumps({
        "workload": "gen", "impl": "transformers", "size": args.size, "device": args.device,
        "dtype": args.dtype, "threads": torch.get_num_threads(),
        "tokens_per_s": b * n / secs, "seconds_per_rollout": secs,
        "transformers_version": __import__("transformers").__version__,
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
