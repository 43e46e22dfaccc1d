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
