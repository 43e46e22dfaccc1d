//! [`PpoConfig`]: every knob of the PPO-ptx trainer, with the paper's defaults and
//! lm-human-preferences' where the paper is silent.
//!
//! Sources: "the paper" is Ouyang et al. 2022, appendix C.4 (batch 512, minibatch 64, one
//! inner epoch, clip 0.2, no discount, sampling temperature 1, beta = 0.02, gamma_ptx = 27.8,
//! learning-rate warmup over 10 iterations from a tenth of the peak, value function
//! initialized from the RM, Adam betas (0.9, 0.95)). "lm-hp" is openai/lm-human-preferences'
//! `train_policy.py` (lambda 0.95, value clip 0.2, vf_coef 0.1, reward whitening, advantage
//! whitening, the adaptive KL controller's target 6 and horizon 10000, lr 1e-5).

use crate::error::{config_err, Result};
use crate::kl::{AdaptiveKlConfig, AdaptiveKlController, FixedKlController, KlController};
use crate::ops::{KlEstimator, RewardShaping};
use rlhf_model::train::AdamWConfig;
use serde::{Deserialize, Serialize};

/// The PPO-ptx trainer's settings. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Prompts (episodes) per iteration: one rollout of this many responses, then the update.
    /// Default 512 (the paper).
    pub batch_size: usize,
    /// Episodes per optimizer step. Must divide `batch_size`. Default 64 (the paper).
    pub minibatch_size: usize,
    /// Episodes per forward/backward pass; gradients of `minibatch_size / micro_batch_size`
    /// micro-batches are accumulated into one step. 0 means `minibatch_size` (no
    /// accumulation). Must divide `minibatch_size`. Default 0.
    pub micro_batch_size: usize,
    /// Rows per forward pass when a rollout is scored (old and reference log-probs, values, RM
    /// scores; no gradients, so no activations are kept and larger chunks fit in memory).
    /// 0 means the micro-batch size. Larger chunks run fewer, larger matmuls: on a 2-core CPU
    /// W-PPO tiny's scoring already runs at about 67% of the matmul peak with 16 rows and 64
    /// gain nothing there (`docs/speed.md`); it is meant for devices that 16 rows leave idle (not
    /// measured yet). The scores agree with the default to float rounding, not bit for bit.
    /// Default 0.
    pub scoring_batch_size: usize,
    /// Take the old log-probs (the PPO ratio's denominator and the KL penalty's policy term)
    /// from the sampler, which computes them while it samples, instead of a forward pass of
    /// the policy over the scored rollout: one of scoring's four forward passes fewer, as
    /// lm-human-preferences and TRL's `PPOTrainer` do. They agree with the forward pass to
    /// float rounding (the KV cache's one-token steps against one pass over the sequence), not
    /// bit for bit, so a run differs from the default as a rerun with other rounding would.
    /// With a custom [`rlhf_model::Policy`], its `generate` must return the log-probs under
    /// `softmax(logits / temperature)` as the trait documents. Default false.
    pub logprobs_from_generation: bool,
    /// Passes over each rollout batch. Default 1 (the paper; lm-hp uses 4).
    pub ppo_epochs: usize,
    /// Most tokens sampled per response (fewer when every row has hit EOS). Default 64
    /// (W-PPO; the paper caps responses at 1k tokens).
    pub max_new_tokens: i64,
    /// Sampling temperature; the same temperature divides the logits of every log-prob the
    /// trainer computes (old, reference, new). Default 1.0 (the paper).
    pub temperature: f64,
    /// Sample among the k most likely tokens only. Default none (the paper samples plainly).
    pub top_k: Option<i64>,
    /// Nucleus sampling. Default none.
    pub top_p: Option<f64>,
    /// Subtracted from the RM score of a response that never produced EOS. Default none
    /// (lm-hp replaces such scores by -1 in some tasks; TRL subtracts a penalty).
    pub no_eos_penalty: Option<f64>,
    /// beta, the initial (or fixed) coefficient of the per-token KL penalty. Default 0.02 (the
    /// paper).
    pub kl_coef: f64,
    /// Per-token KL estimate in the reward: `k1` (log-ratio, the paper) or `k3`. Default k1.
    pub kl_estimator: KlEstimator,
    /// Adapt beta towards a target KL (Ziegler et al.). Default none: a fixed beta as in the
    /// paper. `{target = 6.0, horizon = 10000}` are lm-hp's values.
    pub adaptive_kl: Option<AdaptiveKlConfig>,
    /// Clip RM scores to `[-c, c]`. Default none.
    pub score_clip: Option<f64>,
    /// Whiten the per-token rewards (scale only) before GAE. Default true (lm-hp).
    pub whiten_rewards: bool,
    /// GAE discount. Default 1.0 (the paper: "no discount").
    pub gamma: f64,
    /// GAE lambda. Default 0.95 (lm-hp).
    pub lam: f64,
    /// Whiten advantages over the batch (masked). Default true (lm-hp).
    pub whiten_advantages: bool,
    /// PPO ratio clip epsilon. Default 0.2 (the paper).
    pub clip_range: f64,
    /// Value clip range around the rollout's values. Default 0.2 (lm-hp).
    pub value_clip_range: f64,
    /// Weight of the value loss. Default 0.1 (lm-hp).
    pub vf_coef: f64,
    /// Weight of the entropy bonus (entropy is always logged). Default 0.0 (lm-hp has none).
    pub entropy_coef: f64,
    /// Clip each model's gradients to this global L2 norm. Default none (lm-hp does not clip).
    pub max_grad_norm: Option<f64>,
    /// Stop the update of an iteration early once a minibatch's approx-KL exceeds this.
    /// Default none.
    pub target_kl: Option<f64>,
    /// gamma_ptx: weight of the pretraining LM loss mixed into every update. 0 is plain PPO.
    /// Default 0.0; the paper's PPO-ptx uses 27.8.
    pub ptx_coef: f64,
    /// AdamW of the policy. Default lr 1e-5 (lm-hp), betas (0.9, 0.95) (the paper), no weight
    /// decay.
    pub policy_optimizer: AdamWConfig,
    /// AdamW of the value function (its own optimizer). Default as the policy's.
    pub value_optimizer: AdamWConfig,
    /// Iterations of linear learning-rate warmup from a tenth of the peak. Default 10 (the
    /// paper).
    pub lr_warmup_iterations: u64,
    /// Iterations at the start that train only the value function (the policy does not move):
    /// a critic initialized from the RM predicts the RM's scale, not returns, and its first
    /// advantages are noise. The policy's lr warmup starts after them. Default 0 (the paper
    /// starts both at once).
    pub value_warmup_iterations: u64,
    /// Seed of sampling and minibatch shuffling (mixed with the iteration number, so a resumed
    /// run draws what an uninterrupted one would). Default 0.
    pub seed: u64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            batch_size: 512,
            minibatch_size: 64,
            micro_batch_size: 0,
            scoring_batch_size: 0,
            logprobs_from_generation: false,
            ppo_epochs: 1,
            max_new_tokens: 64,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            no_eos_penalty: None,
            kl_coef: 0.02,
            kl_estimator: KlEstimator::K1,
            adaptive_kl: None,
            score_clip: None,
            whiten_rewards: true,
            gamma: 1.0,
            lam: 0.95,
            whiten_advantages: true,
            clip_range: 0.2,
            value_clip_range: 0.2,
            vf_coef: 0.1,
            entropy_coef: 0.0,
            max_grad_norm: None,
            target_kl: None,
            ptx_coef: 0.0,
            policy_optimizer: AdamWConfig::default(),
            value_optimizer: AdamWConfig::default(),
            lr_warmup_iterations: 10,
            value_warmup_iterations: 0,
            seed: 0,
        }
    }
}

impl PpoConfig {
    /// Micro-batch size with 0 resolved to the minibatch size.
    pub fn micro_batch(&self) -> usize {
        if self.micro_batch_size == 0 {
            self.minibatch_size
        } else {
            self.micro_batch_size
        }
    }

    /// Rows per scoring forward pass, with 0 resolved to [`PpoConfig::micro_batch`].
    pub fn scoring_batch(&self) -> usize {
        if self.scoring_batch_size == 0 {
            self.micro_batch()
        } else {
            self.scoring_batch_size
        }
    }

    /// Optimizer steps per epoch.
    pub fn minibatches_per_epoch(&self) -> usize {
        self.batch_size / self.minibatch_size.max(1)
    }

    /// Checks every invariant, naming the key to change.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(config_err(format!("{name} must be at least 1, got 0")))
            } else {
                Ok(())
            }
        };
        positive("batch_size", self.batch_size)?;
        positive("minibatch_size", self.minibatch_size)?;
        positive("ppo_epochs", self.ppo_epochs)?;
        if self.batch_size % self.minibatch_size != 0 {
            return Err(config_err(format!(
                "batch_size {} is not a multiple of minibatch_size {}: set minibatch_size to a \
                 divisor of batch_size (e.g. {}) or batch_size to a multiple of it",
                self.batch_size,
                self.minibatch_size,
                largest_divisor_at_most(self.batch_size, self.minibatch_size)
            )));
        }
        let micro = self.micro_batch();
        if self.minibatch_size % micro != 0 {
            return Err(config_err(format!(
                "minibatch_size {} is not a multiple of micro_batch_size {micro}: set \
                 micro_batch_size to a divisor of minibatch_size (e.g. {}) or 0 for no \
                 accumulation",
                self.minibatch_size,
                largest_divisor_at_most(self.minibatch_size, micro)
            )));
        }
        if self.max_new_tokens < 1 {
            return Err(config_err(format!(
                "max_new_tokens must be at least 1, got {}",
                self.max_new_tokens
            )));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(config_err(format!(
                "temperature must be positive, got {}",
                self.temperature
            )));
        }
        if let Some(k) = self.top_k {
            if k < 1 {
                return Err(config_err(format!("top_k must be at least 1, got {k}")));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(config_err(format!("top_p must be in (0, 1], got {p}")));
            }
        }
        let non_negative = |name: &str, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(config_err(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )))
            }
        };
        non_negative("kl_coef", self.kl_coef)?;
        non_negative("vf_coef", self.vf_coef)?;
        non_negative("entropy_coef", self.entropy_coef)?;
        non_negative("ptx_coef", self.ptx_coef)?;
        if let Some(p) = self.no_eos_penalty {
            non_negative("no_eos_penalty", p)?;
        }
        for (name, v) in [("gamma", self.gamma), ("lam", self.lam)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(config_err(format!("{name} must be in [0, 1], got {v}")));
            }
        }
        for (name, v) in [
            ("clip_range", self.clip_range),
            ("value_clip_range", self.value_clip_range),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(config_err(format!("{name} must be positive, got {v}")));
            }
        }
        for (name, v) in [
            ("score_clip", self.score_clip),
            ("max_grad_norm", self.max_grad_norm),
            ("target_kl", self.target_kl),
        ] {
            if let Some(v) = v {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(config_err(format!(
                        "{name} must be positive when set, got {v} (leave it out to disable)"
                    )));
                }
            }
        }
        if let Some(a) = &self.adaptive_kl {
            if !(a.target > 0.0 && a.horizon > 0.0) {
                return Err(config_err(format!(
                    "adaptive_kl needs target > 0 and horizon > 0, got target {} horizon {}",
                    a.target, a.horizon
                )));
            }
            if self.kl_coef == 0.0 {
                return Err(config_err(
                    "adaptive_kl with kl_coef = 0 can never move beta: set kl_coef > 0",
                ));
            }
        }
        self.policy_optimizer
            .validate()
            .map_err(|e| config_err(format!("policy_optimizer: {e}")))?;
        self.value_optimizer
            .validate()
            .map_err(|e| config_err(format!("value_optimizer: {e}")))?;
        Ok(())
    }

    /// The reward-assembly settings at KL coefficient `kl_coef`.
    pub fn shaping(&self, kl_coef: f64) -> RewardShaping {
        RewardShaping {
            kl_coef,
            estimator: self.kl_estimator,
            no_eos_penalty: self.no_eos_penalty,
            score_clip: self.score_clip,
            whiten: self.whiten_rewards,
        }
    }

    /// The KL controller these settings describe.
    pub fn kl_controller(&self) -> Box<dyn KlController> {
        match self.adaptive_kl {
            Some(a) => Box::new(AdaptiveKlController::new(self.kl_coef, a)),
            None => Box::new(FixedKlController {
                value: self.kl_coef,
            }),
        }
    }

    /// The learning-rate multiplier of iteration `it` (0-based): linear from 0.1 to 1 over
    /// `lr_warmup_iterations`, then 1.
    pub fn lr_scale(&self, it: u64) -> f64 {
        if it >= self.lr_warmup_iterations {
            1.0
        } else {
            0.1 + 0.9 * it as f64 / self.lr_warmup_iterations as f64
        }
    }

    /// The learning rates of iteration `it` (0-based): `(policy, value)`. The policy's is 0
    /// during the `value_warmup_iterations` (it does not train) and its warmup starts after
    /// them; the value function's warmup starts at iteration 0.
    pub fn lr_now(&self, it: u64) -> (f64, f64) {
        let policy = if it < self.value_warmup_iterations {
            0.0
        } else {
            self.policy_optimizer.lr * self.lr_scale(it - self.value_warmup_iterations)
        };
        (policy, self.value_optimizer.lr * self.lr_scale(it))
    }
}

fn largest_divisor_at_most(n: usize, k: usize) -> usize {
    (1..=k.min(n)).rev().find(|d| n % d == 0).unwrap_or(1)
}
