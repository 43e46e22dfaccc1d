//! # rlhf-sft
//!
//! Stage 1 of InstructGPT: supervised fine-tuning on labeler demonstrations with a
//! prompt-masked cross-entropy. The same trainer pretrains on packed text, and
//! [`masked_lm_loss`] is the loss PPO-ptx mixes in.

pub mod loss;

pub use loss::{masked_lm_loss, masked_lm_loss_from_logits};
