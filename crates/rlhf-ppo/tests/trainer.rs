//! The trainer on tiny models: what it touches and what it leaves alone, that it learns, ptx,
//! micro-batch accumulation, early stopping, determinism and config errors.

mod common;

use common::*;
use rlhf_model::train::{MemoryMetrics, NoMetrics};
use rlhf_model::{CausalLm, Policy, ScalarModel};
use rlhf_ppo::ops::masked_mean;
use rlhf_ppo::{
    ptx_loss, AdaptiveKlConfig, LmBatch, PpoConfig, PpoError, PpoModels, PpoTrainer, PtxSource,
    SpecialTokens,
};
use tch::{Kind, Tensor};

const EOS: i64 = 1;

fn fast_config(batch: usize, mb: usize) -> PpoConfig {
    let mut cfg = PpoConfig {
        batch_size: batch,
        minibatch_size: mb,
        ppo_epochs: 4,
        max_new_tokens: 8,
        kl_coef: 0.05,
        lr_warmup_iterations: 0,
        seed: 7,
        ..PpoConfig::default()
    };
    cfg.policy_optimizer.lr = 3e-3;
    cfg.value_optimizer.lr = 3e-3;
    cfg
}

type Trainer<M> = PpoTrainer<CausalLm, CausalLm, M, ScalarModel>;

fn trainer_with_rm(cfg: PpoConfig, seed: i64, eos: Option<i64>) -> Trainer<ScalarModel> {
    let (policy, reference, reward, value) = models(seed);
    let m = PpoModels {
        policy,
        reference,
        reward,
        value,
    };
    PpoTrainer::new(cfg, m, SpecialTokens { eos, pad: 0 }).unwrap()
}

fn trainer_with_rule(cfg: PpoConfig, seed: i64, target: i64) -> Trainer<CountReward> {
    let (policy, reference, _, value) = models(seed);
    let m = PpoModels {
        policy,
        reference,
        reward: CountReward {
            target,
            prompt_len: PROMPT_LEN,
        },
        value,
    };
    PpoTrainer::new(cfg, m, SpecialTokens { eos: None, pad: 0 }).unwrap()
}

/// A fixed pretraining batch, served again and again.
struct FixedPtx(Tensor);

impl PtxSource for FixedPtx {
    fn next_batch(&mut self) -> rlhf_ppo::Result<LmBatch> {
        Ok(LmBatch {
            input_ids: self.0.shallow_clone(),
            attention_mask: self.0.ones_like(),
            loss_mask: self.0.ones_like().to_kind(Kind::Float),
        })
    }
}

fn pretrain_batch() -> Tensor {
    // A repetitive "language": counting up modulo the vocabulary.
    let rows: Vec<i64> = (0..4)
        .flat_map(|r| (0..12).map(move |j| 2 + (r + j) % (VOCAB - 2)))
        .collect();
    Tensor::from_slice(&rows).view([4, 12])
}

#[test]
fn rollout_has_no_graph_and_the_right_shapes() {
    let tr = trainer_with_rm(fast_config(8, 4), 1, Some(EOS));
    let (ids, mask) = prompts(8, 2);
    let r = tr.rollout(&ids, &mask).unwrap();
    assert!(r.is_graph_free());
    let n = r.response_len();
    assert!((1..=8).contains(&n));
    assert_eq!(r.logprobs.size(), [8, n]);
    assert_eq!(r.ref_logprobs.size(), [8, n]);
    assert_eq!(r.values.size(), [8, n]);
    assert_eq!(r.scores.size(), [8]);
    // Reference = policy at the start: the log-probs agree, so the KL is 0.
    let d = (&r.logprobs - &r.ref_logprobs)
        .abs()
        .max()
        .double_value(&[]);
    assert!(d < 1e-5, "{d}");
    // After EOS: pad and mask 0; the mask is a prefix.
    let m = Vec::<f32>::try_from(r.response_mask.view([-1])).unwrap();
    let toks = Vec::<i64>::try_from(r.response.view([-1])).unwrap();
    let eos = Vec::<bool>::try_from(r.has_eos.as_ref().unwrap()).unwrap();
    for row in 0..8 {
        let mr = &m[row * n as usize..(row + 1) * n as usize];
        let tr = &toks[row * n as usize..(row + 1) * n as usize];
        let len = mr.iter().filter(|&&x| x > 0.0).count();
        assert!(mr[..len].iter().all(|&x| x == 1.0) && mr[len..].iter().all(|&x| x == 0.0));
        assert!(tr[len..].iter().all(|&t| t == 0));
        assert_eq!(eos[row], tr[..len].contains(&EOS));
        if eos[row] {
            assert_eq!(tr[len - 1], EOS, "EOS is the last real token");
        }
    }
}

#[test]
fn value_warmup_trains_the_value_function_alone() {
    let cfg = PpoConfig {
        value_warmup_iterations: 1,
        ..fast_config(8, 4)
    };
    let mut tr = trainer_with_rm(cfg, 3, Some(EOS));
    let p0 = snapshot(tr.policy().var_store());
    let v0 = snapshot(rlhf_model::ValueFunction::var_store(tr.value()));
    let (ids, mask) = prompts(8, 4);
    let mut metrics = MemoryMetrics::default();
    // Warm-up: the policy keeps its weights, takes no optimizer step and computes no gradient.
    let s = tr.step(&ids, &mask, None, &mut metrics).unwrap();
    assert_eq!(s.optimizer_steps, 0);
    assert_eq!((s.lr, s.policy_grad_norm), (0.0, 0.0));
    assert_eq!(max_change(&p0, &snapshot(tr.policy().var_store())), 0.0);
    let v1 = snapshot(rlhf_model::ValueFunction::var_store(tr.value()));
    assert!(
        max_change(&v0, &v1) > 1e-4,
        "the value function did not train"
    );
    // After it, both train.
    let s = tr.step(&ids, &mask, None, &mut metrics).unwrap();
    assert_eq!(s.optimizer_steps, 4 * 2);
    assert!(s.lr > 0.0 && s.policy_grad_norm > 0.0);
    assert!(max_change(&p0, &snapshot(tr.policy().var_store())) > 1e-4);
}

#[test]
fn step_trains_policy_and_value_and_leaves_reference_and_reward_alone() {
    let cfg = PpoConfig {
        adaptive_kl: Some(AdaptiveKlConfig {
            target: 0.5,
            horizon: 100.0,
        }),
        ..fast_config(8, 4)
    };
    let mut tr = trainer_with_rm(cfg, 3, Some(EOS));
    let before_p = snapshot(tr.policy().var_store());
    let before_v = snapshot(rlhf_model::ValueFunction::var_store(tr.value()));
    let before_r = snapshot(tr.reference().var_store());
    let before_rm = snapshot(rlhf_model::ValueFunction::var_store(tr.reward_model()));
    let (ids, mask) = prompts(8, 4);
    let mut metrics = MemoryMetrics::default();
    for _ in 0..2 {
        let s = tr.step(&ids, &mask, None, &mut metrics).unwrap();
        assert_eq!(s.optimizer_steps, 4 * 2);
    }
    assert_eq!(tr.iteration(), 2);
    assert!(max_change(&before_p, &snapshot(tr.policy().var_store())) > 1e-4);
    assert!(
        max_change(
            &before_v,
            &snapshot(rlhf_model::ValueFunction::var_store(tr.value()))
        ) > 1e-4
    );
    assert_eq!(
        max_change(&before_r, &snapshot(tr.reference().var_store())),
        0.0
    );
    assert_eq!(
        max_change(
            &before_rm,
            &snapshot(rlhf_model::ValueFunction::var_store(tr.reward_model()))
        ),
        0.0
    );
    // No graph was ever built through the frozen models: none of their variables has a grad.
    for (_, v) in tr.reference().var_store().variables() {
        assert!(!v.grad().defined());
    }
    for (_, v) in rlhf_model::ValueFunction::var_store(tr.reward_model()).variables() {
        assert!(!v.grad().defined());
    }
    // The standard metric names, finite.
    assert_eq!(metrics.records.len(), 2);
    assert_eq!(metrics.records[1].0, 2);
    for name in [
        "objective/kl",
        "objective/scores",
        "objective/entropy",
        "objective/kl_coef",
        "policy/approxkl",
        "policy/clipfrac",
        "loss/policy",
        "loss/value",
        "loss/ptx",
        "val/explained_variance",
        "time/generation",
        "time/scoring",
        "time/training",
    ] {
        let s = metrics.series(name);
        assert_eq!(s.len(), 2, "{name}");
        assert!(s.iter().all(|x| x.is_finite()), "{name}: {s:?}");
    }
    // First iteration: KL to the (identical) reference is 0, so the adaptive controller
    // (target 0.5) lowers beta.
    let kl = metrics.series("objective/kl");
    assert!(kl[0].abs() < 1e-4, "{kl:?}");
    let beta = metrics.series("objective/kl_coef");
    assert!(beta[1] < beta[0], "{beta:?}");
}

#[test]
fn ppo_raises_a_rule_based_reward_with_bounded_kl() {
    let mut cfg = fast_config(32, 8);
    cfg.kl_coef = 0.02;
    let mut tr = trainer_with_rule(cfg, 5, 3);
    let (ids, mask) = prompts(32, 6);
    let mut metrics = MemoryMetrics::default();
    for _ in 0..25 {
        tr.step(&ids, &mask, None, &mut metrics).unwrap();
    }
    let scores = metrics.series("objective/scores");
    let kl = metrics.series("objective/kl");
    let first: f64 = scores[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = scores[scores.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(first < 0.2, "a random policy rarely emits token 3: {first}");
    assert!(last > first + 0.3, "scores {scores:?}");
    assert!(kl.iter().all(|k| k.is_finite() && *k < 30.0), "kl {kl:?}");
    let ev = metrics.series("val/explained_variance");
    assert!(ev.iter().all(|x| x.is_finite()));
}

#[test]
fn ptx_gradient_is_gamma_times_the_lm_loss_gradient() {
    let (policy, ..) = models(9);
    let ids = pretrain_batch();
    let batch = LmBatch {
        input_ids: ids.shallow_clone(),
        attention_mask: ids.ones_like(),
        loss_mask: Tensor::from_slice(&[1.0f32; 48]).view([4, 12]),
    };
    let grads = |loss: Tensor| {
        for v in policy.var_store().trainable_variables() {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss.backward();
        snapshot_grads(&policy)
    };
    let gamma = 2.5;
    let g_ptx = grads(ptx_loss(&policy, &batch, gamma).unwrap());
    let g_lm = grads(
        rlhf_sft::masked_lm_loss(
            &policy,
            &batch.input_ids,
            &batch.attention_mask,
            &batch.loss_mask,
            false,
        )
        .unwrap(),
    );
    let mut biggest = 0.0f64;
    for (a, b) in g_ptx.iter().zip(&g_lm) {
        let d = (a - b * gamma).abs().max().double_value(&[]);
        assert!(d < 1e-5, "{d}");
        biggest = biggest.max(b.abs().max().double_value(&[]));
    }
    assert!(biggest > 1e-3, "the LM loss has a real gradient");
}

fn snapshot_grads(p: &CausalLm) -> Vec<Tensor> {
    let mut v: Vec<(String, Tensor)> = p.var_store().variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, t)| t.grad().copy()).collect()
}

fn pretrain(p: &mut CausalLm) {
    let ids = pretrain_batch();
    let mut opt = rlhf_model::train::AdamWConfig {
        lr: 1e-2,
        ..Default::default()
    }
    .build(p.var_store())
    .unwrap();
    for _ in 0..60 {
        let loss = rlhf_sft::masked_lm_loss(
            &*p,
            &ids,
            &ids.ones_like(),
            &ids.ones_like().to_kind(Kind::Float),
            false,
        )
        .unwrap();
        opt.backward_step(&loss);
    }
}

fn lm_loss(p: &CausalLm) -> f64 {
    let ids = pretrain_batch();
    tch::no_grad(|| {
        rlhf_sft::masked_lm_loss(
            p,
            &ids,
            &ids.ones_like(),
            &ids.ones_like().to_kind(Kind::Float),
            false,
        )
        .unwrap()
        .double_value(&[])
    })
}

#[test]
fn ptx_keeps_the_pretraining_loss_closer_to_the_start_than_plain_ppo() {
    let (ids, mask) = prompts(16, 11);
    let run = |ptx_coef: f64| {
        let cfg = PpoConfig {
            ptx_coef,
            ..fast_config(16, 8)
        };
        // "SFT": the policy (and reference) first learn the pretraining batch.
        let (mut policy, mut reference, _, value) = models(12);
        pretrain(&mut policy);
        reference.var_store_mut().copy(policy.var_store()).unwrap();
        let m = PpoModels {
            policy,
            reference,
            reward: CountReward {
                target: 3,
                prompt_len: PROMPT_LEN,
            },
            value,
        };
        let mut tr = PpoTrainer::new(cfg, m, SpecialTokens { eos: None, pad: 0 }).unwrap();
        let start = lm_loss(tr.policy());
        let mut src = FixedPtx(pretrain_batch());
        let mut metrics = MemoryMetrics::default();
        for _ in 0..8 {
            let ptx: Option<&mut dyn PtxSource> =
                if ptx_coef > 0.0 { Some(&mut src) } else { None };
            tr.step(&ids, &mask, ptx, &mut metrics).unwrap();
        }
        (start, lm_loss(tr.policy()), metrics.series("loss/ptx"))
    };
    let (start, plain, plain_ptx) = run(0.0);
    let (start2, with_ptx, logged) = run(1.0);
    assert_eq!(start, start2);
    assert!(start < 1.0, "pretrained: {start}");
    assert!(plain_ptx.iter().all(|&x| x == 0.0));
    assert!(logged.iter().all(|&x| x > 0.0));
    assert!(
        plain > start + 0.02,
        "plain PPO pays an alignment tax: {start} -> {plain}"
    );
    assert!(
        (with_ptx - start).abs() < (plain - start).abs(),
        "start {start}, plain PPO {plain}, PPO-ptx {with_ptx}"
    );
}

#[test]
fn micro_batches_accumulate_to_the_minibatch_update() {
    let mk = |micro: usize| {
        let mut cfg = PpoConfig {
            micro_batch_size: micro,
            ppo_epochs: 1,
            ..fast_config(8, 8)
        };
        // eps = 1 makes Adam's first step ~ lr * g (not lr * sign(g)), so the comparison
        // measures gradients rather than the signs of near-zero ones.
        for o in [&mut cfg.policy_optimizer, &mut cfg.value_optimizer] {
            o.lr = 1.0;
            o.eps = 1.0;
        }
        trainer_with_rule(cfg, 21, 3)
    };
    let (mut a, mut b) = (mk(0), mk(2));
    let (ids, mask) = prompts(8, 22);
    let roll = a.rollout(&ids, &mask).unwrap();
    let adv = a.advantages(&roll);
    let before = snapshot(a.policy().var_store());
    let sa = a.update(&roll, &adv, None).unwrap();
    let sb = b.update(&roll, &adv, None).unwrap();
    assert_eq!((sa.optimizer_steps, sb.optimizer_steps), (1, 1));
    let (pa, pb) = (
        snapshot(a.policy().var_store()),
        snapshot(b.policy().var_store()),
    );
    assert!(
        max_change(&before, &pa) > 1e-4,
        "the update moved the weights"
    );
    let d = max_change(&pa, &pb);
    assert!(
        d < 1e-5,
        "accumulated micro-batches differ from one batch: {d}"
    );
    let va = snapshot(rlhf_model::ValueFunction::var_store(a.value()));
    let vb = snapshot(rlhf_model::ValueFunction::var_store(b.value()));
    assert!(max_change(&va, &vb) < 1e-5);
    assert!((sa.policy_loss - sb.policy_loss).abs() < 1e-5);
}

#[test]
fn scoring_chunks_of_any_size_give_the_same_rollout() {
    // scoring_batch_size only changes how many rows each no-grad forward pass takes: the same
    // tokens (generation is untouched) and the same scores to float rounding.
    let (ids, mask) = prompts(8, 23);
    let roll = |scoring: usize| {
        let cfg = PpoConfig {
            scoring_batch_size: scoring,
            ..fast_config(8, 4)
        };
        trainer_with_rm(cfg, 24, Some(EOS))
            .rollout(&ids, &mask)
            .unwrap()
    };
    let (a, b, c) = (roll(0), roll(8), roll(3));
    for other in [&b, &c] {
        assert!(a.response.equal(&other.response), "same sampled tokens");
        for (name, x, y) in [
            ("logprobs", &a.logprobs, &other.logprobs),
            ("ref_logprobs", &a.ref_logprobs, &other.ref_logprobs),
            ("values", &a.values, &other.values),
            ("scores", &a.scores, &other.scores),
        ] {
            let d = (x - y).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{name} differ by {d}");
        }
    }
}

#[test]
fn logprobs_from_generation_agree_with_the_scoring_pass() {
    // The sampler's log-probs replace the policy's scoring pass: the same tokens, reference
    // log-probs, values and scores (bit for bit: the same passes), and old log-probs equal to
    // the forward pass's to float rounding, 0 after EOS.
    let (ids, mask) = prompts(8, 23);
    let trainer = |from_generation: bool| {
        let mut cfg = PpoConfig {
            logprobs_from_generation: from_generation,
            ..fast_config(8, 4)
        };
        // eps = 1: Adam's first step ~ lr * g, not lr * sign(g), which rounding would flip
        // for near-zero gradients.
        for o in [&mut cfg.policy_optimizer, &mut cfg.value_optimizer] {
            o.lr = 1.0;
            o.eps = 1.0;
        }
        trainer_with_rm(cfg, 24, Some(EOS))
    };
    let (mut a, mut b) = (trainer(false), trainer(true));
    let start = snapshot(a.policy().var_store());
    let (ra, rb) = (
        a.rollout(&ids, &mask).unwrap(),
        b.rollout(&ids, &mask).unwrap(),
    );
    assert!(ra.response.equal(&rb.response), "same sampled tokens");
    assert!(ra.response_mask.equal(&rb.response_mask));
    let after_eos = rb.response_mask.eq(0.0);
    assert!(
        bool::try_from(after_eos.any()).unwrap(),
        "some row stops at EOS, so the padding is tested"
    );
    for (name, x, y) in [
        ("ref_logprobs", &ra.ref_logprobs, &rb.ref_logprobs),
        ("values", &ra.values, &rb.values),
        ("scores", &ra.scores, &rb.scores),
    ] {
        assert!(x.equal(y), "{name} differ");
    }
    let d = ((&ra.logprobs - &rb.logprobs) * &ra.response_mask)
        .abs()
        .max()
        .double_value(&[]);
    assert!(d < 1e-5, "old log-probs differ by {d}");
    let pad_lp = rb.logprobs.masked_select(&after_eos);
    assert!(bool::try_from(pad_lp.eq(0.0).all()).unwrap(), "0 after EOS");
    // A whole step trains to the same weights, to rounding.
    let sa = a.update(&ra, &a.advantages(&ra), None).unwrap();
    let sb = b.update(&rb, &b.advantages(&rb), None).unwrap();
    assert_eq!(sa.optimizer_steps, sb.optimizer_steps);
    let d = max_change(
        &snapshot(a.policy().var_store()),
        &snapshot(b.policy().var_store()),
    );
    assert!(d < 1e-4, "policies differ by {d} after one update");
    let moved = max_change(&start, &snapshot(a.policy().var_store()));
    assert!(
        moved > 100.0 * d.max(1e-6),
        "the update moved the weights ({moved})"
    );
    assert!((sa.approx_kl - sb.approx_kl).abs() < 1e-5);
}

#[test]
fn early_stop_at_target_kl() {
    let cfg = PpoConfig {
        target_kl: Some(1e-12),
        ..fast_config(16, 4)
    };
    let mut tr = trainer_with_rule(cfg, 31, 3);
    let (ids, mask) = prompts(16, 32);
    let s = tr.step(&ids, &mask, None, &mut NoMetrics).unwrap();
    assert!(s.early_stopped);
    assert!(s.optimizer_steps <= 2, "{}", s.optimizer_steps);
    let cfg = fast_config(16, 4);
    let mut tr = trainer_with_rule(cfg, 31, 3);
    let s = tr.step(&ids, &mask, None, &mut NoMetrics).unwrap();
    assert!(!s.early_stopped);
    assert_eq!(s.optimizer_steps, 16);
}

#[test]
fn same_seed_same_run() {
    let (ids, mask) = prompts(8, 41);
    let run = || {
        let mut tr = trainer_with_rm(fast_config(8, 4), 42, Some(EOS));
        let mut m = MemoryMetrics::default();
        for _ in 0..2 {
            tr.step(&ids, &mask, None, &mut m).unwrap();
        }
        (m, snapshot(tr.policy().var_store()))
    };
    let (m1, p1) = run();
    let (m2, p2) = run();
    for name in [
        "objective/scores",
        "objective/kl",
        "loss/policy",
        "loss/value",
    ] {
        assert_eq!(m1.series(name), m2.series(name), "{name}");
    }
    assert_eq!(max_change(&p1, &p2), 0.0);
}

#[test]
fn bad_configs_and_inputs_say_what_to_change() {
    let err = |cfg: PpoConfig| {
        let (policy, reference, reward, value) = models(50);
        let m = PpoModels {
            policy,
            reference,
            reward,
            value,
        };
        PpoTrainer::new(cfg, m, SpecialTokens { eos: None, pad: 0 })
            .unwrap_err()
            .to_string()
    };
    let e = err(fast_config(10, 4));
    assert!(
        e.contains("batch_size 10") && e.contains("minibatch_size 4"),
        "{e}"
    );
    let e = err(PpoConfig {
        micro_batch_size: 3,
        ..fast_config(8, 8)
    });
    assert!(e.contains("micro_batch_size"), "{e}");
    let e = err(PpoConfig {
        gamma: 1.5,
        ..fast_config(8, 8)
    });
    assert!(e.contains("gamma"), "{e}");
    let e = err(PpoConfig {
        max_grad_norm: Some(0.0),
        ..fast_config(8, 8)
    });
    assert!(e.contains("max_grad_norm"), "{e}");

    // ptx_coef > 0 needs pretraining data.
    let mut tr = trainer_with_rule(
        PpoConfig {
            ptx_coef: 1.0,
            ..fast_config(8, 4)
        },
        51,
        3,
    );
    let (ids, mask) = prompts(8, 52);
    let e = tr.step(&ids, &mask, None, &mut NoMetrics).unwrap_err();
    assert!(
        matches!(e, PpoError::Config(_)) && e.to_string().contains("ptx_coef"),
        "{e}"
    );
    // Wrong number of prompts; right-padded prompts.
    let (ids6, mask6) = prompts(6, 53);
    let e = tr.step(&ids6, &mask6, None, &mut NoMetrics).unwrap_err();
    assert!(e.to_string().contains("batch_size is 8"), "{e}");
    let right = mask.flip([1]);
    let e = tr.step(&ids, &right, None, &mut NoMetrics).unwrap_err();
    assert!(e.to_string().contains("LEFT padded"), "{e}");
}

#[test]
fn frozen_models_are_refused_as_trainable() {
    let (policy, reference, reward, mut value) = models(60);
    value.var_store_mut().freeze();
    let m = PpoModels {
        policy,
        reference,
        reward,
        value,
    };
    let e = PpoTrainer::new(fast_config(8, 4), m, SpecialTokens { eos: None, pad: 0 }).unwrap_err();
    assert!(e.to_string().contains("value function"), "{e}");
    // masked_mean is re-exported math: a quick sanity check it is the one used.
    let x = Tensor::from_slice(&[1.0f32, 2.0]);
    assert_eq!(masked_mean(&x, &x.ones_like()).double_value(&[]), 1.5);
    assert!(policy_logits_ok(&models(61).0));
}

/// Rewards responses whose first token is `target` (the toy world's layout: EOS = pad = 0, so
/// responses end early and the score sits on a last real token that moves). It reads the
/// response where PPO says it starts (`score_responses`), and refuses to guess otherwise.
struct FirstTokenReward {
    target: i64,
}

impl rlhf_model::RewardModel for FirstTokenReward {
    fn score(&self, _ids: &Tensor, _mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        Err(rlhf_model::ModelError::Input(
            "needs the response start".into(),
        ))
    }

    fn score_responses(
        &self,
        ids: &Tensor,
        _mask: &Tensor,
        response_start: i64,
        _train: bool,
    ) -> rlhf_model::Result<Tensor> {
        assert_eq!(response_start, PROMPT_LEN, "PPO passes the prompt width");
        Ok(ids
            .select(1, response_start)
            .eq(self.target)
            .to_kind(Kind::Float))
    }
}

#[test]
fn ppo_raises_a_reward_with_eos_equal_to_pad() {
    let mut cfg = fast_config(32, 8);
    cfg.kl_coef = 0.02;
    let (policy, reference, _, value) = models(21);
    let m = PpoModels {
        policy,
        reference,
        reward: FirstTokenReward { target: 3 },
        value,
    };
    let mut tr = PpoTrainer::new(
        cfg,
        m,
        SpecialTokens {
            eos: Some(0),
            pad: 0,
        },
    )
    .unwrap();
    let (ids, mask) = prompts(32, 22);
    let mut metrics = MemoryMetrics::default();
    for _ in 0..25 {
        tr.step(&ids, &mask, None, &mut metrics).unwrap();
    }
    let scores = metrics.series("objective/scores");
    let first: f64 = scores[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = scores[scores.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(last > first + 0.3, "scores {scores:?}");
}
