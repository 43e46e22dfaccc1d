//! The ranking-loss math alone (no model): building the pair index of a batch, and the K-wise
//! loss forward + backward, for the W-RM batch (8 prompts, K = 4) and a paper-sized batch
//! (64 prompts, K = 4..9); the pairwise loss of the same comparisons for reference.
//!
//! Run: `cargo bench -p rlhf-reward --bench loss` (one libtorch thread).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rlhf_reward::loss::{kwise_ranking_loss, pairwise_loss, PairIndex};
use std::hint::black_box;
use tch::{Device, Kind, Tensor};

fn groups(n: usize, ks: &[usize]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let sizes: Vec<usize> = (0..n).map(|i| ks[i % ks.len()]).collect();
    let rankings = sizes
        .iter()
        .enumerate()
        .map(|(g, &k)| (0..k).map(|j| (j + g) % k).collect())
        .collect();
    (sizes, rankings)
}

fn bench_loss(c: &mut Criterion) {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    // Vectors of at most a few thousand elements: intra-op threads only add wake-up latency
    // (milliseconds on a busy machine), so the loss math is timed on one thread.
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let mut group = c.benchmark_group("ranking-loss");
    for (name, n, ks) in [
        ("w-rm-8x4", 8, vec![4]),
        ("paper-64xK4..9", 64, vec![4, 5, 6, 7, 8, 9]),
    ] {
        let (sizes, rankings) = groups(n, &ks);
        let pairs = PairIndex::new(&sizes, &rankings, Device::Cpu).unwrap();
        let rows = pairs.num_rows() as i64;
        group.throughput(Throughput::Elements(pairs.num_pairs() as u64));
        group.bench_function(BenchmarkId::new("pair-index", name), |b| {
            b.iter(|| PairIndex::new(black_box(&sizes), black_box(&rankings), Device::Cpu).unwrap())
        });
        let scores = Tensor::randn([rows], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        group.bench_function(BenchmarkId::new("kwise-fwd-bwd", name), |b| {
            b.iter(|| {
                let l = kwise_ranking_loss(&scores, &pairs).unwrap();
                l.loss.backward();
                black_box(l.loss.double_value(&[]))
            })
        });
        let (w, l) = (pairs.winners(), pairs.losers());
        group.bench_function(BenchmarkId::new("pairwise-fwd-bwd", name), |b| {
            b.iter(|| {
                let loss = pairwise_loss(&scores.index_select(0, &w), &scores.index_select(0, &l));
                loss.backward();
                black_box(loss.double_value(&[]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_loss);
criterion_main!(benches);
