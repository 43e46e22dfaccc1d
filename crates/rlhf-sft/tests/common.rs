#![allow(dead_code)]
//! Shared by the rlhf-sft tests.

use rlhf_data::collate::{CollateConfig, TokenizedPair};
use rlhf_model::{CausalLm, Gpt2Config};
use rlhf_sft::LmData;
use tch::Device;

/// Serializes seeding and drawing from libtorch's global generator across parallel tests.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn tiny_lm(seed: i64) -> CausalLm {
    let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    CausalLm::new(&Gpt2Config::sized(2, 2, 32, 40, 48), Device::Cpu).unwrap()
}

/// A tiny "reverse the list" task: prompt `1 a b c 2`, response `c b a` (+ EOS 39).
pub fn reverse_demos(n: usize, seed: u64) -> LmData {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let pairs = (0..n)
        .map(|_| {
            let len = rng.gen_range(2..5);
            let items: Vec<u32> = (0..len).map(|_| rng.gen_range(3..12)).collect();
            let mut prompt = vec![1];
            prompt.extend(&items);
            prompt.push(2);
            TokenizedPair {
                prompt,
                response: items.iter().rev().copied().collect(),
            }
        })
        .collect();
    LmData::Demonstrations {
        pairs,
        collate: CollateConfig::new(39, 39).with_limits(16, 8),
    }
}
