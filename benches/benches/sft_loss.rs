//! W-SFT tiny (benches/WORKLOAD.md) loss, forward + backward, fp32 CPU: every logit then the masked
//! cross-entropy, against `masked_lm_loss` (LM head and log-softmax at the loss positions only).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlhf_model::{CausalLm, Gpt2Config, Policy};
use tch::{Device, Kind, Tensor};

fn w_sft_loss_tiny(c: &mut Criterion) {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(cores as i32);
    tch::manual_seed(0);
    let cfg = Gpt2Config::tiny().with_dropout(0.0);
    let lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let (b, t) = (8i64, 256i64);
    let ids = Tensor::randint(cfg.vocab_size, [b, t], (Kind::Int64, Device::Cpu));
    let mask = ids.ones_like();
    let loss_mask = Tensor::cat(
        &[
            Tensor::zeros([b, t / 2], (Kind::Float, Device::Cpu)),
            Tensor::ones([b, t / 2], (Kind::Float, Device::Cpu)),
        ],
        1,
    );
    let zero = || {
        for mut v in lm.var_store().trainable_variables() {
            v.zero_grad();
        }
    };
    let mut group = c.benchmark_group("w-sft-loss");
    group.sample_size(10);
    group.throughput(Throughput::Elements((b * t) as u64));
    group.bench_function("tiny-full-logits-f32-cpu", |bench| {
        bench.iter(|| {
            zero();
            let logits = lm.logits(&ids, &mask, true).unwrap();
            rlhf_sft::masked_lm_loss_from_logits(&logits, &ids, &loss_mask).backward();
        })
    });
    group.bench_function("tiny-masked-f32-cpu", |bench| {
        bench.iter(|| {
            zero();
            rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true)
                .unwrap()
                .backward();
        })
    });
    group.finish();
}

criterion_group!(benches, w_sft_loss_tiny);
criterion_main!(benches);
