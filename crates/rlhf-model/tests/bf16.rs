//! bf16 on the CPU. Its own test binary: `ensure_usable_cpu_isa` must run before the process's
//! first matmul (see rlhf_model::cpu), which parallel tests in a shared binary cannot promise.

mod common;
use common::*;
use rlhf_model::{GenerateConfig, Policy};
use tch::{Device, Kind, Tensor};

#[test]
fn bf16_generation_runs_and_stays_close_to_f32() {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let mut lm = small_lm(10);
    let ids = Tensor::randint(97, [2, 10], (Kind::Int64, Device::Cpu));
    let f32_logits = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
    lm.set_kind(Kind::BFloat16);
    let bf = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
    assert_eq!(bf.kind(), Kind::BFloat16);
    let rel = max_abs_diff(&bf.to_kind(Kind::Float), &f32_logits)
        / f64::try_from(f32_logits.abs().max()).unwrap();
    assert!(rel < 0.05, "relative difference {rel}");
    let out = lm
        .generate(&ids, &ids.ones_like(), &GenerateConfig::greedy(5))
        .unwrap();
    assert_eq!(out.tokens.size(), [2, 5]);
}

#[test]
fn bf16_llama_generation_runs_and_stays_close_to_f32() {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(3);
    let mut cfg = rlhf_model::LlamaConfig::sized(2, 4, 2, 64, 96, 97, 64);
    cfg.initializer_range = 0.1;
    let mut lm = rlhf_model::CausalLm::new(&cfg, Device::Cpu).unwrap();
    let ids = Tensor::randint(97, [2, 10], (Kind::Int64, Device::Cpu));
    let f32_logits = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
    lm.set_kind(Kind::BFloat16);
    let bf = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
    assert_eq!(bf.kind(), Kind::BFloat16);
    let rel = max_abs_diff(&bf.to_kind(Kind::Float), &f32_logits)
        / f64::try_from(f32_logits.abs().max()).unwrap();
    assert!(rel < 0.05, "relative difference {rel}");
    let (pids, pmask) = left_pad(&[vec![1, 2, 3, 4, 5], vec![6, 7]], 0);
    let out = lm
        .generate(&pids, &pmask, &GenerateConfig::greedy(5))
        .unwrap();
    assert_eq!(out.tokens.size(), [2, 5]);
    // Autocast: f32 weights, bf16 matmuls.
    lm.set_kind(Kind::Float);
    lm.set_autocast(Some(Kind::BFloat16));
    let ac = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
    let rel = max_abs_diff(&ac.to_kind(Kind::Float), &f32_logits)
        / f64::try_from(f32_logits.abs().max()).unwrap();
    assert!(rel < 0.05, "autocast relative difference {rel}");
}
