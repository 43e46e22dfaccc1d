//! Criterion benchmarks of the PPO math on W-PPO-shaped tensors (64 responses x 64 tokens):
//! reward assembly, GAE, masked whitening, the clipped surrogate and value losses.

use criterion::{criterion_group, criterion_main, Criterion};
use rlhf_ppo::ops::{
    assemble_rewards, clipped_surrogate, clipped_value_loss, gae, masked_whiten, KlEstimator,
    RewardShaping,
};
use std::hint::black_box;
use tch::{Device, Kind, Tensor};

fn inputs() -> (Tensor, Tensor, Tensor, Tensor) {
    tch::manual_seed(0);
    let (b, n) = (64, 64);
    let opts = (Kind::Float, Device::Cpu);
    let lens = Tensor::randint_low(1, n + 1, [b, 1], (Kind::Int64, Device::Cpu));
    let col = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
    let mask = col.lt_tensor(&lens).to_kind(Kind::Float);
    let logp = -Tensor::rand([b, n], opts) * 3.0;
    let ref_logp = -Tensor::rand([b, n], opts) * 3.0;
    let values = Tensor::randn([b, n], opts);
    (logp, ref_logp, values, mask)
}

fn bench(c: &mut Criterion) {
    tch::set_num_threads(1);
    let (logp, ref_logp, values, mask) = inputs();
    let scores = Tensor::randn([64], (Kind::Float, Device::Cpu));
    let shaping = RewardShaping {
        kl_coef: 0.05,
        estimator: KlEstimator::K1,
        no_eos_penalty: None,
        score_clip: None,
        whiten: true,
    };
    c.bench_function("assemble_rewards 64x64", |bch| {
        bch.iter(|| {
            black_box(assemble_rewards(
                &scores, &logp, &ref_logp, &mask, None, &shaping,
            ))
        })
    });
    let rewards = assemble_rewards(&scores, &logp, &ref_logp, &mask, None, &shaping).rewards;
    c.bench_function("gae 64x64", |bch| {
        bch.iter(|| black_box(gae(&rewards, &values, &mask, 1.0, 0.95)))
    });
    c.bench_function("masked_whiten 64x64", |bch| {
        bch.iter(|| black_box(masked_whiten(&values, &mask, true)))
    });
    let (adv, ret) = gae(&rewards, &values, &mask, 1.0, 0.95);
    let new_logp = (&logp + 0.05).set_requires_grad(true);
    c.bench_function("clipped_surrogate fwd+bwd 64x64", |bch| {
        bch.iter(|| {
            let out = clipped_surrogate(&new_logp, &logp, &adv, &mask, 0.2);
            out.loss.backward();
            black_box(out.clipfrac)
        })
    });
    let new_values = (&values + 0.1).set_requires_grad(true);
    c.bench_function("clipped_value_loss fwd+bwd 64x64", |bch| {
        bch.iter(|| {
            let out = clipped_value_loss(&new_values, &values, &ret, &mask, 0.2);
            out.loss.backward();
            black_box(out.clipfrac)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
