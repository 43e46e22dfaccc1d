//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rlhf_model::{CausalLm, Gpt2Config, KvCache};
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

/// libtorch's generator is global: tests that seed it and then draw from it hold this lock,
/// so that parallel tests cannot interleave their draws.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A small random model with weights wide enough that greedy choices are not ties; the same
/// seed gives the same weights whatever other tests run beside it.
pub fn small_lm(seed: i64) -> CausalLm {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let mut cfg = Gpt2Config::sized(2, 4, 64, 97, 64).with_dropout(0.0);
    cfg.initializer_range = 0.2;
    CausalLm::new(&cfg, Device::Cpu).unwrap()
}

/// Left-pads rows with `pad`; returns ids and mask `[B, max_len]`.
pub fn left_pad(rows: &[Vec<i64>], pad: i64) -> (Tensor, Tensor) {
    pad_rows(rows, pad, true)
}

/// Right-pads rows with `pad`; returns ids and mask `[B, max_len]`.
pub fn right_pad(rows: &[Vec<i64>], pad: i64) -> (Tensor, Tensor) {
    pad_rows(rows, pad, false)
}

fn pad_rows(rows: &[Vec<i64>], pad: i64, left: bool) -> (Tensor, Tensor) {
    let width = rows.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask) = (vec![], vec![]);
    for r in rows {
        let n = width - r.len();
        let (pi, pm) = (vec![pad; n], vec![0i64; n]);
        let (ri, rm) = (r.clone(), vec![1i64; r.len()]);
        if left {
            ids.extend(pi.into_iter().chain(ri));
            mask.extend(pm.into_iter().chain(rm));
        } else {
            ids.extend(ri.into_iter().chain(pi));
            mask.extend(rm.into_iter().chain(pm));
        }
    }
    let shape = [rows.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

/// The largest |difference| between `lm`'s logits on each of `sequences` (alone, no padding)
/// and a reference's (`logits[i]` is `[T, V]` for `sequences[i]`, e.g. `transformers`' in a
/// fixture's expected.json). Checks the shapes, and that the reference logits are far from
/// uniform, so that a broken model cannot match by accident.
pub fn worst_logit_diff(lm: &CausalLm, sequences: &[Vec<i64>], logits: &[Vec<Vec<f32>>]) -> f64 {
    use rlhf_model::Policy;
    let mut worst = 0.0f64;
    for (seq, want) in sequences.iter().zip(logits) {
        let ids = Tensor::from_slice(seq).unsqueeze(0);
        let got = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false))
            .unwrap()
            .get(0);
        let flat: Vec<f32> = want.iter().flatten().copied().collect();
        let want = Tensor::from_slice(&flat).view([want.len() as i64, -1]);
        assert_eq!(got.size(), want.size());
        worst = worst.max(max_abs_diff(&got, &want));
        assert!(f64::try_from(want.std(false)).unwrap() > 0.5);
    }
    worst
}

pub fn rows(t: &Tensor) -> Vec<Vec<i64>> {
    (0..t.size()[0])
        .map(|i| Vec::<i64>::try_from(t.get(i)).unwrap())
        .collect()
}

/// A copy of every variable's gradient, by name.
pub fn grads(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .map(|(n, v)| (n, v.grad().copy()))
        .collect()
}

/// Zeroes every trainable variable's gradient.
pub fn zero_grads(vs: &nn::VarStore) {
    for mut v in vs.trainable_variables() {
        v.zero_grad();
    }
}

/// Four rows of 7 columns: two right-padded, then two left-padded (the first and last of the
/// four without padding). Returns ids and mask `[4, 7]`.
pub fn padded_batch() -> (Tensor, Tensor) {
    let rows = [
        vec![5i64, 9, 17, 3, 44, 2, 8],
        vec![7, 1, 90],
        vec![11, 12, 13, 14, 15, 16, 17],
    ];
    let (ids_r, mask_r) = right_pad(&rows[..2], 0);
    let (ids_l, mask_l) = left_pad(&rows[1..], 0);
    (
        Tensor::cat(&[ids_r, ids_l], 0),
        Tensor::cat(&[mask_r, mask_l], 0),
    )
}

/// Logits `[B, T, V]` of `ids` computed incrementally, as the sampler computes them: the first
/// `prefill` tokens in one cached forward call, then one token per call, with the attention
/// mask so far at each call (left padding), in a KV cache of `capacity` tokens of `kind`.
pub fn incremental_logits(
    lm: &CausalLm,
    (ids, mask): (&Tensor, &Tensor),
    prefill: i64,
    capacity: i64,
    kind: Kind,
) -> Tensor {
    let (b, t) = ids.size2().unwrap();
    let mut cache = KvCache::new(lm.config(), b, capacity, kind, Device::Cpu);
    tch::no_grad(|| {
        let h = lm
            .body()
            .forward(
                &ids.narrow(1, 0, prefill),
                Some(&mask.narrow(1, 0, prefill)),
                Some(&mut cache),
                false,
            )
            .unwrap();
        let mut got = vec![lm.lm_logits(&h)];
        for i in prefill..t {
            let h = lm
                .body()
                .forward(
                    &ids.narrow(1, i, 1),
                    Some(&mask.narrow(1, 0, i + 1)),
                    Some(&mut cache),
                    false,
                )
                .unwrap();
            got.push(lm.lm_logits(&h));
        }
        Tensor::cat(&got, 1)
    })
}
