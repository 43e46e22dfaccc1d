//! # rlhf-reward
//!
//! Stage 2 of InstructGPT: the reward model, trained on labeler rankings of K = 4..9 responses
//! per prompt.
//!
//! * [`loss`]: the K-wise loss `-1/C(K,2) sum log sigmoid(r_w - r_l)` per prompt, mean over
//!   prompts ([`kwise_ranking_loss`] over a [`PairIndex`]), the pairwise loss of the TRL way,
//!   and the metrics (pairwise accuracy, loss per K).
//! * [`trainer`]: [`RewardTrainer`]: each response forwarded once, prompts with different K in
//!   one batch, AdamW + cosine schedule with warmup, clipping, accumulation, epochs,
//!   validation, atomic checkpoints with exact resumption, and the paper's normalization (a
//!   bias so labeler demonstrations score 0 on average, stored in the checkpoint and applied
//!   by `RewardModel::score`).
//! * [`shared`]: scoring with each prompt forwarded once for all of its K responses.
//! * [`model`]: [`TrainableRewardModel`], what the trainer needs from a model (implemented
//!   for `rlhf_model::ScalarModel`).
//! * [`mod@bench`]: the W-RM workload (K-wise vs pairwise comparisons per second).
//!
//! Toy-world rankings without a policy, gold scores and the noise ceiling are in `rlhf_toy::rm`.
//!
//! ```no_run
//! use rlhf_reward::{RewardTrainConfig, RewardTrainer, RankingData};
//! use rlhf_model::{ScalarModel, train::NoMetrics};
//! use rlhf_data::collate::CollateConfig;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (train, valid, demos) = (vec![], RankingData::default(), vec![]);
//! let model = ScalarModel::reward_from_lm("runs/sft/final", tch::Device::Cpu)?;
//! let collate = CollateConfig::new(0, 0).with_limits(64, 64);
//! let mut t = RewardTrainer::new(model, RewardTrainConfig::default(), collate, train.len())?;
//! t.fit(&train, Some(&valid), &mut NoMetrics, None, &mut |_, _, _| {})?;
//! t.normalize(&demos)?;
//! t.model().save("runs/rm/final")?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod error;
pub mod loss;
pub mod model;
pub mod shared;
pub mod trainer;

pub use bench::bench_w_rm;
pub use error::{Result, RewardError};
pub use loss::{
    gold_agreement, kwise_ranking_loss, pairwise_loss, PairIndex, RankingLoss, RankingStats,
};
pub use model::{AsRewardModel, TrainableRewardModel};
pub use shared::{SharedPromptBatch, SharedPromptScorer};
pub use trainer::{
    latest_checkpoint, EvalReport, Normalization, RankingData, RewardTrainConfig, RewardTrainer,
    StepReport, TrainState,
};
