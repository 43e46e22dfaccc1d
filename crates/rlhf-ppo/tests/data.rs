//! Prompt order, left padding, the ptx batch source, config defaults, FLOP counts and the
//! memory probe.

use proptest::prelude::*;
use rlhf_data::collate::pack_documents;
use rlhf_model::Gpt2Config;
use rlhf_ppo::bench::{forward_flops, w_ppo_config, w_ppo_flops};
use rlhf_ppo::data::{left_pad, prompt_indices};
use rlhf_ppo::memory::{current_rss_bytes, peak_rss_bytes};
use rlhf_ppo::{PackedPtx, PpoConfig, PtxSource};
use tch::{Kind, Tensor};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every pass over the prompts visits each exactly once; the batch of an iteration depends
    /// only on (n, batch, iteration, seed).
    #[test]
    fn prompt_order_is_a_permutation_per_pass(n in 1usize..40, batch in 1usize..16, seed in 0u64..100) {
        let iters = (3 * n).div_ceil(batch) as u64;
        let all: Vec<usize> = (0..iters).flat_map(|it| prompt_indices(n, batch, it, seed)).collect();
        for pass in all.chunks(n).filter(|c| c.len() == n) {
            let mut p = pass.to_vec();
            p.sort_unstable();
            prop_assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
        prop_assert_eq!(prompt_indices(n, batch, 2, seed), prompt_indices(n, batch, 2, seed));
    }
}

#[test]
fn left_pad_pads_on_the_left() {
    let (ids, mask) = left_pad(&[&[5, 6, 7], &[8]], 0).unwrap();
    assert_eq!(ids.size(), [2, 3]);
    assert_eq!(
        Vec::<i64>::try_from(ids.view([-1])).unwrap(),
        vec![5, 6, 7, 0, 0, 8]
    );
    assert_eq!(
        Vec::<i64>::try_from(mask.view([-1])).unwrap(),
        vec![1, 1, 1, 0, 0, 1]
    );
    assert!(left_pad(&[], 0).is_err());
    assert!(left_pad(&[&[1], &[]], 0).is_err());
}

#[test]
fn packed_ptx_cycles_reproducibly() {
    let docs: Vec<Vec<u32>> = (0..10u32)
        .map(|d| (0..7).map(|t| 2 + d + t).collect())
        .collect();
    let blocks = pack_documents(&docs, 8, 0, 0).unwrap();
    let n = blocks.num_blocks;
    let mut src = PackedPtx::new(blocks.clone(), 2, 5).unwrap();
    let batches: Vec<Tensor> = (0..n)
        .map(|_| src.next_batch().unwrap().input_ids)
        .collect();
    assert_eq!(src.position(), n as u64);
    // Two passes of batch 2 = every block twice.
    let mut rows: Vec<Vec<i64>> = batches
        .iter()
        .flat_map(|b| (0..2).map(|r| Vec::<i64>::try_from(b.get(r)).unwrap()))
        .collect();
    rows.sort();
    let mut want: Vec<Vec<i64>> = (0..n).map(|b| blocks.row(b).to_vec()).collect();
    want.extend(want.clone());
    want.sort();
    assert_eq!(rows, want);
    // Resuming at a position gives the same batch as drawing up to it.
    let mut again = PackedPtx::new(blocks.clone(), 2, 5).unwrap();
    again.set_position(3);
    let b = again.next_batch().unwrap();
    assert_eq!(
        Vec::<i64>::try_from(b.input_ids.view([-1])).unwrap(),
        Vec::<i64>::try_from(batches[3].view([-1])).unwrap()
    );
    // Every real token is trained; padding is not.
    let am = b.attention_mask.to_kind(Kind::Float);
    assert_eq!(
        Vec::<f32>::try_from(b.loss_mask.view([-1])).unwrap(),
        Vec::<f32>::try_from(am.view([-1])).unwrap()
    );
    assert!(PackedPtx::new(blocks, 0, 0).is_err());
}

#[test]
fn default_config_is_valid_and_documents_the_paper() {
    let c = PpoConfig::default();
    c.validate().unwrap();
    assert_eq!((c.batch_size, c.minibatch_size, c.ppo_epochs), (512, 64, 1));
    assert_eq!(
        (c.kl_coef, c.gamma, c.lam, c.clip_range),
        (0.02, 1.0, 0.95, 0.2)
    );
    assert_eq!((c.value_clip_range, c.vf_coef, c.ptx_coef), (0.2, 0.1, 0.0));
    // Warmup over 10 iterations from a tenth of the peak.
    assert!((c.lr_scale(0) - 0.1).abs() < 1e-12);
    assert!((c.lr_scale(5) - 0.55).abs() < 1e-12);
    assert_eq!(c.lr_scale(10), 1.0);
    assert_eq!(c.micro_batch(), 64);
    // Serde round trip (the binary's TOML goes through the same derive).
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<PpoConfig>(&json).unwrap(), c);
    let e = serde_json::from_str::<PpoConfig>(r#"{"bogus": 1}"#).unwrap_err();
    assert!(e.to_string().contains("bogus"));
    let w = w_ppo_config();
    w.validate().unwrap();
    assert_eq!((w.batch_size, w.minibatch_size, w.ppo_epochs), (64, 16, 4));
    assert_eq!((w.kl_coef, w.vf_coef), (0.05, 0.1));
}

#[test]
fn flop_counts_by_hand() {
    // 1 layer, E = 2, inner 8, V = 3: dense per token 2 * (4*4 + 2*2*8) = 96; attention with
    // ctx 5: 2*2*5*2 = 40; one LM row 2*2*3 = 12.
    let cfg = Gpt2Config::sized(1, 1, 2, 3, 16);
    assert_eq!(forward_flops(&cfg, 1.0, 5.0, 1.0), 96.0 + 40.0 + 12.0);
    assert_eq!(forward_flops(&cfg, 2.0, 5.0, 0.0), 2.0 * 136.0);
    let [gen, scoring, executed, model] =
        w_ppo_flops(&Gpt2Config::tiny().into(), &w_ppo_config(), 64, 64, 64);
    assert!(gen > 0.0 && scoring > 0.0);
    // A position whose last-block output is not needed skips, in tiny (E = 256, inner 1024),
    // the output projection and the MLP, 2 * (256^2 + 2 * 256 * 1024) = 1,179,648, and its
    // attention over ctx keys, 2 * 2 * ctx * 256.
    let skip = |rows: f64, ctx: f64| rows * (1_179_648.0 + 1024.0 * ctx);
    // Policy, reference and value skip 64 positions of each of the 64 rows (ctx 32 on
    // average), the reward 127 (ctx 64).
    let resp_skip = skip(64.0 * 64.0, 32.0);
    // Training = 4 epochs x 3 (fwd + bwd) x (policy + value) forwards of 64 x 128 tokens.
    assert!((executed - (model - 4.0 * 3.0 * 2.0 * resp_skip)).abs() < 1.0);
    assert!(
        executed < 0.95 * model && executed > 0.9 * model,
        "{executed} of {model}"
    );
    // Scoring: policy and reference with the head on the 64 response positions of each of the
    // 64 rows of 128 tokens, plus value and reward bodies, less the skipped positions.
    let tiny = Gpt2Config::tiny();
    let want = 2.0 * forward_flops(&tiny, 64.0 * 128.0, 64.5, 64.0 * 64.0)
        + 2.0 * forward_flops(&tiny, 64.0 * 128.0, 64.5, 0.0)
        - 3.0 * resp_skip
        - skip(64.0 * 127.0, 64.0);
    assert!((scoring / want - 1.0).abs() < 1e-12, "{scoring} vs {want}");
    assert!((model / (want + 3.0 * resp_skip + skip(64.0 * 127.0, 64.0)) - 6.0).abs() < 1e-9);
    // With the sampler's log-probs the policy's scoring pass is not run; nothing else changes.
    let from_gen = rlhf_ppo::PpoConfig {
        logprobs_from_generation: true,
        ..w_ppo_config()
    };
    let [gen2, scoring2, executed2, model2] =
        w_ppo_flops(&Gpt2Config::tiny().into(), &from_gen, 64, 64, 64);
    assert_eq!((gen2, executed2, model2), (gen, executed, model));
    let policy_pass = forward_flops(&tiny, 64.0 * 128.0, 64.5, 64.0 * 64.0) - resp_skip;
    assert!(((scoring - scoring2) / policy_pass - 1.0).abs() < 1e-12);
}

#[test]
fn peak_rss_is_reported() {
    let before = peak_rss_bytes().expect("Linux /proc");
    let big = Tensor::ones([64 << 20], (Kind::Uint8, tch::Device::Cpu)); // 64 MiB, touched
    assert_eq!(big.int64_value(&[12345]), 1);
    let cur = current_rss_bytes().unwrap();
    let after = peak_rss_bytes().unwrap();
    assert!(after >= cur && after >= before);
    assert!(cur >= 64 << 20, "the touched tensor is resident: {cur}");
}
