//! The loss math, forward and backward, on CPU fp32:
//! - the K-wise ranking loss on a W-RM-sized batch of scores against the pairwise loss fed the
//!   same comparisons (the loss alone; the forwards it saves are measured by `bench --workload rm`);
//! - the prompt-masked LM loss from logits (W-SFT's 8 x 256 tokens, vocabulary cut to 8192 so
//!   the bench stays light);
//! - PPO's per-token pieces on a W-PPO-sized batch (64 x 64): reward assembly, GAE, whitening
//!   and the clipped surrogate.

use criterion::{criterion_group, criterion_main, Criterion};
use rlhf_ppo::ops::{
    assemble_rewards, clipped_surrogate, gae, masked_whiten, KlEstimator, RewardShaping,
};
use rlhf_reward::loss::{kwise_ranking_loss, pairwise_loss, PairIndex};
use rlhf_sft::loss::masked_lm_loss_from_logits;
use tch::{Device, Kind, Tensor};

fn ranking(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    // 64 prompts with K = 4..9 (the paper's range), rankings in listed order.
    let ks: Vec<usize> = (0..64).map(|i| 4 + i % 6).collect();
    let rankings: Vec<Vec<usize>> = ks.iter().map(|&k| (0..k).collect()).collect();
    let pairs = PairIndex::new(&ks, &rankings, Device::Cpu).unwrap();
    let n = pairs.num_rows() as i64;
    let scores = Tensor::randn([n], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut g = c.benchmark_group("ranking-loss");
    g.bench_function("kwise-fwd-bwd", |b| {
        b.iter(|| {
            let l = kwise_ranking_loss(&scores, &pairs).unwrap();
            l.loss.backward();
        })
    });
    let (w, l) = (pairs.winners(), pairs.losers());
    g.bench_function("pairwise-fwd-bwd", |b| {
        b.iter(|| {
            let loss = pairwise_loss(&scores.index_select(0, &w), &scores.index_select(0, &l));
            loss.backward();
        })
    });
    g.finish();
}

fn lm_loss(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let (b, t, v) = (8, 256, 8192);
    let logits = Tensor::randn([b, t, v], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let ids = Tensor::randint(v, [b, t], (Kind::Int64, Device::Cpu));
    let mask = Tensor::cat(
        &[
            Tensor::zeros([b, t / 2], (Kind::Float, Device::Cpu)),
            Tensor::ones([b, t / 2], (Kind::Float, Device::Cpu)),
        ],
        1,
    );
    let mut g = c.benchmark_group("lm-loss");
    g.sample_size(10);
    g.bench_function("masked-8x256x8192-fwd-bwd", |bch| {
        bch.iter(|| masked_lm_loss_from_logits(&logits, &ids, &mask).backward())
    });
    g.finish();
}

fn ppo_ops(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let (b, n) = (64, 64);
    let opts = (Kind::Float, Device::Cpu);
    let logp = Tensor::randn([b, n], opts) * 0.1 - 2.0;
    let ref_logp = Tensor::randn([b, n], opts) * 0.1 - 2.0;
    let lens = Tensor::randint_low(1, n + 1, [b, 1], (Kind::Int64, Device::Cpu));
    let mask = Tensor::arange(n, (Kind::Int64, Device::Cpu))
        .view([1, n])
        .lt_tensor(&lens)
        .to_kind(Kind::Float);
    let scores = Tensor::randn([b], opts);
    let values = Tensor::randn([b, n], opts);
    let shaping = RewardShaping {
        kl_coef: 0.05,
        estimator: KlEstimator::K1,
        no_eos_penalty: None,
        score_clip: None,
        whiten: true,
    };
    let mut g = c.benchmark_group("ppo-ops");
    g.bench_function("rewards-gae-whiten-64x64", |bch| {
        bch.iter(|| {
            let r = assemble_rewards(&scores, &logp, &ref_logp, &mask, None, &shaping);
            let (adv, _ret) = gae(&r.rewards, &values, &mask, 1.0, 0.95);
            masked_whiten(&adv, &mask, true)
        })
    });
    let new_logp = (&logp + Tensor::randn([b, n], opts) * 0.05).set_requires_grad(true);
    let adv = Tensor::randn([b, n], opts);
    g.bench_function("clipped-surrogate-fwd-bwd-64x64", |bch| {
        bch.iter(|| {
            clipped_surrogate(&new_logp, &logp, &adv, &mask, 0.2)
                .loss
                .backward()
        })
    });
    g.finish();
}

criterion_group!(benches, ranking, lm_loss, ppo_ops);
criterion_main!(benches);
