//! Data-parallel PPO: each rank samples and scores its share of an iteration's prompts, then
//! every rank receives the whole rollout ([`gather_rollout`]), so advantages, whitening, the
//! KL controller and the logged statistics are computed from the same global batch on every
//! rank, exactly as one process computes them. The update then splits each minibatch's
//! micro-batches across the ranks and averages the gradients before clipping (see
//! [`crate::PpoTrainer::set_collective`]).

use crate::error::Result;
use crate::rollout::Rollout;
use rlhf_dist::Collective;
use tch::{Kind, Tensor};

/// The whole rollout of a data-parallel iteration on every rank: this rank's `local` rows
/// (its [`rlhf_dist::data_parallel::shard`] of `global_batch`) placed at their offset, the
/// other ranks' rows received. Responses are right-padded with `pad` (masks 0) to the longest
/// rank's; prompts already share the global batch's width. One all-reduce of one buffer.
pub fn gather_rollout(
    comm: &dyn Collective,
    local: Rollout,
    global_batch: usize,
    pad: i64,
) -> Result<Rollout> {
    let world = comm.world_size();
    if world == 1 {
        return Ok(local);
    }
    let _g = tch::no_grad_guard();
    let share = rlhf_dist::data_parallel::shard(global_batch, comm.rank(), world);
    let mut n = [local.response_len() as f64];
    comm.all_reduce_max_f64(&mut n)?;
    let n = n[0] as i64;
    let device = local.response.device();
    let b = global_batch as i64;
    // Every tensor as f64 (exact for token ids), widened to [B, ...], rows at this rank's
    // offset and zeros elsewhere: summing over ranks assembles the batch.
    let place = |t: &Tensor, fill: f64| -> Tensor {
        let t = t.to_kind(Kind::Double);
        let t = if t.dim() == 2 && t.size()[1] < n {
            let extra = Tensor::full([t.size()[0], n - t.size()[1]], fill, (Kind::Double, device));
            Tensor::cat(&[&t, &extra], 1)
        } else {
            t
        };
        let mut size = t.size();
        size[0] = b;
        let out = Tensor::zeros(size.as_slice(), (Kind::Double, device));
        out.narrow(0, share.start as i64, share.len() as i64)
            .copy_(&t);
        out
    };
    let has_eos = local.has_eos.as_ref().map(|e| e.to_kind(Kind::Double));
    let mut parts = vec![
        place(&local.prompt_ids, 0.0),
        place(&local.prompt_mask, 0.0),
        place(&local.response, pad as f64),
        place(&local.response_mask, 0.0),
        place(&local.logprobs, 0.0),
        place(&local.ref_logprobs, 0.0),
        place(&local.values, 0.0),
        place(&local.scores, 0.0),
    ];
    if let Some(e) = &has_eos {
        parts.push(place(e, 0.0));
    }
    // all_reduce_mean divides by the world size: multiply back to the sum.
    comm.all_reduce_mean(&parts)?;
    let sum = |t: &Tensor| t * world as f64;
    let int = |t: &Tensor, like: &Tensor| sum(t).round().to_kind(like.kind());
    let float = |t: &Tensor, like: &Tensor| sum(t).to_kind(like.kind());
    Ok(Rollout {
        prompt_ids: int(&parts[0], &local.prompt_ids),
        prompt_mask: int(&parts[1], &local.prompt_mask),
        response: int(&parts[2], &local.response),
        response_mask: float(&parts[3], &local.response_mask),
        logprobs: float(&parts[4], &local.logprobs),
        ref_logprobs: float(&parts[5], &local.ref_logprobs),
        values: float(&parts[6], &local.values),
        scores: float(&parts[7], &local.scores),
        has_eos: local
            .has_eos
            .as_ref()
            .map(|e| sum(&parts[8]).round().to_kind(e.kind())),
        generation_s: local.generation_s,
        scoring_s: local.scoring_s,
    })
}
