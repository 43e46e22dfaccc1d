//! The masked language-model loss: SFT's prompt-masked cross-entropy, plain pretraining, and
//! the pretraining term of PPO-ptx.

use rlhf_model::{Policy, Result};
use tch::{Kind, Tensor};

/// Mean cross-entropy (nats per token) over the tokens selected by `loss_mask`, from logits.
///
/// Shapes: `logits [B, T, V]`, `input_ids [B, T]`, `loss_mask [B, T]` (1.0 where token `t` is
/// trained: response tokens in SFT, every real token in pretraining; `loss_mask[:, 0]` is
/// ignored since nothing predicts the first token) -> scalar f32. Uses the one alignment rule
/// (`logits[:, t-1]` predicts token `t`). Returns 0 when the mask selects nothing.
pub fn masked_lm_loss_from_logits(
    logits: &Tensor,
    input_ids: &Tensor,
    loss_mask: &Tensor,
) -> Tensor {
    let t = input_ids.size()[1];
    let lp = rlhf_model::ops::token_log_probs(logits, input_ids, 1.0); // [B, T-1]
    let m = loss_mask.narrow(1, 1, t - 1).to_kind(Kind::Float);
    let n = m.sum(Kind::Float).clamp_min(1.0);
    -(lp * &m).sum(Kind::Float) / n
}

/// [`masked_lm_loss_from_logits`] of a policy's forward pass (with grad unless the caller is
/// under `no_grad`); `train` enables dropout. PPO-ptx adds `gamma_ptx` times this loss on a
/// pretraining batch to the PPO loss.
///
/// Goes through [`Policy::masked_token_log_probs`], so a [`rlhf_model::CausalLm`] computes the
/// unembedding and the softmax only at the positions `loss_mask` selects (the same value and
/// gradient as the full logits, half the LM-head work when the prompt is half the sequence).
pub fn masked_lm_loss<P: Policy + ?Sized>(
    policy: &P,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    loss_mask: &Tensor,
    train: bool,
) -> Result<Tensor> {
    let lp = policy.masked_token_log_probs(input_ids, attention_mask, loss_mask, 1.0, train)?;
    let t = input_ids.size()[1];
    let m = loss_mask.narrow(1, 1, t - 1).to_kind(Kind::Float);
    let n = m.sum(Kind::Float).clamp_min(1.0);
    let w = m.masked_select(&m.ne(0));
    Ok(-(lp * w).sum(Kind::Float) / n)
}
