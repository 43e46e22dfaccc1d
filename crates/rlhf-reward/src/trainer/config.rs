//! The reward trainer's settings.

use crate::error::{Result, RewardError};
use rlhf_model::train::{AdamWConfig, CosineSchedule};
use serde::{Deserialize, Serialize};

/// Options of the reward trainer. The defaults suit the tiny models of this workspace (a few
/// million parameters, trained from a random or briefly pretrained body); the paper's 6B RM
/// used lr 9e-6, batch 64 prompts, one epoch, cosine decay to 10%.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardTrainConfig {
    /// Passes over the training rankings (default 1: the paper's RM overfits after one).
    pub epochs: usize,
    /// Prompts (ranking groups) per optimizer step; all K responses of a prompt are in the
    /// same step (default 32; the paper used 64).
    pub batch_prompts: usize,
    /// Prompts per forward/backward; gradients of the micro-batches of a step are accumulated
    /// (0 = the whole batch at once; default 0).
    pub micro_batch_prompts: usize,
    /// AdamW, the same sub-config as SFT's `optimizer` and PPO's `policy_optimizer`: default
    /// lr 1e-4 (for tiny models; the paper's 6B RM used 9e-6), betas (0.9, 0.95), eps 1e-8,
    /// no weight decay (never of biases, norms, embeddings unless `decay_embeddings`).
    pub optimizer: AdamWConfig,
    /// Fraction of the optimizer steps spent warming up linearly (default 0.05).
    pub warmup_ratio: f64,
    /// The cosine decay ends at this fraction of the peak (default 0.1, as in the paper).
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (0 = no clipping; default 1.0).
    pub max_grad_norm: f64,
    /// Seed of the epoch orders and of dropout (default 0).
    pub seed: u64,
    /// Train with the checkpoint's dropout rates (default true; false = deterministic forward).
    pub dropout: bool,
    /// Forward each prompt once for all its responses (see [`crate::shared`]) when the model
    /// supports it (default true). Either way each response is forwarded once.
    pub shared_prompt: bool,
    /// Prompts per forward in validation and normalization (default 64).
    pub eval_batch_prompts: usize,
    /// Also checkpoint to `latest/` every this many optimizer steps (0 = only per epoch;
    /// default 0).
    pub save_every_steps: u64,
    /// Log training metrics every this many steps (default 1).
    pub log_every_steps: u64,
}

impl Default for RewardTrainConfig {
    fn default() -> Self {
        RewardTrainConfig {
            epochs: 1,
            batch_prompts: 32,
            micro_batch_prompts: 0,
            optimizer: AdamWConfig {
                lr: 1e-4,
                ..AdamWConfig::default()
            },
            warmup_ratio: 0.05,
            min_lr_ratio: 0.1,
            max_grad_norm: 1.0,
            seed: 0,
            dropout: true,
            shared_prompt: true,
            eval_batch_prompts: 64,
            save_every_steps: 0,
            log_every_steps: 1,
        }
    }
}

impl RewardTrainConfig {
    /// Checks ranges; the message names the key to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RewardError::Config(m));
        if self.epochs == 0 {
            return bad("epochs is 0: expected at least 1".into());
        }
        if self.batch_prompts == 0 {
            return bad("batch_prompts is 0: expected at least 1 prompt per step".into());
        }
        if self.micro_batch_prompts > self.batch_prompts {
            return bad(format!(
                "micro_batch_prompts ({}) is larger than batch_prompts ({}): expected at most \
                 batch_prompts (or 0 for no accumulation)",
                self.micro_batch_prompts, self.batch_prompts
            ));
        }
        if self.eval_batch_prompts == 0 {
            return bad("eval_batch_prompts is 0: expected at least 1".into());
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(format!(
                "warmup_ratio is {}: expected a fraction in [0, 1)",
                self.warmup_ratio
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio is {}: expected a fraction in [0, 1]",
                self.min_lr_ratio
            ));
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return bad(format!(
                "max_grad_norm is {}: expected >= 0 (0 disables clipping)",
                self.max_grad_norm
            ));
        }
        if self.log_every_steps == 0 {
            return bad("log_every_steps is 0: expected at least 1".into());
        }
        // AdamW's messages name its keys (lr, beta1, ...).
        match self.optimizer.validate() {
            Err(rlhf_model::ModelError::Config(m)) => bad(m),
            other => Ok(other?),
        }
    }

    /// Optimizer steps per epoch for `num_prompts` training prompts.
    pub fn steps_per_epoch(&self, num_prompts: usize) -> u64 {
        num_prompts.div_ceil(self.batch_prompts) as u64
    }

    /// The learning-rate schedule of a run over `num_prompts` prompts.
    pub fn schedule(&self, num_prompts: usize) -> CosineSchedule {
        let total = self.steps_per_epoch(num_prompts) * self.epochs as u64;
        CosineSchedule {
            peak_lr: self.optimizer.lr,
            warmup_steps: (self.warmup_ratio * total as f64).round() as u64,
            total_steps: total,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

/// Moves the flat AdamW keys of earlier versions (`lr`, `beta1`, `beta2`, `eps`,
/// `weight_decay`, now under `optimizer`) of a config read as JSON into `optimizer`, so the
/// `trainer_state.json` of checkpoints written before the change still resume.
pub(crate) fn migrate_flat_optimizer_keys(config: &mut serde_json::Value) {
    let Some(obj) = config.as_object_mut() else {
        return;
    };
    if obj.contains_key("optimizer") {
        return;
    }
    let mut moved = serde_json::Map::new();
    for key in ["lr", "beta1", "beta2", "eps", "weight_decay"] {
        if let Some(v) = obj.remove(key) {
            moved.insert(key.into(), v);
        }
    }
    if !moved.is_empty() {
        obj.insert("optimizer".into(), serde_json::Value::Object(moved));
    }
}
