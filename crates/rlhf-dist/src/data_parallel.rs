//! What a data-parallel trainer does with a [`Collective`], written once for the SFT, reward
//! and PPO trainers: agree on the start (config, weights), split each global batch, and
//! average gradients before clipping.

use crate::{Collective, Result};
use std::ops::Range;
use tch::nn::VarStore;
use tch::Tensor;

/// The part of a global batch of `len` items that `rank` of `world_size` processes: a
/// contiguous slice, the first `len % world_size` ranks taking one item more. Ranks may get an
/// empty slice when `len < world_size`.
pub fn shard(len: usize, rank: usize, world_size: usize) -> Range<usize> {
    let base = len / world_size;
    let extra = len % world_size;
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// The start of a data-parallel run: checks that every rank has the same `config` (serialized
/// bytes; named `what` in the error) and copies rank 0's weights (every variable of `vs`, in
/// name order) to every rank. A no-op for one process.
pub fn start(comm: &dyn Collective, what: &str, config: &[u8], vs: &VarStore) -> Result<()> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    comm.ensure_same(what, config)?;
    comm.broadcast_tensors(&variables_by_name(vs), 0)
}

/// Averages the gradients of `vs`'s trainable variables across ranks (one all-reduce of one
/// flat buffer). Call it after the backward passes of a step and **before clipping**, so every
/// rank clips the same global norm. Variables without a gradient on this rank get a zero one
/// first, so every rank passes the same list. A no-op for one process.
pub fn average_gradients(comm: &dyn Collective, vs: &VarStore) -> Result<()> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    let vars = vs.trainable_variables();
    for v in &vars {
        if !v.grad().defined() {
            // A zero gradient, through autograd (tch has no setter for `.grad`).
            tch::with_grad(|| (v.sum(v.kind()) * 0.0).f_backward())?;
        }
    }
    let grads: Vec<Tensor> = vars.iter().map(Tensor::grad).collect();
    comm.all_reduce_mean(&grads)
}

/// Checks that every rank holds the same weights (a checksum per variable, compared with rank
/// 0's): data parallelism that lost sync is an error, not a silently different model. A no-op
/// for one process.
pub fn ensure_in_sync(comm: &dyn Collective, vs: &VarStore) -> Result<()> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    let _g = tch::no_grad_guard();
    let mut bytes = Vec::new();
    for v in variables_by_name(vs) {
        let v = v.to_kind(tch::Kind::Double);
        for x in [v.sum(tch::Kind::Double), v.abs().sum(tch::Kind::Double)] {
            bytes.extend(x.double_value(&[]).to_le_bytes());
        }
    }
    comm.ensure_same("weights (data parallelism lost sync)", &bytes)
}

/// Every variable of `vs` in name order (a `VarStore`'s map has no order of its own, and
/// every rank must pass the same list).
pub fn variables_by_name(vs: &VarStore) -> Vec<Tensor> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once_in_order() {
        for len in 0..20 {
            for world in 1..6 {
                let parts: Vec<Range<usize>> = (0..world).map(|r| shard(len, r, world)).collect();
                assert_eq!(parts[0].start, 0);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                assert_eq!(parts[world - 1].end, len);
                let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn one_process_changes_nothing() {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[3], tch::nn::Init::Const(2.0));
        start(&crate::Single, "config", b"x", &vs).unwrap();
        average_gradients(&crate::Single, &vs).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![2.0; 3]);
        assert!(!w.grad().defined());
    }
}
