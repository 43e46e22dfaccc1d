//! W-GEN tiny (benches/WORKLOAD.md): 64 prompts x 64 tokens, 64 sampled tokens, fp32 CPU.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlhf_model::{CausalLm, GenerateConfig, Gpt2Config, Policy};
use tch::{Device, Kind, Tensor};

fn w_gen_tiny(c: &mut Criterion) {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(cores as i32);
    tch::manual_seed(0);
    let cfg = Gpt2Config::tiny().with_dropout(0.0);
    let lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let prompts = Tensor::randint(cfg.vocab_size, [64, 64], (Kind::Int64, Device::Cpu));
    let mask = prompts.ones_like();
    let gen = GenerateConfig {
        max_new_tokens: 64,
        seed: Some(0),
        ..Default::default()
    };
    let mut group = c.benchmark_group("w-gen");
    group.sample_size(10);
    group.throughput(Throughput::Elements(64 * 64));
    group.bench_function("tiny-f32-cpu", |b| {
        b.iter(|| lm.generate(&prompts, &mask, &gen).unwrap())
    });
    group.finish();
}

criterion_group!(benches, w_gen_tiny);
criterion_main!(benches);
