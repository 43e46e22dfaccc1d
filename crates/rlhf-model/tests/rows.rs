//! `Body::forward_rows` (the last block run for some positions only) against the whole forward
//! then narrowed, in value and gradient, for GPT-2 and Llama bodies, with right and left
//! padding and with a KV cache; and the model methods built on it (`logits_for_last`,
//! `ScalarModel::score_raw`, `values_for_last`, the sampler's prefill).

mod common;
use common::*;
use rlhf_model::{
    Body, CausalLm, GenerateConfig, HeadKind, KvCache, LlamaConfig, ModelError, Policy,
    ScalarModel, ValueFunction,
};
use std::ops::Range;
use tch::{nn, Device, Kind, Tensor};

fn small_llama(seed: i64) -> CausalLm {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let mut cfg = LlamaConfig::sized(2, 4, 2, 32, 48, 97, 64);
    cfg.initializer_range = 0.2;
    CausalLm::new(&cfg, Device::Cpu).unwrap()
}

/// The padded batch of `common` (right- and left-padded rows), and a batch without padding.
fn batches() -> Vec<(Tensor, Option<Tensor>)> {
    let (ids, mask) = padded_batch();
    let full = Tensor::from_slice(&[3i64, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7]).view([2, 7]);
    vec![(ids, Some(mask)), (full, None)]
}

/// A fixed random direction of `n` values (seeded under the shared generator's lock, so the
/// test does not depend on which other test drew numbers first).
fn probe(n: i64, seed: i64) -> Tensor {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    Tensor::randn([n], (Kind::Float, Device::Cpu))
}

/// Value and gradient of `forward_rows(rows)` against `forward().narrow(rows)`, along one fixed
/// probe direction (`ROWS_PROBE_SEEDS=N` checks N of them: 200 pass).
fn check_rows(name: &str, body: &Body, vs: &nn::VarStore) {
    let seeds = std::env::var("ROWS_PROBE_SEEDS").map_or(1, |s| s.parse().unwrap());
    for seed in 0..seeds {
        check_rows_with(name, body, vs, seed);
    }
}

fn check_rows_with(name: &str, body: &Body, vs: &nn::VarStore, seed: i64) {
    for (ids, mask) in batches() {
        let t = ids.size()[1];
        let probe = probe(body.token_embedding().size()[1], 100 + seed);
        for r in [0..1, 2..5, t - 4..t - 1, t - 1..t, 0..t] {
            let len = r.end - r.start;
            zero_grads(vs);
            let want = body
                .forward(&ids, mask.as_ref(), None, false)
                .unwrap()
                .narrow(1, r.start, len);
            (&want * &probe).sum(Kind::Float).backward();
            let g_want = grads(vs);
            zero_grads(vs);
            let got = body
                .forward_rows(&ids, mask.as_ref(), None, false, Some(r.clone()))
                .unwrap();
            (&got * &probe).sum(Kind::Float).backward();
            let g_got = grads(vs);
            assert_eq!(got.size(), want.size(), "{name} {r:?}");
            // Padded query rows are garbage in both, but the same garbage: compare everything.
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-5, "{name} rows {r:?}: hidden states differ by {d}");
            // A floor for gradients that are zero up to rounding (such as the last block's
            // keys when the only query sees one key): their rounding is that of the sums that
            // make the model's larger gradients.
            let largest = g_want
                .values()
                .map(|a| f64::try_from(a.abs().max()).unwrap())
                .fold(0.0, f64::max);
            for (var, a) in &g_want {
                let scale = f64::try_from(a.abs().max())
                    .unwrap()
                    .max(1e-2 * largest)
                    .max(1e-2);
                let d = max_abs_diff(a, &g_got[var]) / scale;
                assert!(
                    d < 1e-4,
                    "{name} rows {r:?} (probe seed {seed}): grad of {var} differs by {d}"
                );
            }
        }
    }
}

#[test]
fn gpt2_rows_equal_the_whole_forward_narrowed_in_value_and_gradient() {
    let lm = small_lm(11);
    check_rows("gpt2", lm.body(), lm.var_store());
}

#[test]
fn llama_rows_equal_the_whole_forward_narrowed_in_value_and_gradient() {
    let lm = small_llama(12);
    check_rows("llama", lm.body(), lm.var_store());
}

#[test]
fn rows_with_a_cache_fill_it_as_the_whole_forward_does() {
    for lm in [small_lm(13), small_llama(14)] {
        let (ids, mask) = left_pad(&[vec![5, 9, 17, 3, 44], vec![7, 1, 90]], 0);
        let next = Tensor::from_slice(&[8i64, 2]).view([2, 1]);
        let mask2 = Tensor::cat(&[&mask, &next.ones_like()], 1);
        let cfg = lm.config().clone();
        let mut outs = vec![];
        for rows in [None, Some(4..5)] {
            let mut cache = KvCache::new(&cfg, 2, 8, Kind::Float, Device::Cpu);
            let body = lm.body();
            let first = tch::no_grad(|| {
                body.forward_rows(&ids, Some(&mask), Some(&mut cache), false, rows.clone())
            })
            .unwrap();
            let second =
                tch::no_grad(|| body.forward(&next, Some(&mask2), Some(&mut cache), false))
                    .unwrap();
            assert_eq!(cache.len(), 6);
            outs.push((first.narrow(1, first.size()[1] - 1, 1), second));
        }
        assert!(max_abs_diff(&outs[0].0, &outs[1].0) < 1e-5);
        assert!(max_abs_diff(&outs[0].1, &outs[1].1) < 1e-5);
    }
}

#[test]
fn bad_rows_are_a_clear_error() {
    let lm = small_lm(15);
    let ids = Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]);
    let bad: [Range<i64>; 3] = [2..2, 1..4, -1..1];
    for r in bad {
        let err = lm
            .body()
            .forward_rows(&ids, None, None, false, Some(r.clone()))
            .unwrap_err();
        assert!(
            matches!(&err, ModelError::Input(m) if m.contains("within the 3 new tokens")),
            "{r:?}: {err}"
        );
    }
}

#[test]
fn model_methods_on_rows_match_the_whole_forward() {
    let lm = small_lm(16);
    let (ids, mask) = right_pad(&[vec![5, 9, 17, 3, 44, 2, 8], vec![7, 1, 90, 4]], 0);
    // logits_for_last: the last 3 predicting positions.
    let full = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
    let last = tch::no_grad(|| lm.logits_for_last(&ids, &mask, 3, false)).unwrap();
    assert!(max_abs_diff(&last, &full.narrow(1, 3, 3)) < 1e-5);

    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(17);
    let cfg = lm.config().clone();
    let sm = ScalarModel::new(&cfg, HeadKind::Value, Device::Cpu).unwrap();
    drop(_rng);
    let per_token = tch::no_grad(|| sm.per_token(&ids, &mask, false)).unwrap();
    // score_raw reads each row's last real token (columns 6 and 3 here).
    let score = tch::no_grad(|| sm.score_raw(&ids, &mask, false)).unwrap();
    let want = Tensor::stack(&[per_token.get(0).get(6), per_token.get(1).get(3)], 0);
    assert!(max_abs_diff(&score, &want) < 1e-5);
    // values_for_last: entries T-1-n ..= T-2.
    let values = tch::no_grad(|| sm.values(&ids, &mask, false)).unwrap();
    let last = tch::no_grad(|| sm.values_for_last(&ids, &mask, 4, false)).unwrap();
    assert_eq!(last.size(), [2, 4]);
    assert!(max_abs_diff(&last, &values.narrow(1, 2, 4)) < 1e-5);
    assert!(sm.values_for_last(&ids, &mask, 7, false).is_err());
}

#[test]
fn sampling_with_the_prefill_on_its_last_row_matches_the_uncached_sampler() {
    let lm = small_lm(18);
    let (ids, mask) = left_pad(&[vec![5, 9, 17, 3, 44], vec![7, 1, 90]], 0);
    let cached = lm
        .generate(&ids, &mask, &GenerateConfig::greedy(6))
        .unwrap();
    let uncached = lm
        .generate_uncached(&ids, &mask, &GenerateConfig::greedy(6))
        .unwrap();
    assert_eq!(rows(&cached.tokens), rows(&uncached.tokens));
}
