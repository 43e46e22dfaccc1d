//! The W-RM workload of benches/WORKLOAD.md: one reward-model optimizer step on 8 prompts x K = 4
//! responses (64 prompt + 64 response tokens each, random ids), a random-init GPT-2 with a
//! scalar head, AdamW. Three ways to do the same step:
//!
//! * `kwise_shared`: the K-wise loss, each prompt forwarded once and each response once
//!   ([`crate::shared`]): 8 x 64 + 32 x 64 tokens.
//! * `kwise_full`: the K-wise loss, each of the 32 (prompt + response) rows forwarded once.
//! * `pairwise`: the TRL way: the 48 comparisons as (chosen, rejected) pairs, chosen rows and
//!   rejected rows forwarded separately (96 rows), mean of `-log sigmoid(r_c - r_r)`.
//!
//! The metric is comparisons per second (48 per step).

use crate::error::{Result, RewardError};
use crate::loss::{kwise_ranking_loss, pairwise_loss, PairIndex};
use crate::shared::{SharedPromptBatch, SharedPromptScorer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rlhf_data::collate::{collate_rewards, CollateConfig, TokenizedRanking};
use rlhf_model::train::{AdamW, AdamWConfig};
use rlhf_model::{Gpt2Config, HeadKind, ScalarModel, ValueFunction};
use serde_json::json;
use std::time::Instant;
use tch::{Device, Kind};

/// Prompts per W-RM step.
pub const W_RM_PROMPTS: usize = 8;
/// Responses per prompt.
pub const W_RM_K: usize = 4;
/// Prompt tokens.
pub const W_RM_PROMPT_TOKENS: usize = 64;
/// Response tokens.
pub const W_RM_RESPONSE_TOKENS: usize = 64;

/// The model sizes of benches/WORKLOAD.md (`tiny`, `gpt2-small`), without dropout.
pub fn workload_model_config(size: &str) -> Result<Gpt2Config> {
    let cfg = match size {
        "tiny" => Gpt2Config::tiny(),
        "gpt2-small" => Gpt2Config::gpt2_small(),
        other => {
            return Err(RewardError::Config(format!(
                "unknown size {other:?}: use tiny or gpt2-small"
            )))
        }
    };
    Ok(cfg.with_dropout(0.0))
}

/// The W-RM batch: `W_RM_PROMPTS` groups of `W_RM_K` random responses, ranked `0, 1, .., K-1`.
pub fn w_rm_groups(vocab: i64, seed: u64) -> Vec<TokenizedRanking> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ids = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| rng.gen_range(0..(vocab - 1) as u32))
            .collect()
    };
    (0..W_RM_PROMPTS)
        .map(|_| TokenizedRanking {
            prompt: ids(W_RM_PROMPT_TOKENS),
            responses: (0..W_RM_K).map(|_| ids(W_RM_RESPONSE_TOKENS)).collect(),
            ranking: (0..W_RM_K).collect(),
        })
        .collect()
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Runs W-RM for `size` on `device` in `kind` (f32 or bf16 weights) and returns one JSON
/// object: `comparisons_per_s` (the K-wise shared-prompt path), `kwise_full_comparisons_per_s`,
/// `pairwise_comparisons_per_s`, the speedups over pairwise, seconds per step and tokens
/// forwarded per step of each path.
pub fn bench_w_rm(
    size: &str,
    device: Device,
    kind: Kind,
    warmup: usize,
    iters: usize,
) -> Result<serde_json::Value> {
    let cfg = workload_model_config(size)?;
    tch::manual_seed(0);
    let mut model = ScalarModel::new(&cfg, HeadKind::Reward, device)?;
    model.set_kind(kind);
    let mut opt = AdamW::new(
        ValueFunction::var_store(&model),
        &AdamWConfig {
            lr: 1e-5,
            ..Default::default()
        },
    )?;
    let groups = w_rm_groups(cfg.vocab_size, 0);
    let collate = CollateConfig {
        append_eos: false,
        ..CollateConfig::new(0, 0).with_limits(W_RM_PROMPT_TOKENS, W_RM_RESPONSE_TOKENS)
    };
    let batch = collate_rewards(&groups, &collate)?;
    let pairs = PairIndex::from_batch(&batch, device)?;
    let comparisons = pairs.num_pairs();
    let ids = rlhf_model::array::tensor_from(batch.input_ids_2d(), device);
    let mask = rlhf_model::array::tensor_from(batch.attention_mask_2d(), device);
    let shared = SharedPromptBatch::from_reward_batch(&batch, device)?;
    let scorer = SharedPromptScorer::of(&model)?;
    let chosen_ids = ids.index_select(0, &pairs.winners());
    let rejected_ids = ids.index_select(0, &pairs.losers());
    let pair_mask = chosen_ids.ones_like();

    // One optimizer step of each path, round-robin, so that a change in machine load
    // affects the three alike; the median of `iters` timed rounds after `warmup` rounds.
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..warmup + iters.max(1) {
        for (path, slot) in times.iter_mut().enumerate() {
            opt.zero_grad();
            sync(device);
            let start = Instant::now();
            let loss = match path {
                0 => kwise_ranking_loss(&scorer.scores(&shared, false)?, &pairs)?.loss,
                1 => kwise_ranking_loss(&model.score_raw(&ids, &mask, false)?, &pairs)?.loss,
                _ => {
                    let c = model.score_raw(&chosen_ids, &pair_mask, false)?;
                    let r = model.score_raw(&rejected_ids, &pair_mask, false)?;
                    pairwise_loss(&c, &r)
                }
            };
            loss.f_backward()?;
            opt.clip_grad_norm(1.0);
            opt.step();
            sync(device);
            if round >= warmup {
                slot.push(start.elapsed().as_secs_f64());
            }
        }
    }
    let [t_shared, t_full, t_pair] = times.map(median);
    let n = comparisons as f64;
    let (p, r) = (W_RM_PROMPT_TOKENS as i64, W_RM_RESPONSE_TOKENS as i64);
    let (g, k) = (W_RM_PROMPTS as i64, W_RM_K as i64);
    Ok(json!({
        "workload": "rm",
        "size": size,
        "comparisons_per_step": comparisons,
        "comparisons_per_s": n / t_shared,
        "kwise_shared_comparisons_per_s": n / t_shared,
        "kwise_full_comparisons_per_s": n / t_full,
        "pairwise_comparisons_per_s": n / t_pair,
        "speedup_vs_pairwise": t_pair / t_shared,
        "kwise_full_speedup_vs_pairwise": t_pair / t_full,
        "seconds_per_step": {"kwise_shared": t_shared, "kwise_full": t_full, "pairwise": t_pair},
        "tokens_forwarded_per_step": {
            "kwise_shared": g * p + g * k * r,
            "kwise_full": g * k * (p + r),
            "pairwise": 2 * n as i64 * (p + r),
        },
    }))
}
