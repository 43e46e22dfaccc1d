//! Rollouts: sample responses with the policy's KV-cache sampler, then score them without
//! grad (old log-probs, reference log-probs, values, RM score of prompt + response).

use crate::error::{input_err, Result};
use crate::ops::response_has_eos;
use rlhf_model::ops::log_probs_of;
use rlhf_model::{GenerateConfig, Policy, RewardModel, ValueFunction};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Token ids the trainer needs from the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Responses stop at this token (it is part of the response); `None` never stops early.
    pub eos: Option<i64>,
    /// Written after EOS and in left padding.
    pub pad: i64,
}

/// One batch of sampled responses and everything scored about them, all without grad.
///
/// `B` prompts, `P` prompt columns (left padded), `N` response columns (right padded after
/// EOS).
#[derive(Debug)]
pub struct Rollout {
    /// Prompts `[B, P]` int64, left padded.
    pub prompt_ids: Tensor,
    /// Prompt mask `[B, P]` int64 (1 = real).
    pub prompt_mask: Tensor,
    /// Sampled tokens `[B, N]` int64 (pad after EOS).
    pub response: Tensor,
    /// `[B, N]` f32: 1 for real response tokens (EOS included), 0 after.
    pub response_mask: Tensor,
    /// Log-probs of the response tokens under the policy at sampling time (sampling
    /// temperature) `[B, N]`: from a forward pass over the rollout, or the sampler's own
    /// ([`RolloutOptions::logprobs_from_generation`]; 0 after EOS).
    pub logprobs: Tensor,
    /// The same under the frozen reference `[B, N]`.
    pub ref_logprobs: Tensor,
    /// Value of the state before each response token `[B, N]`.
    pub values: Tensor,
    /// RM score of prompt + response `[B]` (raw, before penalties and clipping).
    pub scores: Tensor,
    /// Whether each response produced EOS `[B]` bool (`None` when no EOS is configured).
    pub has_eos: Option<Tensor>,
    /// Wall-clock seconds of sampling.
    pub generation_s: f64,
    /// Wall-clock seconds of scoring.
    pub scoring_s: f64,
}

impl Rollout {
    /// B.
    pub fn batch_size(&self) -> i64 {
        self.response.size()[0]
    }

    /// P.
    pub fn prompt_len(&self) -> i64 {
        self.prompt_ids.size()[1]
    }

    /// N.
    pub fn response_len(&self) -> i64 {
        self.response.size()[1]
    }

    /// Prompt + response ids `[B, P + N]`.
    pub fn input_ids(&self) -> Tensor {
        Tensor::cat(&[&self.prompt_ids, &self.response], 1)
    }

    /// Prompt + response mask `[B, P + N]` int64.
    pub fn attention_mask(&self) -> Tensor {
        Tensor::cat(
            &[
                self.prompt_mask.to_kind(Kind::Int64),
                self.response_mask.to_kind(Kind::Int64),
            ],
            1,
        )
    }

    /// True when no tensor of the rollout is part of an autograd graph.
    pub fn is_graph_free(&self) -> bool {
        let mut all = vec![
            &self.prompt_ids,
            &self.prompt_mask,
            &self.response,
            &self.response_mask,
            &self.logprobs,
            &self.ref_logprobs,
            &self.values,
            &self.scores,
        ];
        if let Some(e) = &self.has_eos {
            all.push(e);
        }
        all.iter().all(|t| !t.requires_grad())
    }
}

pub use rlhf_model::flops::sync;

/// The sampler's log-probs must cover every sampled token: `[B, N]`.
fn check_generation_logprobs(lp: &Tensor, b: i64, n: i64) -> Result<()> {
    if lp.size() != [b, n] {
        return Err(input_err(format!(
            "logprobs_from_generation: the policy's generate returned log-probs of shape {:?} \
             for {b} x {n} sampled tokens",
            lp.size()
        )));
    }
    Ok(())
}

/// Checks left-padded prompts `[B, P]` (ids int64, mask of 0/1 with at least one real token,
/// the last column real in every row).
pub fn check_prompts(prompt_ids: &Tensor, prompt_mask: &Tensor) -> Result<()> {
    if prompt_ids.dim() != 2 || prompt_ids.size() != prompt_mask.size() {
        return Err(input_err(format!(
            "prompt ids and mask must both be [B, P]; got {:?} and {:?}",
            prompt_ids.size(),
            prompt_mask.size()
        )));
    }
    if prompt_ids.kind() != Kind::Int64 {
        return Err(input_err(format!(
            "prompt ids must be int64, got {:?}",
            prompt_ids.kind()
        )));
    }
    let p = prompt_ids.size()[1];
    if p == 0 {
        return Err(input_err("prompts must have at least one token"));
    }
    let last_real = prompt_mask.select(1, p - 1).gt(0).all();
    if !bool::try_from(last_real)? {
        return Err(input_err(
            "prompts must be LEFT padded (the last column real in every row): collate them \
             with rlhf_data::collate::collate_prompts",
        ));
    }
    Ok(())
}

/// How [`collect_rollout_with`] scores a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutOptions {
    /// Rows per scoring forward pass (at least 1).
    pub chunk: usize,
    /// The old log-probs from the sampler rather than a forward pass of the policy
    /// ([`crate::PpoConfig::logprobs_from_generation`]).
    pub logprobs_from_generation: bool,
}

/// Samples responses and scores them.
///
/// * generation: `policy.generate` with `gen` (KV cache), prompts left padded;
/// * scoring, under `no_grad`, in chunks of `chunk` rows: old and reference log-probs of the
///   response tokens at `gen.temperature`, the values of the states before each response
///   token, and the RM score of prompt + response (read at its last real token).
#[allow(clippy::too_many_arguments)]
pub fn collect_rollout<P, R, M, V>(
    policy: &P,
    reference: &R,
    reward: &M,
    value: &V,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    gen: &GenerateConfig,
    chunk: usize,
) -> Result<Rollout>
where
    P: Policy + ?Sized,
    R: Policy + ?Sized,
    M: RewardModel + ?Sized,
    V: ValueFunction + ?Sized,
{
    let opts = RolloutOptions {
        chunk,
        logprobs_from_generation: false,
    };
    collect_rollout_with(
        policy,
        reference,
        reward,
        value,
        prompt_ids,
        prompt_mask,
        gen,
        &opts,
    )
}

/// [`collect_rollout`] with every scoring option: with `opts.logprobs_from_generation` the
/// old log-probs are the sampler's (masked to 0 after EOS) and the policy runs no scoring
/// pass.
#[allow(clippy::too_many_arguments)]
pub fn collect_rollout_with<P, R, M, V>(
    policy: &P,
    reference: &R,
    reward: &M,
    value: &V,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    gen: &GenerateConfig,
    opts: &RolloutOptions,
) -> Result<Rollout>
where
    P: Policy + ?Sized,
    R: Policy + ?Sized,
    M: RewardModel + ?Sized,
    V: ValueFunction + ?Sized,
{
    check_prompts(prompt_ids, prompt_mask)?;
    let device = policy.device();
    let _guard = tch::no_grad_guard();
    let prompt_ids = prompt_ids.to_device(device);
    let prompt_mask = prompt_mask.to_kind(Kind::Int64).to_device(device);

    sync(device);
    let t0 = Instant::now();
    let generation = policy.generate(&prompt_ids, &prompt_mask, gen)?;
    sync(device);
    let generation_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let response = generation.tokens;
    let response_mask = generation.mask.to_kind(Kind::Float);
    let p = prompt_ids.size()[1];
    let n = response.size()[1];
    let b = prompt_ids.size()[0];
    if opts.logprobs_from_generation {
        check_generation_logprobs(&generation.log_probs, b, n)?;
    }
    let ids = Tensor::cat(&[&prompt_ids, &response], 1);
    let mask = Tensor::cat(&[&prompt_mask, &response_mask.to_kind(Kind::Int64)], 1);
    let chunk = opts.chunk.max(1) as i64;
    let (mut lp, mut ref_lp, mut vals, mut scores) = (vec![], vec![], vec![], vec![]);
    let mut start = 0;
    while start < b {
        let len = chunk.min(b - start);
        let ids_c = ids.narrow(0, start, len);
        let mask_c = mask.narrow(0, start, len);
        // Logits at the response positions only (the prompt's are never used).
        let resp_c = response.narrow(0, start, len);
        if !opts.logprobs_from_generation {
            let logits = policy.logits_for_last(&ids_c, &mask_c, n, false)?;
            lp.push(log_probs_of(&logits, &resp_c, gen.temperature));
        }
        let ref_dev = reference.device();
        let ref_logits = reference.logits_for_last(
            &ids_c.to_device(ref_dev),
            &mask_c.to_device(ref_dev),
            n,
            false,
        )?;
        ref_lp.push(
            log_probs_of(&ref_logits, &resp_c.to_device(ref_dev), gen.temperature)
                .to_device(device),
        );
        drop(ref_logits);
        let val_dev = value.device();
        // Values at the states before each response token only.
        let v = value.values_for_last(
            &ids_c.to_device(val_dev),
            &mask_c.to_device(val_dev),
            n,
            false,
        )?;
        vals.push(v.to_kind(Kind::Float).to_device(device));
        let rm_dev = reward.device();
        let s = reward.score_responses(
            &ids_c.to_device(rm_dev),
            &mask_c.to_device(rm_dev),
            p,
            false,
        )?;
        scores.push(s.to_kind(Kind::Float).to_device(device));
        start += len;
    }
    let has_eos = gen
        .eos_token_id
        .map(|eos| response_has_eos(&response, &response_mask, eos));
    let logprobs = if opts.logprobs_from_generation {
        // 0 after EOS, as the sampler documents (also for a custom policy's sampler).
        generation
            .log_probs
            .to_kind(Kind::Float)
            .masked_fill(&response_mask.eq(0.0), 0.0)
    } else {
        Tensor::cat(&lp, 0)
    };
    let rollout = Rollout {
        prompt_ids,
        prompt_mask,
        response,
        response_mask,
        logprobs,
        ref_logprobs: Tensor::cat(&ref_lp, 0),
        values: Tensor::cat(&vals, 0),
        scores: Tensor::cat(&scores, 0),
        has_eos,
        generation_s,
        scoring_s: 0.0,
    };
    sync(device);
    Ok(Rollout {
        scoring_s: t1.elapsed().as_secs_f64(),
        ..rollout
    })
}
