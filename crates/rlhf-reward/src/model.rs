//! What the reward trainer needs from a model: [`TrainableRewardModel`], implemented for
//! [`ScalarModel`] (the GPT-2 reward model built from an SFT checkpoint).

use crate::error::Result;
use crate::shared::{SharedPromptBatch, SharedPromptScorer};
use rlhf_model::{Checkpointable, RewardModel, ScalarModel, ValueFunction};
use tch::{nn, Tensor};

/// A reward model the K-wise trainer can train, evaluate and checkpoint.
///
/// Only [`TrainableRewardModel::forward_scores`] and `var_store` are required, besides
/// [`Checkpointable`] (metadata, and the checkpoint directory the trainer saves and resumes
/// through, so resume works for any architecture); a model that can run each prompt once for
/// all its responses also implements [`TrainableRewardModel::forward_shared_prompt`].
pub trait TrainableRewardModel: Checkpointable {
    /// Raw rewards (without the normalization bias), read at each row's last real token.
    ///
    /// Shapes: `input_ids [N, T]`, `attention_mask [N, T]` (right-padded) -> `[N]` f32, with
    /// gradient unless under `no_grad`. `train` enables dropout.
    fn forward_scores(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor>;

    /// Raw rewards of a [`SharedPromptBatch`] (each prompt forwarded once), `[N]` f32; `None`
    /// when the model cannot do it (the trainer then forwards full rows).
    fn forward_shared_prompt(
        &self,
        _batch: &SharedPromptBatch,
        _train: bool,
    ) -> Option<Result<Tensor>> {
        None
    }

    /// The trainable variables.
    fn var_store(&self) -> &nn::VarStore;

    /// True when `train = true` draws random numbers (dropout), so the trainer seeds
    /// libtorch's generator per step for exact resumption.
    fn uses_dropout(&self) -> bool {
        true
    }
}

impl TrainableRewardModel for ScalarModel {
    fn forward_scores(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        Ok(self.score_raw(input_ids, attention_mask, train)?)
    }

    fn forward_shared_prompt(
        &self,
        batch: &SharedPromptBatch,
        train: bool,
    ) -> Option<Result<Tensor>> {
        // The shared-prompt path is written for GPT-2; other architectures score each
        // sequence whole (the trainer's fallback).
        self.config().as_gpt2()?;
        Some(SharedPromptScorer::of(self).and_then(|s| s.scores(batch, train)))
    }

    fn var_store(&self) -> &nn::VarStore {
        ValueFunction::var_store(self)
    }

    fn uses_dropout(&self) -> bool {
        let d = self.config().dropouts();
        d.resid > 0.0 || d.embd > 0.0 || d.attn > 0.0
    }
}

/// Scores with the normalization bias, through the trainer's interface (no gradient).
/// Shapes: `[N, T]` -> `[N]`.
pub fn normalized_scores<M: TrainableRewardModel + ?Sized>(
    model: &M,
    input_ids: &Tensor,
    attention_mask: &Tensor,
) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    Ok(model
        .meta()
        .normalize_reward(model.forward_scores(input_ids, attention_mask, false)?))
}

/// A [`TrainableRewardModel`] is also a [`RewardModel`] through this adapter.
#[derive(Debug)]
pub struct AsRewardModel<'a, M: ?Sized>(pub &'a M);

impl<M: TrainableRewardModel + ?Sized> RewardModel for AsRewardModel<'_, M> {
    fn score(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> rlhf_model::Result<Tensor> {
        let raw = self
            .0
            .forward_scores(input_ids, attention_mask, train)
            .map_err(|e| rlhf_model::ModelError::Input(e.to_string()))?;
        Ok(self.0.meta().normalize_reward(raw))
    }

    fn device(&self) -> tch::Device {
        self.0.var_store().device()
    }
}
