//! The workloads of benches/WORKLOAD.md; prints one JSON line per run.
//!
//! `bench --workload gen|sft|rm|ppo|matmul --size tiny|gpt2-small [--device cpu|cuda]
//! [--dtype f32|bf16]` (`gen`, `sft` and `ppo` also take `--size smollm2`: SmolLM2-135M's
//! Llama shape). `ppo` also takes `--lora R` (adapters of rank R, alpha 2R, on q/k/v/o (GPT-2:
//! c_attn, c_proj) of the policy and the value function, the reference being the policy with
//! its adapters off). `gen` and `ppo` take `--shape B,P,N` (prompts, prompt tokens, new tokens;
//! W-GEN's and W-PPO's is 64,64,64): `--shape 64,64,1` against the default, for example,
//! separates the prefill from the decode steps.

use clap::Parser;
use rlhf_examples::{
    bench_model_config, device_name, gen_flops, kind_name, matmul_peak_gflops, time_median,
    train_flops,
};
use rlhf_model::{parse_device, parse_kind, CausalLm, GenerateConfig, Policy};
use serde_json::json;
use tch::{Kind, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Benchmark workloads of benches/WORKLOAD.md (one JSON line each)")]
struct Args {
    /// gen (W-GEN: 64 prompts x 64 tokens, 64 sampled tokens each), rm (W-RM: K-wise vs pairwise
    /// comparisons/s), ppo (W-PPO: seconds per iteration), sft (W-SFT: one AdamW step
    /// on 8 x 256 tokens, loss on the second half), or matmul (the measured matmul peak of the
    /// device and dtype). With --dtype bf16, sft uses bf16 autocast over f32 weights.
    #[arg(long)]
    workload: String,
    /// tiny or gpt2-small; for gen, sft and ppo also smollm2 (SmolLM2-135M-Instruct's Llama
    /// shape, random weights: the timings depend on the shape only).
    #[arg(long, default_value = "tiny")]
    size: String,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed warm-up repetitions.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// ppo: train LoRA adapters of this rank instead of every weight.
    #[arg(long, value_name = "R")]
    lora: Option<i64>,
    /// gen and ppo: prompts, prompt tokens and new tokens (default W-GEN's and W-PPO's
    /// 64,64,64).
    #[arg(long, value_name = "B,P,N", value_delimiter = ',')]
    shape: Option<Vec<i64>>,
    /// ppo: rows per scoring forward pass (`ppo.scoring_batch_size`; default 0: the
    /// minibatch of 16; TRL's reference script scores 64).
    #[arg(long, value_name = "ROWS", default_value_t = 0)]
    scoring_batch: usize,
    /// ppo: the old log-probs from the sampler, no scoring pass of the policy
    /// (`ppo.logprobs_from_generation`; TRL's `PPOTrainer` does the same).
    #[arg(long)]
    logprobs_from_generation: bool,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    let device = parse_device(&args.device)?;
    let kind = parse_kind(&args.dtype)?;
    let peak = matmul_peak_gflops(device, kind, if device.is_cuda() { 8192 } else { 2048 });
    let base = json!({
        "size": args.size, "device": device_name(device), "dtype": kind_name(kind),
        "threads": tch::get_num_threads(),
    });
    let line = match args.workload.as_str() {
        "matmul" => json!({"workload": "matmul", "matmul_peak_gflops": peak}),
        "gen" => {
            let cfg = bench_model_config(&args.size)?;
            tch::manual_seed(0);
            let mut lm = CausalLm::new(&cfg, device)?;
            lm.set_kind(kind);
            let [b, p, n] = shape(args.shape.as_deref(), [64, 64, 64])?;
            let prompts = Tensor::randint(cfg.vocab_size(), [b, p], (Kind::Int64, device));
            let mask = prompts.ones_like();
            let gen = GenerateConfig {
                max_new_tokens: n,
                seed: Some(0),
                ..Default::default()
            };
            let secs = time_median(device, args.warmup, args.iters, || {
                let out = lm.generate(&prompts, &mask, &gen).expect("generation");
                assert_eq!(out.tokens.size(), [b, n]);
            });
            let flops = gen_flops(&cfg, b, p, n);
            json!({
                "workload": "gen",
                "shape": [b, p, n],
                "tokens_per_s": (b * n) as f64 / secs,
                "seconds_per_rollout": secs,
                "model_gflops_per_s": flops / secs / 1e9,
                "matmul_peak_gflops": peak,
                "fraction_of_matmul_peak": flops / secs / 1e9 / peak,
            })
        }
        "sft" => {
            let cfg = bench_model_config(&args.size)?;
            // As SftTrainer does on the CPU: reuse freed memory instead of faulting fresh pages
            // in every step.
            let retained = device == tch::Device::Cpu && rlhf_model::train::retain_freed_memory();
            tch::manual_seed(0);
            let mut lm = CausalLm::new(&cfg, device)?;
            if kind == Kind::BFloat16 {
                lm.set_autocast(Some(Kind::BFloat16));
            }
            let (b, t) = (8i64, 256i64);
            // Under mpirun: data parallel, each rank taking its share of the 8 sequences and
            // averaging gradients (as the sft binary does); tokens/s counts the whole batch.
            let comm = rlhf_dist::init_for_devices(device.is_cuda())?;
            rlhf_dist::data_parallel::start(&*comm, "bench", b"sft", lm.var_store())?;
            let share = rlhf_dist::data_parallel::shard(b as usize, comm.rank(), comm.world_size());
            let rows = share.len() as i64;
            let ids = Tensor::randint(cfg.vocab_size(), [b, t], (Kind::Int64, device)).narrow(
                0,
                share.start as i64,
                rows,
            );
            let mask = ids.ones_like();
            let loss_mask = Tensor::cat(
                &[
                    Tensor::zeros([rows, t / 2], (Kind::Float, device)),
                    Tensor::ones([rows, t / 2], (Kind::Float, device)),
                ],
                1,
            );
            let mut opt = rlhf_model::train::AdamW::new(
                lm.var_store(),
                &rlhf_model::train::AdamWConfig {
                    lr: 1e-5,
                    ..Default::default()
                },
            )?;
            let secs = time_median(device, args.warmup, args.iters, || {
                // The LM head and the softmax run only at the loss positions.
                let loss =
                    rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).expect("forward");
                opt.zero_grad_backward(&loss).expect("backward");
                rlhf_dist::data_parallel::average_gradients(&*comm, lm.var_store())
                    .expect("all-reduce");
                opt.step();
            });
            if !comm.is_root() {
                return Ok(());
            }
            // Positions whose prediction is in the loss: the head's rows a step must compute.
            let lm_rows = i64::try_from(loss_mask.narrow(1, 1, t - 1).ne(0).sum(Kind::Int64))?
                * comm.world_size() as i64;
            let required = train_flops(&cfg, b, t, lm_rows);
            let conventional = train_flops(&cfg, b, t, b * t);
            let gflops = |f: f64| f / secs / 1e9;
            json!({
                "workload": "sft",
                "world_size": comm.world_size(),
                "threads_per_rank": tch::get_num_threads(),
                "tokens_per_s": (b * t) as f64 / secs,
                "seconds_per_step": secs,
                "retain_freed_memory": retained,
                "flop_count": "3 x forward (body matmuls, causal attention, LM head rows); \
                    required = head on the loss positions only (what the step computes), \
                    conventional = head on every position",
                "lm_head_rows": lm_rows,
                "model_tflops_per_step": required / 1e12,
                "achieved_gflops": gflops(required),
                "peak_gflops": peak,
                "fraction_of_peak": gflops(required) / peak,
                "conventional_lm_head_rows": b * t,
                "conventional_model_tflops_per_step": conventional / 1e12,
                "conventional_achieved_gflops": gflops(conventional),
                "conventional_fraction_of_peak": gflops(conventional) / peak,
            })
        }
        "ppo" => {
            let model = bench_model_config(&args.size)?;
            let w_ppo = [
                rlhf_ppo::bench::W_PPO_PROMPTS,
                rlhf_ppo::bench::W_PPO_PROMPT_LEN,
                rlhf_ppo::bench::W_PPO_NEW_TOKENS,
            ];
            let [prompts, prompt_len, new_tokens] = shape(args.shape.as_deref(), w_ppo)?;
            let lora = args.lora.map(|r| rlhf_model::LoraConfig {
                r,
                lora_alpha: 2.0 * r as f64,
                lora_dropout: 0.0,
                target_modules: if model.as_gpt2().is_some() {
                    vec!["c_attn".into(), "c_proj".into()]
                } else {
                    ["q_proj", "k_proj", "v_proj", "o_proj"]
                        .map(String::from)
                        .to_vec()
                },
            });
            let spec = rlhf_ppo::WPpoSpec {
                model,
                prompts,
                prompt_len,
                new_tokens,
                lora,
                scoring_batch: args.scoring_batch,
                logprobs_from_generation: args.logprobs_from_generation,
            };
            let mut v = rlhf_ppo::bench_w_ppo_on(&spec, device, kind, args.iters)?;
            v["size"] = json!(args.size);
            v
        }
        "rm" => {
            let mut v = rlhf_reward::bench_w_rm(&args.size, device, kind, args.warmup, args.iters)?;
            v["matmul_peak_gflops"] = peak.into();
            v
        }
        other => anyhow::bail!("unknown workload {other:?}: use gen, sft, rm, ppo or matmul"),
    };
    let mut line = line;
    line.as_object_mut()
        .unwrap()
        .extend(base.as_object().unwrap().clone());
    println!("{line}");
    Ok(())
}

/// `--shape B,P,N`, or `default` without it; each number at least 1.
fn shape(arg: Option<&[i64]>, default: [i64; 3]) -> anyhow::Result<[i64; 3]> {
    match arg {
        None => Ok(default),
        Some(&[b, p, n]) if b > 0 && p > 0 && n > 0 => Ok([b, p, n]),
        Some(other) => anyhow::bail!(
            "--shape takes three positive numbers B,P,N (prompts, prompt tokens, new tokens); \
             got {other:?}"
        ),
    }
}
