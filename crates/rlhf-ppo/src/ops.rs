//! The PPO math as small pure tensor functions, each tested against a plain loop
//! (`tests/ops.rs`): KL estimators, masked statistics, reward assembly, GAE, the clipped
//! surrogate, the clipped value loss, entropy, approx-KL, clip fraction and explained variance.
//!
//! Conventions: response tensors are `[B, N]` (one column per sampled token); masks are f32
//! with 1.0 for real response tokens (EOS included) and 0.0 for the padding after EOS. Every
//! function reads masked-out entries as if they were 0, so garbage there (even NaN) never leaks;
//! the clipped losses mask their inputs before any arithmetic, so it does not leak into their
//! gradients either (0 on the padding, never `0 * inf = NaN`).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Denominator floor of masked means: an all-zero mask gives 0, not NaN.
const TINY: f64 = 1e-12;

/// `x` with entries outside `mask` set to exactly 0 (NaN-safe), in f32. Shapes: `x` and
/// `mask` broadcastable -> their broadcast shape.
pub fn zero_outside(x: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(Kind::Float);
    x.to_kind(Kind::Float).where_scalarother(&m.gt(0.0), 0.0) * m
}

/// The k1 estimator of the per-token KL to the reference: `log p(y) - log q(y)` for `y ~ p`.
/// Unbiased for KL(p || q), can be negative per token.
///
/// Shapes: `logp [B, N]`, `ref_logp [B, N]` -> `[B, N]`.
pub fn kl_k1(logp: &Tensor, ref_logp: &Tensor) -> Tensor {
    logp - ref_logp
}

/// The k3 estimator (Schulman, "Approximating KL divergence"): with `r = q(y) / p(y)`,
/// `(r - 1) - log r`. Unbiased for KL(p || q) and never negative, with lower variance than k1
/// when p and q are close.
///
/// Shapes: `logp [B, N]`, `ref_logp [B, N]` -> `[B, N]`.
pub fn kl_k3(logp: &Tensor, ref_logp: &Tensor) -> Tensor {
    let log_r = ref_logp - logp;
    log_r.exp() - 1.0 - log_r
}

/// Which per-token KL estimate the reward penalizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log p - log q` (InstructGPT, lm-human-preferences). The default.
    #[default]
    K1,
    /// `(q/p - 1) - log(q/p)`: non-negative, lower variance.
    K3,
}

impl KlEstimator {
    /// The estimate per token. Shapes: `[B, N]`, `[B, N]` -> `[B, N]`.
    pub fn estimate(self, logp: &Tensor, ref_logp: &Tensor) -> Tensor {
        match self {
            KlEstimator::K1 => kl_k1(logp, ref_logp),
            KlEstimator::K3 => kl_k3(logp, ref_logp),
        }
    }
}

/// Sum of `x` over the entries where `mask` is set. Shapes: `x`, `mask` -> scalar f32.
pub fn masked_sum(x: &Tensor, mask: &Tensor) -> Tensor {
    zero_outside(x, mask).sum(Kind::Float)
}

/// Mean of `x` over the masked entries (0 when the mask is empty).
/// Shapes: `x`, `mask` (same shape) -> scalar f32.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    let n = mask.to_kind(Kind::Float).sum(Kind::Float).clamp_min(TINY);
    masked_sum(x, mask) / n
}

/// Per-row mean of `x` over its masked entries. Shapes: `[B, N]`, `[B, N]` -> `[B]`.
pub fn masked_mean_rows(x: &Tensor, mask: &Tensor) -> Tensor {
    let n = mask
        .to_kind(Kind::Float)
        .sum_dim_intlist(-1, false, Kind::Float)
        .clamp_min(TINY);
    zero_outside(x, mask).sum_dim_intlist(-1, false, Kind::Float) / n
}

/// Per-row sum of `x` over its masked entries. Shapes: `[B, N]`, `[B, N]` -> `[B]`.
pub fn masked_sum_rows(x: &Tensor, mask: &Tensor) -> Tensor {
    zero_outside(x, mask).sum_dim_intlist(-1, false, Kind::Float)
}

/// Variance of `x` over the masked entries. `unbiased` applies Bessel's correction
/// (`n / (n - 1)`, skipped when `n <= 1`). Shapes: `x`, `mask` -> scalar f32.
pub fn masked_var(x: &Tensor, mask: &Tensor, unbiased: bool) -> Tensor {
    let mean = masked_mean(x, mask);
    let centered = x.to_kind(Kind::Float) - &mean;
    let var = masked_mean(&centered.square(), mask);
    if unbiased {
        let n = mask.to_kind(Kind::Float).sum(Kind::Float);
        let correction = (&n / (&n - 1.0).clamp_min(1.0)).where_scalarother(&n.gt(1.0), 1.0);
        var * correction
    } else {
        var
    }
}

/// Whitens `x` over the masked entries: `(x - mean) / sqrt(var + 1e-8)` with the biased
/// variance (as lm-human-preferences' `whiten`); with `shift_mean = false` the mean is added
/// back (only the scale changes). Entries outside the mask are 0 in the result.
///
/// Shapes: `x`, `mask` (same shape) -> same shape, f32.
pub fn masked_whiten(x: &Tensor, mask: &Tensor, shift_mean: bool) -> Tensor {
    let mean = masked_mean(x, mask);
    let var = masked_var(x, mask, false);
    let mut w = (x.to_kind(Kind::Float) - &mean) * (var + 1e-8).rsqrt();
    if !shift_mean {
        w += &mean;
    }
    zero_outside(&w, mask)
}

/// Whether each response contains `eos_id` among its real tokens.
/// Shapes: `tokens [B, N]` (int64), `mask [B, N]` -> `[B]` bool.
pub fn response_has_eos(tokens: &Tensor, mask: &Tensor, eos_id: i64) -> Tensor {
    tokens
        .eq(eos_id)
        .logical_and(&mask.gt(0.0))
        .any_dim(-1, false)
}

/// How the per-token rewards are assembled from the RM score and the KL penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardShaping {
    /// beta: the KL penalty coefficient.
    pub kl_coef: f64,
    /// Which per-token KL estimate is penalized.
    pub estimator: KlEstimator,
    /// Subtracted from the score of a response that has no EOS (it ran out of tokens).
    pub no_eos_penalty: Option<f64>,
    /// Scores are clipped to `[-c, c]` (after the no-EOS penalty).
    pub score_clip: Option<f64>,
    /// Whiten the per-token rewards over the batch (scale only, `shift_mean = false`).
    pub whiten: bool,
}

/// The result of [`assemble_rewards`].
#[derive(Debug)]
pub struct ShapedRewards {
    /// Per-token rewards `[B, N]`: `-beta * kl`, plus the score on the last real token.
    pub rewards: Tensor,
    /// The per-token KL estimate `[B, N]` (0 on padding).
    pub kl: Tensor,
    /// `-beta * kl` `[B, N]` (0 on padding).
    pub non_score_reward: Tensor,
    /// The scores `[B]` after the no-EOS penalty and clipping.
    pub scores: Tensor,
}

/// Per-token rewards of a batch of responses: every real token gets `-beta * KL estimate`, and
/// the last *real* token of each response (its EOS, or its final token when it has none) also
/// gets the reward model's score. Padding gets nothing.
///
/// `has_eos [B]` (bool) is needed only for the no-EOS penalty (see [`response_has_eos`]).
///
/// Shapes: `scores [B]`, `logp [B, N]`, `ref_logp [B, N]`, `mask [B, N]` -> [`ShapedRewards`].
pub fn assemble_rewards(
    scores: &Tensor,
    logp: &Tensor,
    ref_logp: &Tensor,
    mask: &Tensor,
    has_eos: Option<&Tensor>,
    cfg: &RewardShaping,
) -> ShapedRewards {
    let kl = zero_outside(&cfg.estimator.estimate(logp, ref_logp), mask);
    let non_score_reward = &kl * (-cfg.kl_coef);
    let mut s = scores.to_kind(Kind::Float);
    if let (Some(penalty), Some(has_eos)) = (cfg.no_eos_penalty, has_eos) {
        let missing = has_eos.logical_not().to_kind(Kind::Float);
        // Out of place: `to_kind` returns the caller's tensor when it is already f32.
        s = s.g_sub(&(missing * penalty));
    }
    if let Some(c) = cfg.score_clip {
        s = s.clamp(-c, c);
    }
    let last = rlhf_model::ops::last_token_index(&mask.gt(0.0)).unsqueeze(1);
    let mut rewards = non_score_reward.scatter_add(1, &last, &s.unsqueeze(1));
    if cfg.whiten {
        rewards = masked_whiten(&rewards, mask, false);
    }
    ShapedRewards {
        rewards,
        kl,
        non_score_reward,
        scores: s,
    }
}

/// Generalized advantage estimation over the response tokens.
///
/// With `delta_t = r_t + gamma * V_{t+1} - V_t` (the value after the last real token is 0),
/// `A_t = delta_t + gamma * lam * A_{t+1}`; returns are `A + V`. Entries outside the mask are
/// ignored and come out 0.
///
/// Shapes: `rewards [B, N]`, `values [B, N]`, `mask [B, N]` -> `(advantages [B, N],
/// returns [B, N])`, f32, without grad.
pub fn gae(
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lam: f64,
) -> (Tensor, Tensor) {
    let _g = tch::no_grad_guard();
    let m = mask.to_kind(Kind::Float);
    let r = zero_outside(rewards, &m);
    let v = zero_outside(values, &m);
    let n = r.size()[1];
    let mut last = Tensor::zeros_like(&r.select(1, 0));
    let mut out = Vec::with_capacity(n as usize);
    for t in (0..n).rev() {
        let (next_v, next_m) = if t + 1 < n {
            (v.select(1, t + 1), m.select(1, t + 1))
        } else {
            (last.zeros_like(), last.zeros_like())
        };
        let delta = r.select(1, t) + next_v * gamma - v.select(1, t);
        last = delta + next_m * &last * (gamma * lam);
        out.push(last.shallow_clone());
    }
    out.reverse();
    let adv = Tensor::stack(&out, 1) * &m;
    let returns = &adv + &v;
    (adv, returns)
}

/// Outputs of [`clipped_surrogate`].
#[derive(Debug)]
pub struct PolicyLoss {
    /// The loss to minimize, scalar, with grad through `logp`.
    pub loss: Tensor,
    /// Fraction of masked tokens where the clipped term was the active one (no grad).
    pub clipfrac: Tensor,
    /// `0.5 * mean((logp - old_logp)^2)` over masked tokens (no grad).
    pub approx_kl: Tensor,
}

/// PPO's clipped surrogate: with `ratio = exp(logp - old_logp)`,
/// `loss = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))` over masked tokens.
/// The gradient is zero where the ratio is clipped in the direction of the advantage
/// (`ratio > 1 + eps` with `A > 0`, or `ratio < 1 - eps` with `A < 0`).
///
/// Shapes: `logp [B, N]` (with grad), `old_logp [B, N]`, `advantages [B, N]`, `mask [B, N]`
/// -> [`PolicyLoss`] of scalars.
pub fn clipped_surrogate(
    logp: &Tensor,
    old_logp: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip_range: f64,
) -> PolicyLoss {
    // Mask the inputs, not only the result: junk in the padding (inf, NaN) would otherwise
    // give `0 * inf = NaN` gradients there, which backprop carries into the model's weights.
    let (logp, old_logp) = (zero_outside(logp, mask), zero_outside(old_logp, mask));
    let advantages = zero_outside(advantages, mask);
    let log_ratio = logp - old_logp;
    let ratio = log_ratio.exp();
    let pg1 = -&advantages * &ratio;
    let pg2 = -&advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range);
    let loss = masked_mean(&pg1.maximum(&pg2), mask);
    let (clipfrac, approx_kl) = tch::no_grad(|| {
        (
            masked_mean(&pg2.gt_tensor(&pg1).to_kind(Kind::Float), mask),
            masked_mean(&log_ratio.square(), mask) * 0.5,
        )
    });
    PolicyLoss {
        loss,
        clipfrac,
        approx_kl,
    }
}

/// Outputs of [`clipped_value_loss`].
#[derive(Debug)]
pub struct ValueLoss {
    /// `0.5 * mean(max((V - R)^2, (V_clipped - R)^2))`, scalar, with grad through `values`
    /// (not yet multiplied by `vf_coef`; see [`ppo_loss`]).
    pub loss: Tensor,
    /// Fraction of masked tokens where the clipped term was the larger one (no grad).
    pub clipfrac: Tensor,
}

/// The clipped value loss of lm-human-preferences: `V_clipped = V_old + clip(V - V_old, -c, c)`.
///
/// Shapes: `values [B, N]` (with grad), `old_values [B, N]`, `returns [B, N]`, `mask [B, N]`
/// -> [`ValueLoss`] of scalars.
pub fn clipped_value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    clip_range: f64,
) -> ValueLoss {
    // Inputs masked first, as in `clipped_surrogate`: no NaN gradients from the padding.
    let (values, old_values) = (zero_outside(values, mask), zero_outside(old_values, mask));
    let returns = zero_outside(returns, mask);
    let clipped = &old_values + (&values - &old_values).clamp(-clip_range, clip_range);
    let l1 = (&values - &returns).square();
    let l2 = (clipped - &returns).square();
    let loss = masked_mean(&l1.maximum(&l2), mask) * 0.5;
    let clipfrac = tch::no_grad(|| masked_mean(&l2.gt_tensor(&l1).to_kind(Kind::Float), mask));
    ValueLoss { loss, clipfrac }
}

/// The combined PPO loss: `policy + vf_coef * value - entropy_coef * entropy`.
/// Shapes: scalars -> scalar.
pub fn ppo_loss(
    policy_loss: &Tensor,
    value_loss: &Tensor,
    entropy: &Tensor,
    vf_coef: f64,
    entropy_coef: f64,
) -> Tensor {
    let loss = policy_loss + value_loss * vf_coef;
    if entropy_coef == 0.0 {
        loss
    } else {
        loss - entropy * entropy_coef
    }
}

/// Mean entropy of `softmax(logits / temperature)` over masked positions.
/// Shapes: `logits [B, N, V]`, `mask [B, N]` -> scalar f32.
pub fn masked_entropy(logits: &Tensor, mask: &Tensor, temperature: f64) -> Tensor {
    let logits = if temperature == 1.0 {
        logits.shallow_clone()
    } else {
        logits.to_kind(Kind::Float) / temperature
    };
    masked_mean(&rlhf_model::ops::entropy_from_logits(&logits), mask)
}

/// Approximate KL between the old and new policy: `0.5 * mean((logp - old_logp)^2)`.
/// Shapes: `[B, N]` x3 -> scalar f32.
pub fn approx_kl(logp: &Tensor, old_logp: &Tensor, mask: &Tensor) -> Tensor {
    masked_mean(&(logp - old_logp).square(), mask) * 0.5
}

/// Fraction of masked tokens whose ratio `exp(logp - old_logp)` lies outside
/// `[1 - eps, 1 + eps]`. Shapes: `[B, N]` x3 -> scalar f32.
pub fn ratio_clip_fraction(logp: &Tensor, old_logp: &Tensor, mask: &Tensor, eps: f64) -> Tensor {
    let ratio = (logp - old_logp).exp();
    masked_mean(&(ratio - 1.0).abs().gt(eps).to_kind(Kind::Float), mask)
}

/// `1 - Var(returns - values) / Var(returns)` over masked tokens: 1 for a perfect critic, 0 for
/// one that predicts the mean, negative for worse. NaN when the returns do not vary.
/// Shapes: `[B, N]` x3 -> f64.
pub fn explained_variance(values: &Tensor, returns: &Tensor, mask: &Tensor) -> f64 {
    let var_r = masked_var(returns, mask, false).double_value(&[]);
    if var_r <= 0.0 {
        return f64::NAN;
    }
    let var_d = masked_var(&(returns - values), mask, false).double_value(&[]);
    1.0 - var_d / var_r
}

/// Log-probs of the response tokens of full sequences, by the one alignment rule
/// ([`rlhf_model::ops::token_log_probs`]): `logits[:, t-1]` scores token `t`.
///
/// Shapes: `logits [B, P + N, V]`, `input_ids [B, P + N]` -> `[B, N]` (entry `j` scores
/// `input_ids[:, P + j]`), where `prompt_len = P`.
pub fn response_log_probs(
    logits: &Tensor,
    input_ids: &Tensor,
    prompt_len: i64,
    temperature: f64,
) -> Tensor {
    let n = input_ids.size()[1] - prompt_len;
    rlhf_model::ops::token_log_probs(
        &logits.narrow(1, prompt_len - 1, n + 1),
        &input_ids.narrow(1, prompt_len - 1, n + 1),
        temperature,
    )
}

/// The logits that predict the response tokens. Shapes: `[B, P + N, V] -> [B, N, V]`.
pub fn response_logits(logits: &Tensor, prompt_len: i64) -> Tensor {
    let n = logits.size()[1] - prompt_len;
    logits.narrow(1, prompt_len - 1, n)
}

/// Per-token values of the states before each response token (value at position `P - 1 + j`
/// for response token `j`). Shapes: `[B, P + N] -> [B, N]`.
pub fn response_values(values: &Tensor, prompt_len: i64) -> Tensor {
    let n = values.size()[1] - prompt_len;
    values.narrow(1, prompt_len - 1, n)
}
