//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rlhf_data::collate::{CollateConfig, TokenizedPair, TokenizedRanking};
use rlhf_model::{Gpt2Config, HeadKind, ScalarModel};
use tch::Device;

/// libtorch's generator is global: tests that seed it (or train with dropout, which reseeds
/// it) hold this lock, so parallel tests cannot interleave their draws.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    single_thread();
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

pub const VOCAB: i64 = 61;
pub const EOS: u32 = 60;

/// A tiny config: 2 layers, 4 heads, 32 wide, vocab 61.
pub fn tiny_config(dropout: f64) -> Gpt2Config {
    Gpt2Config::sized(2, 4, 32, VOCAB, 64).with_dropout(dropout)
}

/// Tiny models: one libtorch thread per test process is as fast, and several test threads
/// (or a busy CI machine) do not oversubscribe the cores.
pub fn single_thread() {
    tch::set_num_threads(1);
}

/// A tiny random reward model (caller holds the lock).
pub fn tiny_rm(seed: i64, dropout: f64) -> ScalarModel {
    single_thread();
    tch::manual_seed(seed);
    ScalarModel::new(&tiny_config(dropout), HeadKind::Reward, Device::Cpu).unwrap()
}

pub fn collate() -> CollateConfig {
    CollateConfig::new(EOS, EOS).with_limits(12, 10)
}

/// Random groups with K in `ks`, prompts of 1..=12 tokens, responses of 0..=9 tokens.
pub fn random_groups(n: usize, ks: &[usize], seed: u64) -> Vec<TokenizedRanking> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let k = ks[i % ks.len()];
            let mut ids = |lo: usize, hi: usize| -> Vec<u32> {
                let len = rng.gen_range(lo..=hi);
                (0..len).map(|_| rng.gen_range(0..EOS)).collect()
            };
            let prompt = ids(1, 12);
            let responses = (0..k).map(|_| ids(0, 9)).collect();
            let mut ranking: Vec<usize> = (0..k).collect();
            for j in (1..k).rev() {
                ranking.swap(j, rng.gen_range(0..=j));
            }
            TokenizedRanking {
                prompt,
                responses,
                ranking,
            }
        })
        .collect()
}

/// A learnable ranking: responses with more copies of token 7 rank higher.
pub fn learnable_groups(n: usize, seed: u64) -> Vec<TokenizedRanking> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let k = [2, 4, 5, 9][i % 4];
            let prompt: Vec<u32> = (0..rng.gen_range(2..6))
                .map(|_| rng.gen_range(10..20))
                .collect();
            let mut counts: Vec<usize> = (0..k).collect();
            for j in (1..k).rev() {
                counts.swap(j, rng.gen_range(0..=j));
            }
            let responses: Vec<Vec<u32>> = counts
                .iter()
                .map(|&c| {
                    let mut r: Vec<u32> = vec![7; c];
                    r.extend((0..9 - c).map(|_| rng.gen_range(20..30)));
                    r
                })
                .collect();
            let mut ranking: Vec<usize> = (0..k).collect();
            ranking.sort_by_key(|&j| std::cmp::Reverse(counts[j]));
            TokenizedRanking {
                prompt,
                responses,
                ranking,
            }
        })
        .collect()
}

pub fn demos(n: usize, seed: u64) -> Vec<TokenizedPair> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| TokenizedPair {
            prompt: (0..rng.gen_range(1..8))
                .map(|_| rng.gen_range(0..EOS))
                .collect(),
            response: (0..rng.gen_range(1..8))
                .map(|_| rng.gen_range(0..EOS))
                .collect(),
        })
        .collect()
}

pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
