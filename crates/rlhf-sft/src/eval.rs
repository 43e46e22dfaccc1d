//! Model selection by reward: the mean RM score of a policy's greedy answers to prompts.

use crate::trainer::Result;
use rlhf_data::collate::{collate_prompts, CollateConfig};
use rlhf_model::{GenerateConfig, Policy, RewardModel};
use tch::{Device, Kind, Tensor};

/// Samples answers to `prompts` (token ids) with `gen` and returns them with the whole
/// sequences: `(prompt+response ids [B, P+N], mask [B, P+N], response tokens [B, N], response
/// mask [B, N])`. Prompts are left-padded with `collate.pad_id`, responses padded after EOS.
pub fn answer(
    policy: &dyn Policy,
    prompts: &[Vec<u32>],
    collate: &CollateConfig,
    gen: &GenerateConfig,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let pb = collate_prompts(prompts, collate)?;
    let device = policy.device();
    let ids = rlhf_model::array::tensor_from(pb.input_ids_2d(), device);
    let mask = rlhf_model::array::tensor_from(pb.attention_mask_2d(), device);
    let out = policy.generate(&ids, &mask, gen)?;
    let seq = Tensor::cat(&[&ids, &out.tokens], 1);
    let seq_mask = Tensor::cat(&[mask, out.mask.to_kind(Kind::Int64)], 1);
    Ok((seq, seq_mask, out.tokens, out.mask))
}

/// Mean reward of greedy answers (at most `max_new_tokens`, stopping at EOS) to `prompts`,
/// in batches of `batch_size`: the paper's criterion for choosing among SFT epochs.
pub fn mean_greedy_reward(
    policy: &dyn Policy,
    reward: &dyn RewardModel,
    prompts: &[Vec<u32>],
    collate: &CollateConfig,
    max_new_tokens: i64,
    batch_size: usize,
) -> Result<f64> {
    let _g = tch::no_grad_guard();
    let gen = GenerateConfig {
        max_new_tokens,
        do_sample: false,
        eos_token_id: Some(collate.eos_id as i64),
        pad_token_id: collate.pad_id as i64,
        ..Default::default()
    };
    let (mut sum, mut n) = (0.0, 0usize);
    for chunk in prompts.chunks(batch_size.max(1)) {
        let (seq, seq_mask, _, _) = answer(policy, chunk, collate, &gen)?;
        let dev = reward.device();
        let s = reward.score(&seq.to_device(dev), &seq_mask.to_device(dev), false)?;
        sum += s.to_device(Device::Cpu).sum(Kind::Double).double_value(&[]);
        n += chunk.len();
    }
    Ok(if n > 0 { sum / n as f64 } else { f64::NAN })
}
