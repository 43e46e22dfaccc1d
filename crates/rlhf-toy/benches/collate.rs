//! Collation cost of the shared workloads (benches/WORKLOAD.md): a W-SFT batch (8 sequences x 256
//! tokens, half prompt) and a W-RM batch (8 prompts x K = 4 responses, 64 + 64 tokens), from
//! pre-tokenized ids; plus tokenize-and-collate of 8 toy demonstrations and packing.
//!
//! Run: `cargo bench -p rlhf-data --bench collate`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rlhf_data::collate::{
    collate_rewards, collate_sft, pack_documents, CollateConfig, Collator, Padding, TokenizedPair,
    TokenizedRanking,
};
use rlhf_toy::{toy_tokenizer, ToyConfig, ToyWorld, TOY_EOS};

fn ids(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|t| (t * 31 + salt * 7) % 8189 + 3)
        .collect()
}

fn bench_collate(c: &mut Criterion) {
    // W-SFT: 8 x 256 = 128 prompt tokens + 127 response tokens + EOS.
    let sft: Vec<TokenizedPair> = (0..8)
        .map(|i| TokenizedPair {
            prompt: ids(128, i),
            response: ids(127, i + 100),
        })
        .collect();
    let cfg = CollateConfig::new(0, 0)
        .with_limits(128, 128)
        .with_padding(Padding::Fixed(256));
    assert_eq!(collate_sft(&sft, &cfg).unwrap().seq_len, 256);
    c.bench_function("collate_sft_wsft_8x256", |b| {
        b.iter(|| collate_sft(black_box(&sft), black_box(&cfg)).unwrap())
    });

    // W-RM: 8 prompts x K = 4, 64 prompt + 64 response tokens (63 + EOS).
    let rm: Vec<TokenizedRanking> = (0..8)
        .map(|i| TokenizedRanking {
            prompt: ids(64, i),
            responses: (0..4).map(|k| ids(63, i * 10 + k + 1)).collect(),
            ranking: vec![2, 0, 3, 1],
        })
        .collect();
    let rm_cfg = CollateConfig::new(0, 0).with_limits(64, 64);
    assert_eq!(collate_rewards(&rm, &rm_cfg).unwrap().seq_len, 128);
    c.bench_function("collate_rewards_wrm_8x4x128", |b| {
        b.iter(|| collate_rewards(black_box(&rm), black_box(&rm_cfg)).unwrap())
    });

    // Text path: tokenize + collate 8 toy demonstrations.
    let world = ToyWorld::generate(&ToyConfig {
        num_users: 20,
        heldout_users: 0,
        pretrain_docs: 64,
        heldout_pretrain_docs: 0,
        ..ToyConfig::default()
    })
    .unwrap();
    let collator = Collator::with_special_tokens(toy_tokenizer(), TOY_EOS, TOY_EOS).unwrap();
    let demos = &world.demonstrations[..8];
    c.bench_function("tokenize_and_collate_toy_sft_8", |b| {
        b.iter(|| collator.sft_batch(black_box(demos)).unwrap())
    });

    // Packing 64 toy documents into 256-token blocks (pre-tokenized).
    let docs: Vec<Vec<u32>> = world
        .pretrain
        .iter()
        .map(|d| collator.encode(&d.text).unwrap())
        .collect();
    c.bench_function("pack_64_toy_docs_256", |b| {
        b.iter(|| pack_documents(black_box(&docs), 256, 0, 0).unwrap())
    });
}

criterion_group!(benches, bench_collate);
criterion_main!(benches);
