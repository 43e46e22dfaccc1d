//! PPO sanity check outside the toy world: a tiny random GPT-2 policy, a reward model written
//! here (the share of response tokens equal to a target id), and the public `PpoTrainer`
//! through `step` alone. If the mean reward does not rise, something between sampling, the
//! reward hook, the advantages and the update is broken, whatever the toy world says.

use rlhf_model::train::NoMetrics;
use rlhf_model::{CausalLm, Gpt2Config, HeadKind, Policy, RewardModel, ScalarModel};
use rlhf_ppo::{IterationStats, PpoConfig, PpoModels, PpoTrainer, SpecialTokens};
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 32;
/// Prompts are left-padded to this width, so the response starts at this column.
const PROMPT_WIDTH: i64 = 4;
const BATCH: usize = 32;
const ITERATIONS: usize = 16;
/// A token that is neither the pad (0) nor EOS (`VOCAB - 1`).
const TARGET: i64 = 5;

/// The share of each response's real tokens (EOS included) that equal `target`: a reward that
/// knows nothing of models, reached by PPO only through the `RewardModel` trait.
struct TargetShare {
    target: i64,
    prompt_width: i64,
}

impl RewardModel for TargetShare {
    /// `[B, P + N]` ids and mask -> `[B]`.
    fn score(&self, ids: &Tensor, mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        let n = ids.size()[1] - self.prompt_width;
        let resp = ids.narrow(1, self.prompt_width, n);
        let m = mask.narrow(1, self.prompt_width, n).to_kind(Kind::Float);
        let hits = resp.eq(self.target).to_kind(Kind::Float) * &m;
        let len = m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
        Ok(hits.sum_dim_intlist(1, false, Kind::Float) / len)
    }
}

type Trainer = PpoTrainer<CausalLm, CausalLm, TargetShare, ScalarModel>;

/// The run's settings; the value function's lr is 3e-3.
fn ppo_config(seed: i64, policy_lr: f64) -> PpoConfig {
    let mut ppo = PpoConfig {
        batch_size: BATCH,
        minibatch_size: 8,
        ppo_epochs: 4,
        max_new_tokens: 8,
        kl_coef: 0.02,
        lr_warmup_iterations: 0,
        seed: seed as u64,
        ..PpoConfig::default()
    };
    ppo.policy_optimizer.lr = policy_lr;
    ppo.value_optimizer.lr = 3e-3;
    ppo
}

fn trainer(seed: i64, kind: Kind) -> Trainer {
    let cfg = Gpt2Config::sized(2, 2, 32, VOCAB, 32).with_dropout(0.0);
    tch::manual_seed(seed);
    let mut policy = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let mut reference = CausalLm::new(&cfg, Device::Cpu).unwrap();
    reference.var_store_mut().copy(policy.var_store()).unwrap();
    reference.var_store_mut().freeze();
    let mut value = ScalarModel::new(&cfg, HeadKind::Value, Device::Cpu).unwrap();
    if kind != Kind::Float {
        rlhf_model::cpu::ensure_usable_cpu_isa();
        policy.set_kind(kind);
        reference.set_kind(kind);
        value.set_kind(kind);
    }
    let models = PpoModels {
        policy,
        reference,
        reward: TargetShare {
            target: TARGET,
            prompt_width: PROMPT_WIDTH,
        },
        value,
    };
    let ppo = ppo_config(seed, 3e-3);
    let tokens = SpecialTokens {
        eos: cfg.eos_token_id,
        pad: 0,
    };
    PpoTrainer::new(ppo, models, tokens).unwrap()
}

/// `BATCH` prompts of 1..=PROMPT_WIDTH random non-special tokens, left padded.
fn prompts(seed: i64) -> (Tensor, Tensor) {
    let rows: Vec<Vec<i64>> = (0..BATCH as i64)
        .map(|i| {
            let len = 1 + (i + seed) % PROMPT_WIDTH;
            (0..len)
                .map(|j| 1 + (7 * i + 3 * j + seed) % (VOCAB - 2))
                .collect()
        })
        .collect();
    let rows: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
    let (ids, mask) = rlhf_ppo::data::left_pad(&rows, 0).unwrap();
    assert_eq!(ids.size()[1], PROMPT_WIDTH);
    (ids, mask)
}

/// Every iteration's stats of one run, with the models' weights in `kind`.
fn run_in(seed: i64, kind: Kind) -> Vec<IterationStats> {
    tch::set_num_threads(1);
    let mut tr = trainer(seed, kind);
    let (ids, mask) = prompts(seed);
    (0..ITERATIONS)
        .map(|_| tr.step(&ids, &mask, None, &mut NoMetrics).unwrap())
        .collect()
}

/// Every iteration's stats of one run in f32.
fn run(seed: i64) -> Vec<IterationStats> {
    run_in(seed, Kind::Float)
}

/// Mean score of the first and of the last three iterations.
fn first_last(stats: &[IterationStats]) -> (f64, f64) {
    let mean = |s: &[IterationStats]| s.iter().map(|s| s.scores).sum::<f64>() / s.len() as f64;
    (mean(&stats[..3]), mean(&stats[stats.len() - 3..]))
}

/// Measured with `measure_seeds` (debug test profile, one thread, about 2.5 s a run): mean
/// score of the first three -> last three of 16 iterations, and the final summed KL:
///
/// | seed | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 |
/// |---|---|---|---|---|---|---|---|---|
/// | first | 0.055 | 0.031 | 0.044 | 0.059 | 0.055 | 0.033 | 0.041 | 0.043 |
/// | last | 0.561 | 0.458 | 0.441 | 0.515 | 0.653 | 0.638 | 0.889 | 0.534 |
/// | KL | 6.8 | 6.8 | 6.4 | 6.6 | 8.4 | 9.6 | 23.3 | 6.8 |
///
/// The smallest rise is +0.40 (seed 2); the test runs seed 0 (+0.51) and asks for +0.25.
#[test]
fn ppo_raises_a_token_share_reward_on_a_random_gpt2() {
    let stats = run(0);
    let (first, last) = first_last(&stats);
    let scores: Vec<f64> = stats.iter().map(|s| s.scores).collect();
    assert!(
        first < 0.1,
        "a random policy rarely says {TARGET}: {scores:?}"
    );
    assert!(last > first + 0.25, "scores {scores:?}");
    for s in &stats {
        assert!(s.kl.is_finite() && s.kl < 30.0, "KL {}", s.kl);
        assert!(s.policy_loss.is_finite() && s.value_loss.is_finite());
    }
}

/// The same run with every model's weights in bf16 (the `ppo` binary's `dtype = "bf16"`):
/// the optimizer's f32 master weights keep the updates that bf16 would round away. Measured
/// with `measure_seeds` (`BF16=1`, 2026-12-06, a CPU with AVX512_BF16), first three -> last
/// three iterations:
///
/// | seed | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 |
/// |---|---|---|---|---|---|---|---|---|
/// | first | 0.065 | 0.033 | 0.043 | 0.058 | 0.055 | 0.041 | 0.039 | 0.029 |
/// | last | 0.956 | 0.627 | 0.469 | 0.541 | 0.638 | 0.624 | 0.849 | 0.600 |
///
/// The smallest rise is +0.43 (seed 2); the test runs seed 0 and asks for +0.25, as in f32.
#[test]
fn ppo_in_bf16_raises_the_reward_too() {
    let stats = run_in(0, Kind::BFloat16);
    let (first, last) = first_last(&stats);
    let scores: Vec<f64> = stats.iter().map(|s| s.scores).collect();
    assert!(first < 0.1, "{scores:?}");
    assert!(last > first + 0.25, "scores {scores:?}");
    for s in &stats {
        assert!(s.kl.is_finite() && s.kl < 30.0, "KL {}", s.kl);
        assert!(s.policy_loss.is_finite() && s.value_loss.is_finite());
    }
}

/// Prints the numbers the margin above was chosen from:
/// `cargo test -p rlhf-ppo --test sanity -- --ignored --nocapture` (`BF16=1` for the bf16
/// run's).
#[test]
#[ignore]
fn measure_seeds() {
    let kind = match std::env::var("BF16").as_deref() {
        Ok("1") => Kind::BFloat16,
        _ => Kind::Float,
    };
    for seed in 0..8 {
        let t0 = std::time::Instant::now();
        let stats = run_in(seed, kind);
        let (first, last) = first_last(&stats);
        let kl = stats.last().unwrap().kl;
        println!(
            "seed {seed}: first {first:.3} last {last:.3} kl {kl:.2} in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
}

/// The same run with LoRA: the policy trains adapters on every projection, and the reference
/// is the same model with its adapters off (no second copy of the weights).
fn run_lora(seed: i64) -> (Vec<IterationStats>, bool) {
    use rlhf_model::{AdaptersOff, LoraConfig};
    use std::rc::Rc;
    tch::set_num_threads(1);
    let cfg = Gpt2Config::sized(2, 2, 32, VOCAB, 32).with_dropout(0.0);
    tch::manual_seed(seed);
    let mut policy = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let base: Vec<(String, Tensor)> = policy
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    policy
        .attach_lora(&LoraConfig {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: vec!["c_attn".into(), "c_proj".into(), "c_fc".into()],
        })
        .unwrap();
    let policy = Rc::new(policy);
    let value = ScalarModel::new(&cfg, HeadKind::Value, Device::Cpu).unwrap();
    let models = PpoModels {
        policy: policy.clone(),
        reference: AdaptersOff(policy.clone()),
        reward: TargetShare {
            target: TARGET,
            prompt_width: PROMPT_WIDTH,
        },
        value,
    };
    let ppo = ppo_config(seed, 1e-2);
    let tokens = SpecialTokens {
        eos: cfg.eos_token_id,
        pad: 0,
    };
    let mut tr = PpoTrainer::new(ppo, models, tokens).unwrap();
    let (ids, mask) = prompts(seed);
    let stats = (0..ITERATIONS)
        .map(|_| tr.step(&ids, &mask, None, &mut NoMetrics).unwrap())
        .collect();
    let vars = policy.var_store().variables();
    let base_kept = base.iter().all(|(n, t)| vars[n].equal(t));
    (stats, base_kept)
}

/// Measured with `measure_seeds_lora` (one thread, 1.6 s a run): mean score of the first
/// three -> last three of 16 iterations, and the final summed KL:
///
/// | seed | 0 | 1 | 2 | 3 |
/// |---|---|---|---|---|
/// | first | 0.044 | 0.025 | 0.034 | 0.033 |
/// | last | 0.065 | 0.036 | 0.055 | 0.047 |
/// | KL | 0.13 | 0.11 | 0.06 | 0.15 |
///
/// Far slower than full fine-tuning above (+0.40 or more): on this random 2-layer model the
/// quickest way to a token is its (tied) embedding row, which adapters on the projections
/// cannot touch, and per-iteration approx-KL falls from 0.019 to below 0.002 at lr 1e-2, 3e-3
/// or 5e-2 alike. What the test pins down is the mechanism: the reference is exactly the
/// policy before its first update (KL 0), base weights never change, the adapters move the
/// policy away from the base, and the reward goes up.
#[test]
fn ppo_with_lora_trains_adapters_only_against_the_adapters_off_reference() {
    let (stats, base_kept) = run_lora(0);
    let (first, last) = first_last(&stats);
    let scores: Vec<f64> = stats.iter().map(|s| s.scores).collect();
    assert!(base_kept, "PPO with LoRA changed a base weight");
    assert_eq!(
        stats[0].kl, 0.0,
        "the reference is the policy before any update"
    );
    let kl = stats.last().unwrap().kl;
    assert!(kl > 0.05 && kl < 30.0, "final KL {kl}");
    assert!(last > first + 0.01, "scores {scores:?}");
}

/// `cargo test -p rlhf-ppo --test sanity -- --ignored --nocapture measure_seeds_lora`.
#[test]
#[ignore]
fn measure_seeds_lora() {
    for seed in 0..4 {
        let t0 = std::time::Instant::now();
        let (stats, kept) = run_lora(seed);
        let (first, last) = first_last(&stats);
        let kl = stats.last().unwrap().kl;
        println!(
            "seed {seed}: first {first:.3} last {last:.3} kl {kl:.2} base kept {kept} in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
}
