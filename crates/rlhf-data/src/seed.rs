//! Seeds derived from seeds, and shuffles drawn from them: the one place the trainers and the
//! data code take their mixing functions and permutations from. Every random order in rlhf is
//! a function of `(seed, position)` (epoch, iteration, step), never of history, so a resumed run
//! draws what an uninterrupted one would.
//!
//! The functions keep the exact outputs the crates had when each wrote its own (the pipeline's
//! reports are unchanged by their move here).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finalizer (Steele et al.): a bijective avalanche of 64 bits.
pub fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64 of `z`: the next output of a splitmix64 generator whose state is `z`.
pub fn splitmix64(z: u64) -> u64 {
    finalize(z.wrapping_add(GOLDEN))
}

/// `a` mixed with `b` (PPO's per-iteration and per-epoch seeds).
pub fn mix2(a: u64, b: u64) -> u64 {
    finalize(a ^ b.wrapping_mul(GOLDEN))
}

/// `seed` mixed with two coordinates through MurmurHash3's fmix64, kept non-negative (SFT's
/// epoch orders and the per-micro-batch seeds of libtorch's generator).
pub fn mix3(seed: u64, a: u64, b: u64) -> u64 {
    let mut x = seed ^ a.wrapping_mul(GOLDEN) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x & 0x7fff_ffff_ffff_ffff
}

/// `0..n` shuffled by ChaCha8 seeded with `seed`.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_permutations() {
        // splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF first (the reference output).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix2(5, 0), finalize(5));
        assert!(mix3(1, 2, 3) < 1 << 63);
        let o = shuffled(10, 7);
        let mut s = o.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        assert_eq!(o, shuffled(10, 7));
        assert_ne!(o, shuffled(10, 8));
    }
}
