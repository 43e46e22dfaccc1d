//! W-PPO of benches/WORKLOAD.md: one full PPO iteration with four GPT-2 models, timed with its split
//! and compared with the device's measured matmul peak.

use crate::config::PpoConfig;
use crate::error::{input_err, Result};
use crate::rollout::SpecialTokens;
use crate::trainer::{PpoModels, PpoTrainer};
use rlhf_model::checkpoint::HeadKind;
use rlhf_model::train::{AdamWConfig, NoMetrics};
use rlhf_model::{
    AdaptersOff, CausalLm, Gpt2Config, LoraConfig, ModelConfig, Policy, ScalarModel, ValueFunction,
};
use serde_json::json;
use std::rc::Rc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// W-PPO's shape: 64 prompts x 64 tokens, 64 sampled tokens.
pub const W_PPO_PROMPTS: i64 = 64;
/// Prompt length of W-PPO.
pub const W_PPO_PROMPT_LEN: i64 = 64;
/// Response length of W-PPO.
pub const W_PPO_NEW_TOKENS: i64 = 64;

/// The model sizes of benches/WORKLOAD.md (`tiny`, `gpt2-small`), dropout off.
pub fn workload_model(size: &str) -> Result<Gpt2Config> {
    let cfg = match size {
        "tiny" => Gpt2Config::tiny(),
        "gpt2-small" => Gpt2Config::gpt2_small(),
        other => {
            return Err(input_err(format!(
                "unknown size {other:?}: use tiny or gpt2-small"
            )))
        }
    };
    Ok(cfg.with_dropout(0.0))
}

/// The W-PPO trainer settings: beta 0.05 (fixed), GAE gamma 1 lambda 0.95, 4 epochs, minibatch
/// 16, clip 0.2, value clip 0.2, vf_coef 0.1, AdamW lr 1e-5 (no warmup), no EOS.
pub fn w_ppo_config() -> PpoConfig {
    let opt = AdamWConfig {
        lr: 1e-5,
        ..AdamWConfig::default()
    };
    PpoConfig {
        batch_size: W_PPO_PROMPTS as usize,
        minibatch_size: 16,
        micro_batch_size: 0,
        ppo_epochs: 4,
        max_new_tokens: W_PPO_NEW_TOKENS,
        temperature: 1.0,
        kl_coef: 0.05,
        adaptive_kl: None,
        gamma: 1.0,
        lam: 0.95,
        clip_range: 0.2,
        value_clip_range: 0.2,
        vf_coef: 0.1,
        policy_optimizer: opt.clone(),
        value_optimizer: opt,
        lr_warmup_iterations: 0,
        ..PpoConfig::default()
    }
}

/// The measured matmul peak (the one timer, in `rlhf_model::flops`).
pub use rlhf_model::flops::matmul_peak_gflops;
/// Forward FLOPs (the one count, in `rlhf_model::flops`).
pub use rlhf_model::flops::{forward_flops, last_block_row_flops, model_forward_flops};

/// FLOPs of one W-PPO iteration by phase: `(generation, scoring, training_executed,
/// training_model)`. Training counts forward + backward as 3 forwards. The model count is the
/// body on every token and the unembedding at the response positions; what runs is less: the
/// last block runs only at the positions whose output is used
/// ([`rlhf_model::Body::forward_rows`]: the response's for the policy, the reference and the
/// value, each row's last token for the reward), and generation's prefill only at the last
/// prompt position. Generation and scoring are counted as executed.
pub fn w_ppo_flops(cfg: &ModelConfig, ppo: &PpoConfig, b: i64, p: i64, n: i64) -> [f64; 4] {
    let forward_flops = model_forward_flops;
    let (bf, pf, nf) = (b as f64, p as f64, n as f64);
    let t = pf + nf;
    let ctx = (t + 1.0) / 2.0;
    let skipped = |rows: f64, ctx: f64| rows * last_block_row_flops(cfg, ctx);
    // Generation: prefill (LM head and last block on the last position), then one token per
    // step.
    let mut gen =
        forward_flops(cfg, bf * pf, (pf + 1.0) / 2.0, bf) - skipped(bf * (pf - 1.0), pf / 2.0);
    for i in 0..n {
        gen += forward_flops(cfg, bf, pf + i as f64 + 1.0, bf);
    }
    // Policy, reference, value: `p` positions of each row skip the last block (the first
    // `p - 1` and the last); the reward reads the last token only (no early EOS in W-PPO).
    let lm_resp = forward_flops(cfg, bf * t, ctx, bf * nf);
    let body = forward_flops(cfg, bf * t, ctx, 0.0);
    let resp_skip = skipped(bf * pf, pf / 2.0);
    // The policy's pass is skipped when the sampler's log-probs are used.
    let lm_passes = if ppo.logprobs_from_generation {
        1.0
    } else {
        2.0
    };
    let scoring = lm_passes * (lm_resp - resp_skip) + (body - resp_skip) + body
        - skipped(bf * (t - 1.0), t / 2.0);
    let epochs = ppo.ppo_epochs as f64;
    let model = 3.0 * epochs * (lm_resp + body);
    let executed = model - 3.0 * epochs * 2.0 * resp_skip;
    [gen, scoring, executed, model]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// What [`bench_w_ppo_on`] runs: the models' architecture, the batch shape, and whether the
/// policy and the value function train LoRA adapters.
#[derive(Debug, Clone)]
pub struct WPpoSpec {
    /// The architecture of all four models (random weights, dropout as the config says).
    pub model: ModelConfig,
    /// Prompts per iteration (W-PPO: 64).
    pub prompts: i64,
    /// Tokens per prompt (W-PPO: 64).
    pub prompt_len: i64,
    /// Sampled tokens per response (W-PPO: 64).
    pub new_tokens: i64,
    /// LoRA on the policy (the reference is then the policy with its adapters off, no second
    /// copy) and on the value function (its head trained whole); `None`: full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Rows per scoring forward pass ([`PpoConfig::scoring_batch_size`]; 0: the minibatch,
    /// 16 in W-PPO).
    pub scoring_batch: usize,
    /// The old log-probs from the sampler, no scoring pass of the policy
    /// ([`PpoConfig::logprobs_from_generation`]; TRL's `PPOTrainer` does the same).
    pub logprobs_from_generation: bool,
}

/// Runs W-PPO (benches/WORKLOAD.md): policy, frozen reference (same init), frozen reward model and a
/// separate value model initialized from it, random GPT-2 weights of `size` (`tiny` or
/// `gpt2-small`) in `kind` on `device`, 64 random prompts of 64 tokens, 64 sampled tokens.
///
/// Runs one untimed warm-up iteration when `iters >= 2`, then `iters` timed ones, and returns
/// one JSON object:
///
/// * `seconds_per_iteration` and its split `generation_s` / `scoring_s` / `training_s`
///   (medians; training = advantages + the PPO update + the KL controller);
/// * FLOPs of each phase (`generation_gflop`, `scoring_gflop`; training as
///   `training_model_gflop`, what PPO needs, and `training_executed_gflop`, what the step
///   computes: now equal, see [`w_ppo_flops`]);
/// * `matmul_peak_gflops`, the measured fp32 (or `kind`) matmul peak of the device (the higher
///   of a measurement before and one after the run), and the fractions of it reached
///   (`training_fraction_of_matmul_peak` etc.);
/// * `peak_rss_mb`: the process's peak resident memory (`VmHWM`, MiB; null off Linux). On a
///   GPU this is host memory only.
pub fn bench_w_ppo(
    size: &str,
    device: Device,
    kind: Kind,
    iters: usize,
) -> Result<serde_json::Value> {
    let spec = WPpoSpec {
        model: workload_model(size)?.into(),
        prompts: W_PPO_PROMPTS,
        prompt_len: W_PPO_PROMPT_LEN,
        new_tokens: W_PPO_NEW_TOKENS,
        lora: None,
        scoring_batch: 0,
        logprobs_from_generation: false,
    };
    let mut v = bench_w_ppo_on(&spec, device, kind, iters)?;
    v["size"] = json!(size);
    Ok(v)
}

/// [`bench_w_ppo`] on any architecture and batch shape, with or without LoRA (the W-PPO
/// settings of [`w_ppo_config`] otherwise). The JSON adds `lora` (the rank or null),
/// `trainable_parameters` (policy + value) and `model_parameters` (one model); with LoRA the
/// training FLOPs are still counted as forward + full backward, though the frozen weights get
/// no gradient (about 2/3 of that backward).
pub fn bench_w_ppo_on(
    spec: &WPpoSpec,
    device: Device,
    kind: Kind,
    iters: usize,
) -> Result<serde_json::Value> {
    let cfg = &spec.model;
    let (b, p, n) = (spec.prompts, spec.prompt_len, spec.new_tokens);
    if b < 1 || p < 1 || n < 1 || p + n > cfg.n_positions() {
        return Err(input_err(format!(
            "W-PPO shape {b} prompts x {p} tokens + {n} new: every number must be at least 1 \
             and {p} + {n} at most the model's {} positions",
            cfg.n_positions()
        )));
    }
    let ppo = PpoConfig {
        batch_size: b as usize,
        minibatch_size: (b as usize / 4).max(1),
        scoring_batch_size: spec.scoring_batch,
        logprobs_from_generation: spec.logprobs_from_generation,
        max_new_tokens: n,
        ..w_ppo_config()
    };
    let peak_n = if device.is_cuda() { 8192 } else { 2048 };
    let peak_before = matmul_peak_gflops(device, kind, peak_n);
    tch::manual_seed(0);
    let mut policy = CausalLm::new(cfg, device)?;
    policy.set_kind(kind);
    let mut reward = ScalarModel::new(cfg, HeadKind::Reward, device)?;
    let mut value = ScalarModel::new(cfg, HeadKind::Value, device)?;
    value.var_store_mut().copy(reward.var_store())?;
    reward.var_store_mut().freeze();
    reward.set_kind(kind);
    value.set_kind(kind);
    let reference: Option<CausalLm> = match &spec.lora {
        Some(lora) => {
            policy.attach_lora(lora)?;
            value.attach_lora(lora)?;
            None
        }
        None => {
            let mut r = CausalLm::new(cfg, device)?;
            r.set_kind(kind);
            r.var_store_mut().copy(policy.var_store())?;
            r.var_store_mut().freeze();
            Some(r)
        }
    };
    let count = |ts: Vec<Tensor>| ts.iter().map(|t| t.numel()).sum::<usize>();
    let trainable = count(policy.var_store().trainable_variables())
        + count(value.var_store().trainable_variables());
    let model_params = count(policy.var_store().variables().into_values().collect());
    let policy = Rc::new(policy);
    let reference: Box<dyn Policy> = match reference {
        Some(r) => Box::new(r),
        None => Box::new(AdaptersOff(policy.clone())),
    };
    let prompts = Tensor::randint(cfg.vocab_size(), [b, p], (Kind::Int64, device));
    let mask = prompts.ones_like();
    let models = PpoModels {
        policy,
        reference,
        reward,
        value,
    };
    let tokens = SpecialTokens {
        eos: None,
        pad: cfg.pad_token_id().or(cfg.eos_token_id()).unwrap_or(0),
    };
    let mut trainer = PpoTrainer::new(ppo.clone(), models, tokens)?;
    let warmup = usize::from(iters >= 2);
    let (mut total, mut gen, mut score, mut train) = (vec![], vec![], vec![], vec![]);
    for i in 0..warmup + iters.max(1) {
        let t = Instant::now();
        let s = trainer.step(&prompts, &mask, None, &mut NoMetrics)?;
        let secs = t.elapsed().as_secs_f64();
        if i >= warmup {
            total.push(secs);
            gen.push(s.time_generation);
            score.push(s.time_scoring);
            train.push(s.time_training);
        }
    }
    drop(trainer);
    // The peak is measured before and after the run and the higher one is used, so that a
    // moment of contention on a shared machine does not inflate the fractions.
    let peak_after = matmul_peak_gflops(device, kind, peak_n);
    let peak = peak_before.max(peak_after);
    let [gen_f, score_f, exec_f, model_f] = w_ppo_flops(cfg, &ppo, b, p, n);
    let (secs, gen_s, score_s, train_s) =
        (median(total), median(gen), median(score), median(train));
    let gf = |flops: f64, s: f64| flops / s / 1e9;
    Ok(json!({
        "workload": "ppo",
        "size": match cfg { ModelConfig::Gpt2(_) => "gpt2", ModelConfig::Llama(_) => "llama" },
        "shape": [b, p, n],
        "lora": spec.lora.as_ref().map(|l| l.r),
        "logprobs_from_generation": spec.logprobs_from_generation,
        "trainable_parameters": trainable,
        "model_parameters": model_params,
        "device": format!("{device:?}").to_lowercase(),
        "dtype": match kind { Kind::BFloat16 => "bf16", Kind::Half => "f16", _ => "f32" },
        "threads": tch::get_num_threads(),
        "iters": iters.max(1),
        "warmup": warmup,
        "seconds_per_iteration": secs,
        "generation_s": gen_s,
        "scoring_s": score_s,
        "training_s": train_s,
        "generation_gflop": gen_f / 1e9,
        "scoring_gflop": score_f / 1e9,
        "training_model_gflop": model_f / 1e9,
        "training_executed_gflop": exec_f / 1e9,
        "training_model_gflops_per_s": gf(model_f, train_s),
        "training_executed_gflops_per_s": gf(exec_f, train_s),
        "matmul_peak_gflops": peak,
        "matmul_peak_gflops_before_after": [peak_before, peak_after],
        "training_fraction_of_matmul_peak": gf(model_f, train_s) / peak,
        "training_executed_fraction_of_matmul_peak": gf(exec_f, train_s) / peak,
        "generation_fraction_of_matmul_peak": gf(gen_f, gen_s) / peak,
        "scoring_fraction_of_matmul_peak": gf(score_f, score_s) / peak,
        "iteration_fraction_of_matmul_peak": gf(gen_f + score_f + model_f, secs) / peak,
        "peak_rss_mb": crate::memory::peak_rss_mb(),
    }))
}
