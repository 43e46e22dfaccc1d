//! AdamW with decay groups and saveable state.

mod common;
use common::*;
use rlhf_model::train::{AdamW, AdamWConfig};
use rlhf_model::Policy;
use tch::{Kind, Tensor};

#[test]
fn weight_decay_applies_to_matrices_only_unless_embeddings_are_asked() {
    for decay_embeddings in [false, true] {
        let lm = small_lm(0);
        let before: Vec<(String, Tensor)> = lm
            .var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            decay_embeddings,
            ..Default::default()
        };
        let mut opt = AdamW::new(lm.var_store(), &cfg).unwrap();
        // A zero loss: gradients are all zero, so only the decay moves weights.
        let ids = Tensor::from_slice(&[1i64, 2, 3]).unsqueeze(0);
        (lm.logits(&ids, &ids.ones_like(), false)
            .unwrap()
            .sum(Kind::Float)
            * 0.0)
            .backward();
        opt.step();
        let after = lm.var_store().variables();
        for (name, b) in before {
            let ratio = f64::try_from((&after[&name] - &b).abs().max()).unwrap()
                / f64::try_from(b.abs().max()).unwrap().max(1e-12);
            let is_embedding = name.contains("wte") || name.contains("wpe");
            let is_matrix = name.ends_with(".weight") && !name.contains("ln_") && !is_embedding;
            let decayed = is_matrix || (is_embedding && decay_embeddings);
            if decayed {
                assert!(
                    (ratio - 0.05).abs() < 1e-4,
                    "{name} should shrink by lr*wd: {ratio}"
                );
            } else {
                assert_eq!(ratio, 0.0, "{name} must not decay");
            }
        }
    }
}

#[test]
fn adamw_matches_the_reference_update_and_its_state_round_trips() {
    // One scalar parameter, two steps, against the formula.
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let w = vs.root().var("w", &[1], tch::nn::Init::Const(1.0));
    let cfg = AdamWConfig {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.01,
        decay_embeddings: false,
    };
    let mut opt = AdamW::new(&vs, &cfg).unwrap();
    let (mut m, mut v, mut x) = (0.0f64, 0.0f64, 1.0f64);
    for t in 1..=2 {
        opt.zero_grad();
        (&w * &w * 3.0).sum(Kind::Float).backward(); // grad = 6x
        opt.step();
        let g = 6.0 * x;
        m = 0.9 * m + 0.1 * g;
        v = 0.99 * v + 0.01 * g * g;
        let (mh, vh) = (m / (1.0 - 0.9f64.powi(t)), v / (1.0 - 0.99f64.powi(t)));
        x = x * (1.0 - 0.1 * 0.01) - 0.1 * mh / (vh.sqrt() + 1e-8);
        assert!(
            (w.double_value(&[0]) - x).abs() < 1e-6,
            "step {t}: {} vs {x}",
            w.double_value(&[0])
        );
    }
    let state: std::collections::BTreeMap<String, Tensor> = opt.state().into_iter().collect();
    let mut fresh = AdamW::new(&vs, &cfg).unwrap();
    fresh.load_state(&state).unwrap();
    assert_eq!(fresh.step_count(), 2);
    assert!(fresh
        .state()
        .iter()
        .zip(opt.state())
        .all(|((a, x), (b, y))| a == &b && x.equal(&y)));
}

#[test]
fn fused_step_equals_the_tensor_op_step() {
    // One model and its gradients, two optimizers: from the same weights and the same
    // gradients, the fused step and the tensor-op step must give the same weights and moments.
    // Three steps, weight decay on the matrices, an lr change between steps.
    let lm = small_lm(11);
    let cfg = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        decay_embeddings: false,
    };
    let mut fused = AdamW::new(lm.var_store(), &cfg).unwrap();
    let mut plain = AdamW::new(lm.var_store(), &cfg).unwrap();
    let ids = Tensor::from_slice(&[3i64, 14, 15, 92, 65, 35, 89, 79]).view([2, 4]);
    let snapshot = || -> std::collections::BTreeMap<String, Tensor> {
        lm.var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .collect()
    };
    let start = snapshot();
    for step in 0..3 {
        fused.zero_grad();
        let lp = lm
            .token_log_probs(&ids, &ids.ones_like(), 1.0, false)
            .unwrap();
        (-lp.mean(Kind::Float)).backward();
        fused.set_lr(1e-2 / (step + 1) as f64);
        plain.set_lr(1e-2 / (step + 1) as f64);
        let before = snapshot();
        fused.step();
        let after_fused = snapshot();
        tch::no_grad(|| {
            for (name, mut v) in lm.var_store().variables() {
                v.copy_(&before[&name]);
            }
        });
        plain.step_tensor_ops();
        let after_plain = snapshot();
        for ((name, x), (_, y)) in after_fused.iter().zip(&after_plain) {
            let d = f64::try_from((x - y).abs().max()).unwrap();
            assert!(d <= 1e-7, "step {step}: {name} differs by {d}");
        }
        for ((n, x), (m, y)) in fused.state().iter().zip(plain.state()) {
            assert_eq!(n, &m);
            let d = f64::try_from(
                (x.to_kind(Kind::Double) - y.to_kind(Kind::Double))
                    .abs()
                    .max(),
            )
            .unwrap();
            assert!(d <= 1e-7, "step {step}: state {n} differs by {d}");
        }
    }
    // The weights moved (the step is not a no-op).
    let name = "transformer.h.0.mlp.c_fc.weight";
    let now = &lm.var_store().variables()[name];
    let moved = f64::try_from((now - &start[name]).abs().max()).unwrap();
    assert!(moved > 1e-3, "{moved}");
}

#[test]
fn fused_step_does_not_depend_on_how_large_variables_are_split() {
    // A variable larger than one thread's share, plus small ones: the result must not depend on
    // how the work is split.
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let big = vs.root().var(
        "big",
        &[300_001],
        tch::nn::Init::Uniform { lo: -1.0, up: 1.0 },
    );
    let small = vs.root().var("small", &[7], tch::nn::Init::Const(0.5));
    let vs2 = tch::nn::VarStore::new(tch::Device::Cpu);
    let big2 = vs2.root().var("big", &[300_001], tch::nn::Init::Const(0.0));
    let small2 = vs2.root().var("small", &[7], tch::nn::Init::Const(0.5));
    tch::no_grad(|| {
        let mut b2 = big2.shallow_clone();
        b2.copy_(&big);
    });
    let cfg = AdamWConfig {
        lr: 0.05,
        ..Default::default()
    };
    let mut fused = AdamW::new(&vs, &cfg).unwrap();
    let mut plain = AdamW::new(&vs2, &cfg).unwrap();
    for _ in 0..2 {
        fused.zero_grad();
        plain.zero_grad();
        ((&big * &big).sum(Kind::Float) + small.sum(Kind::Float)).backward();
        ((&big2 * &big2).sum(Kind::Float) + small2.sum(Kind::Float)).backward();
        fused.step();
        plain.step_tensor_ops();
    }
    assert!(f64::try_from((&big - &big2).abs().max()).unwrap() <= 1e-6);
    assert!(f64::try_from((&small - &small2).abs().max()).unwrap() <= 1e-6);
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn retain_freed_memory_is_accepted_by_glibc() {
    assert!(rlhf_model::train::retain_freed_memory());
    // Idempotent, and allocation still works.
    assert!(rlhf_model::train::retain_freed_memory());
    let t = Tensor::ones([1 << 24], (Kind::Float, tch::Device::Cpu));
    assert_eq!(t.sum(Kind::Float).double_value(&[]), (1 << 24) as f64);
}

#[test]
fn zero_grad_backward_equals_zero_grad_then_backward_and_accumulates_after() {
    let lm = small_lm(12);
    let mut opt = AdamW::new(lm.var_store(), &AdamWConfig::default()).unwrap();
    let ids = Tensor::from_slice(&[3i64, 14, 15, 92, 65, 35, 89, 79, 32, 38]).view([2, 5]);
    let other = Tensor::from_slice(&[2i64, 7, 1, 8, 28, 18, 28, 45, 90, 45]).view([2, 5]);
    let loss = |x: &Tensor| -> Tensor {
        -lm.token_log_probs(x, &x.ones_like(), 1.0, false)
            .unwrap()
            .mean(Kind::Float)
    };
    let grads = || -> std::collections::BTreeMap<String, Tensor> {
        lm.var_store()
            .variables()
            .into_iter()
            .map(|(n, v)| (n, v.grad().copy()))
            .collect()
    };
    // First call: no gradient exists yet (the plain path).
    opt.zero_grad_backward(&loss(&ids)).unwrap();
    let first = grads();
    // Stale gradients from another batch, then the fused call: same as zero_grad + backward.
    loss(&other).backward();
    opt.zero_grad_backward(&loss(&ids)).unwrap();
    let fused = grads();
    opt.zero_grad();
    loss(&ids).backward();
    let plain = grads();
    for (name, p) in &plain {
        assert!(
            p.equal(&fused[name]) && p.equal(&first[name]),
            "{name} differs"
        );
        assert!(fused[name].is_contiguous(), "{name}");
    }
    // Later micro-batches accumulate on top.
    opt.zero_grad_backward(&loss(&ids)).unwrap();
    loss(&other).backward();
    let accumulated = grads();
    opt.zero_grad();
    loss(&other).backward();
    for (name, o) in grads() {
        let want = &plain[&name] + o;
        let d = f64::try_from((&accumulated[&name] - want).abs().max()).unwrap();
        assert!(d < 1e-6, "{name}: {d}");
    }
    // And the optimizer steps with them.
    opt.zero_grad_backward(&loss(&ids)).unwrap();
    opt.step();
}

/// `n` f32 values, normal(0, std), each exactly representable in bf16.
fn bf16_representable(n: i64, std: f64) -> Tensor {
    (Tensor::randn([n], (Kind::Float, tch::Device::Cpu)) * std)
        .to_kind(Kind::BFloat16)
        .to_kind(Kind::Float)
}

/// A store holding one variable `w` with these values, in `kind`.
fn one_var(values: &Tensor, kind: Kind) -> tch::nn::VarStore {
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = vs.root().var_copy("w", values);
    vs.set_kind(kind);
    vs
}

/// `steps` AdamW steps of `vs`'s `w` with the constant gradient `g` (optionally a state
/// round trip through a new optimizer after `restart_at` steps); returns `w` in f32.
fn train_w(
    vs: &tch::nn::VarStore,
    g: &Tensor,
    cfg: &AdamWConfig,
    steps: usize,
    restart_at: Option<usize>,
) -> Tensor {
    let w = vs.variables()["w"].shallow_clone();
    let mut opt = AdamW::new(vs, cfg).unwrap();
    for i in 0..steps {
        if restart_at == Some(i) {
            let state: std::collections::BTreeMap<String, Tensor> = opt
                .state()
                .into_iter()
                .map(|(k, t)| (k, t.copy()))
                .collect();
            opt = AdamW::new(vs, cfg).unwrap();
            opt.load_state(&state).unwrap();
        }
        opt.zero_grad();
        (&w * g.to_kind(w.kind())).sum(Kind::Float).backward();
        opt.step();
    }
    w.detach().to_kind(Kind::Float)
}

#[test]
fn bf16_variables_take_updates_below_their_rounding_step_through_f32_masters() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    // Weights of GPT-2's scale and a gradient of either sign.
    let w0 = bf16_representable(2000, 0.02);
    let g = bf16_representable(2000, 1.0);
    // lr 1e-5 (W-PPO's): each step moves a weight by about 1e-5, under half the bf16 step of
    // most of them (6e-5 at |w| in [0.016, 0.031)).
    let cfg = AdamWConfig {
        lr: 1e-5,
        weight_decay: 0.1,
        ..Default::default()
    };
    let steps = 200;
    let reference = train_w(&one_var(&w0, Kind::Float), &g, &cfg, steps, None);
    let bf = train_w(&one_var(&w0, Kind::BFloat16), &g, &cfg, steps, None);
    let moved_f32 = f64::try_from((&reference - &w0).abs().mean(Kind::Float)).unwrap();
    let moved_bf = f64::try_from((&bf - &w0).abs().mean(Kind::Float)).unwrap();
    assert!(moved_f32 > 1.5e-3, "f32 moved {moved_f32}");
    assert!(
        (moved_bf / moved_f32 - 1.0).abs() < 0.1,
        "bf16 weights moved {moved_bf} on average, f32 ones {moved_f32}"
    );
    // Each bf16 weight is the rounding of the f32 trajectory: within one bf16 step of it.
    let step = reference.abs() * 2f64.powi(-7) + 1e-9;
    let off = (&bf - &reference).abs() - step;
    assert!(
        f64::try_from(off.max()).unwrap() <= 0.0,
        "a bf16 weight left the f32 trajectory by more than its rounding step"
    );
    // The masters are saved and restored with the state: a restart is invisible.
    let resumed = train_w(&one_var(&w0, Kind::BFloat16), &g, &cfg, steps, Some(77));
    assert!(
        resumed.equal(&bf),
        "a state round trip changed the bf16 trajectory"
    );
}

#[test]
fn bf16_master_follows_weights_written_after_the_optimizer_was_built() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(6);
    let w0 = bf16_representable(64, 0.02);
    let vs = one_var(&w0, Kind::BFloat16);
    let w = vs.variables()["w"].shallow_clone();
    let mut opt = AdamW::new(&vs, &AdamWConfig::default()).unwrap();
    // New weights arrive (a checkpoint loaded, rank 0's weights broadcast): the step must
    // start from them, not from the master taken when the optimizer was built.
    let loaded = Tensor::full([64], 0.5, (Kind::BFloat16, tch::Device::Cpu));
    tch::no_grad(|| w.shallow_clone().copy_(&loaded));
    (&w * 0.0).sum(Kind::Float).backward();
    opt.step();
    assert!(
        w.equal(&loaded),
        "a zero-gradient step moved the loaded weights: {:?}",
        w.get(0)
    );
}
