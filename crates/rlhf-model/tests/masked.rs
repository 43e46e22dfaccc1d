//! `Policy::masked_token_log_probs`: CausalLm's override (unembedding and softmax at the
//! selected rows only) against the full logits, in value and gradient; and the default
//! implementation that user policies inherit.

mod common;
use common::*;
use rlhf_model::{CausalLm, ModelError, Policy};
use tch::{nn, Kind, Tensor};

/// A user policy with only the required methods: it inherits the default
/// `masked_token_log_probs` (full logits, then select).
struct Plain<'a>(&'a CausalLm);

impl Policy for Plain<'_> {
    fn logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> rlhf_model::Result<Tensor> {
        self.0.logits(input_ids, attention_mask, train)
    }
    fn var_store(&self) -> &nn::VarStore {
        self.0.var_store()
    }
}

/// A batch with right and left padding, and a target mask with fractional weights, an empty
/// row and a selected pad position.
fn batch() -> (Tensor, Tensor, Tensor) {
    let (ids, mask) = padded_batch();
    let target = Tensor::from_slice(&[
        0f32, 0., 0., 1., 1., 0.5, 1., // response tokens 3..=6, one weighted
        0., 0., 1., 0., 0., 0., 0., // one token, then padding
        0., 0., 0., 0., 0., 0., 0., // nothing
        1., 1., 1., 1., 1., 1., 1., // everything (column 0 is ignored)
    ])
    .view([4, 7]);
    (ids, mask, target)
}

#[test]
fn causal_lm_override_equals_full_logits_in_value_and_gradient() {
    let lm = small_lm(3);
    let (ids, mask, target) = batch();
    for temperature in [1.0, 0.7] {
        // Full path: every logit, then select.
        zero_grads(lm.var_store());
        let full = lm.token_log_probs(&ids, &mask, temperature, false).unwrap();
        let sel = target.narrow(1, 1, 6).ne(0);
        let want = full.masked_select(&sel);
        let w = target.narrow(1, 1, 6).masked_select(&sel);
        (&want * &w).sum(Kind::Float).backward();
        let g_full = grads(lm.var_store());

        zero_grads(lm.var_store());
        let got = lm
            .masked_token_log_probs(&ids, &mask, &target, temperature, false)
            .unwrap();
        assert_eq!(got.size(), [4 + 1 + 6]);
        assert_eq!(got.kind(), Kind::Float);
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-5, "T={temperature}: log-probs differ by {d}");
        (&got * &w).sum(Kind::Float).backward();
        let g_masked = grads(lm.var_store());

        assert_eq!(g_full.len(), g_masked.len());
        for (name, a) in &g_full {
            let b = &g_masked[name];
            let scale = f64::try_from(a.abs().max()).unwrap().max(1e-6);
            let d = max_abs_diff(a, b) / scale;
            assert!(
                d < 1e-4,
                "T={temperature}: grad of {name} differs by {d} (relative)"
            );
        }
        // The unembedding's gradient is not trivially zero.
        assert!(f64::try_from(g_masked["transformer.wte.weight"].abs().max()).unwrap() > 0.0);
    }
}

#[test]
fn default_implementation_selects_from_the_full_logits() {
    let lm = small_lm(4);
    let (ids, mask, target) = batch();
    let plain = Plain(&lm);
    let a =
        tch::no_grad(|| plain.masked_token_log_probs(&ids, &mask, &target, 0.7, false)).unwrap();
    let b = tch::no_grad(|| lm.masked_token_log_probs(&ids, &mask, &target, 0.7, false)).unwrap();
    assert_eq!(a.size(), b.size());
    assert!(max_abs_diff(&a, &b) < 1e-5);
}

#[test]
fn matches_a_plain_loop_over_the_logits() {
    let lm = small_lm(5);
    let (ids, mask, target) = batch();
    let logits = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
    let got = tch::no_grad(|| lm.masked_token_log_probs(&ids, &mask, &target, 1.0, false)).unwrap();
    let got = Vec::<f32>::try_from(&got).unwrap();
    let mut want = vec![];
    for b in 0..4 {
        for t in 1..7 {
            if target.double_value(&[b, t]) == 0.0 {
                continue;
            }
            let row = Vec::<f64>::try_from(logits.get(b).get(t - 1).to_kind(Kind::Double)).unwrap();
            let mx = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = mx + row.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
            want.push(row[ids.int64_value(&[b, t]) as usize] - lse);
        }
    }
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
    }
}

#[test]
fn empty_selection_gives_an_empty_result_and_a_zero_gradient() {
    let lm = small_lm(6);
    let (ids, mask, target) = batch();
    zero_grads(lm.var_store());
    let lp = lm
        .masked_token_log_probs(&ids, &mask, &target.zeros_like(), 1.0, false)
        .unwrap();
    assert_eq!(lp.size(), [0]);
    lp.sum(Kind::Float).backward();
    for (name, g) in grads(lm.var_store()) {
        assert!(
            !g.defined() || f64::try_from(g.abs().max()).unwrap() == 0.0,
            "{name}"
        );
    }
}

#[test]
fn bad_target_mask_shape_is_an_input_error() {
    let lm = small_lm(7);
    let (ids, mask, _) = batch();
    let bad = Tensor::ones([4, 6], (Kind::Float, tch::Device::Cpu));
    match lm.masked_token_log_probs(&ids, &mask, &bad, 1.0, false) {
        Err(ModelError::Input(msg)) => assert!(msg.contains("target_mask"), "{msg}"),
        other => panic!("expected an input error, got {other:?}"),
    }
    match Plain(&lm).masked_token_log_probs(&ids, &mask, &bad, 1.0, false) {
        Err(ModelError::Input(_)) => {}
        other => panic!("expected an input error, got {other:?}"),
    }
}

/// `Policy::logits_for_last`: CausalLm's override (unembedding at the last `n` predicting
/// positions only) equals the full logits narrowed, in value and gradient, for left- and
/// right-padded rows; the default (user policies) equals it too.
#[test]
fn logits_for_last_equals_the_full_logits_narrowed_in_value_and_gradient() {
    let lm = small_lm(8);
    let (ids, mask, _) = batch();
    let w = Tensor::randn(
        [4, 6, lm.config().vocab_size()],
        (Kind::Float, tch::Device::Cpu),
    );
    for n in [1i64, 3, 6] {
        zero_grads(lm.var_store());
        let full = lm.logits(&ids, &mask, false).unwrap().narrow(1, 6 - n, n);
        let wn = w.narrow(1, 0, n);
        (&full * &wn).sum(Kind::Float).backward();
        let g_full = grads(lm.var_store());

        zero_grads(lm.var_store());
        let got = lm.logits_for_last(&ids, &mask, n, false).unwrap();
        assert_eq!(got.size(), [4, n, lm.config().vocab_size()]);
        let d = max_abs_diff(&got, &full);
        assert!(d < 1e-5, "n={n}: logits differ by {d}");
        (&got * &wn).sum(Kind::Float).backward();
        for (name, a) in &g_full {
            let b = &grads(lm.var_store())[name];
            let scale = f64::try_from(a.abs().max()).unwrap().max(1e-6);
            let d = max_abs_diff(a, b) / scale;
            assert!(d < 1e-4, "n={n}: grad of {name} differs by {d} (relative)");
        }

        let plain = tch::no_grad(|| Plain(&lm).logits_for_last(&ids, &mask, n, false)).unwrap();
        assert!(max_abs_diff(&plain, &full) < 1e-5);
    }
}

#[test]
fn logits_for_last_refuses_n_outside_one_to_t() {
    let lm = small_lm(9);
    let (ids, mask, _) = batch();
    for n in [0i64, 7, -1] {
        match lm.logits_for_last(&ids, &mask, n, false) {
            Err(ModelError::Input(msg)) => assert!(msg.contains("logits_for_last"), "{msg}"),
            other => panic!("n={n}: expected an input error, got {other:?}"),
        }
        assert!(matches!(
            Plain(&lm).logits_for_last(&ids, &mask, n, false),
            Err(ModelError::Input(_))
        ));
    }
}
