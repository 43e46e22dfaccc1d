//! # rlhf-sft
//!
//! Stage 1 of InstructGPT: supervised fine-tuning on labeler demonstrations with a
//! prompt-masked cross-entropy ([`SftTrainer`] over [`LmData::Demonstrations`]). The same
//! trainer pretrains on packed text ([`LmData::Blocks`]), and [`masked_lm_loss`] is the loss
//! PPO-ptx mixes in.

#![warn(missing_docs)]

pub mod config;
pub mod eval;
pub mod loss;
pub mod trainer;

pub use eval::{answer, mean_greedy_reward};
pub use loss::{masked_lm_loss, masked_lm_loss_from_logits};
pub use trainer::{
    batch_tensors, evaluate_loss, EpochReport, LmData, ResidualDropout, SftConfig, SftError,
    SftReport, SftTrainer,
};
