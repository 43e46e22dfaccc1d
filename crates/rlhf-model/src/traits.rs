//! The three roles a model plays in RLHF. Stages use models only through these traits, so a
//! downstream crate can bring its own policy architecture, a rule-based reward or another value
//! model.

use crate::error::{ModelError, Result};
use crate::generate::{GenerateConfig, Generation};
use crate::ops::token_log_probs;
use std::rc::Rc;
use tch::{nn, Device, Tensor};

/// Checks that `target_mask` has the shape of `input_ids` and that there is a token to predict.
pub(crate) fn check_target_mask(input_ids: &Tensor, target_mask: &Tensor) -> Result<()> {
    if input_ids.dim() != 2 || target_mask.size() != input_ids.size() || input_ids.size()[1] < 2 {
        return Err(ModelError::Input(format!(
            "input_ids and target_mask must both be [B, T] with T >= 2; got {:?} and {:?}",
            input_ids.size(),
            target_mask.size()
        )));
    }
    Ok(())
}

/// Checks `1 <= n < T` for [`Policy::logits_for_last`] or [`ValueFunction::values_for_last`]
/// (`method`) and returns `T`.
pub(crate) fn check_last_n(input_ids: &Tensor, n: i64, method: &str) -> Result<i64> {
    let t = *input_ids.size().last().unwrap_or(&0);
    if n < 1 || n >= t {
        return Err(ModelError::Input(format!(
            "{method}: n = {n} must be in 1..{t} for rows of {t} tokens"
        )));
    }
    Ok(t)
}

/// A language model that is trained (SFT, PPO) and sampled from.
///
/// Implement [`Policy::logits`] and [`Policy::var_store`]; everything else has a correct
/// default built on them. The defaults are the slow path, and what overriding gains:
///
/// * [`Policy::generate`]: the default recomputes the whole sequence for every new token
///   (quadratic in the length); a KV-cache sampler, as [`crate::CausalLm`]'s, makes PPO's
///   generation phase several times faster.
/// * [`Policy::logits_for_last`] and [`Policy::masked_token_log_probs`]: the defaults compute
///   the unembedding (`[B, T, V]`) at every position and then select; overriding them to
///   unembed only the positions asked for saves most of PPO's scoring and SFT's loss time on
///   large vocabularies (about 1.7x on the tiny workloads).
///
/// A default that runs says so once per process on stderr, so a slow custom policy is visible.
pub trait Policy {
    /// Next-token logits.
    ///
    /// Shapes: `input_ids [B, T]` (int64), `attention_mask [B, T]` (1 = real token, 0 = pad;
    /// padding may be on either side) -> `[B, T, V]`; `logits[:, t]` predicts token `t + 1`.
    /// `train` enables dropout. Gradients flow unless the caller is under `tch::no_grad`.
    fn logits(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor>;

    /// The trainable variables (for the optimizer and checkpoints).
    fn var_store(&self) -> &nn::VarStore;

    /// The device the model lives on.
    fn device(&self) -> Device {
        self.var_store().device()
    }

    /// Log-probs of the given tokens, `[B, T-1]` (entry `t-1` scores token `t`), under
    /// `softmax(logits / temperature)`; see [`crate::ops::token_log_probs`].
    fn token_log_probs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        temperature: f64,
        train: bool,
    ) -> Result<Tensor> {
        let logits = self.logits(input_ids, attention_mask, train)?;
        Ok(token_log_probs(&logits, input_ids, temperature))
    }

    /// The entries of [`Policy::token_log_probs`] selected by `target_mask`: the log-probs of
    /// the scored tokens only (e.g. the response tokens of SFT), for losses that need nothing
    /// else.
    ///
    /// Shapes: `input_ids [B, T]`, `attention_mask [B, T]`, `target_mask [B, T]` (nonzero where
    /// token `t` is scored; column 0 is ignored since nothing predicts the first token) ->
    /// `[N]` f32, in row-major order of the selected tokens (`N` = nonzero entries of
    /// `target_mask[:, 1..]`), equal to `token_log_probs(..)` masked by `target_mask[:, 1..]`.
    ///
    /// The default computes every logit and selects; [`crate::CausalLm`] overrides it to apply
    /// the unembedding and the softmax at the selected positions only (and its last block from
    /// the first selected column to the last).
    fn masked_token_log_probs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        target_mask: &Tensor,
        temperature: f64,
        train: bool,
    ) -> Result<Tensor> {
        check_target_mask(input_ids, target_mask)?;
        slow_path_once(&MASKED_ONCE, "masked_token_log_probs");
        let lp = self.token_log_probs(input_ids, attention_mask, temperature, train)?;
        let t = input_ids.size()[1];
        Ok(lp.masked_select(&target_mask.narrow(1, 1, t - 1).ne(0)))
    }

    /// The logits that predict the last `n` tokens of each row (positions `T-1-n ..= T-2`),
    /// e.g. the response tokens of prompt + response rows: what PPO's scoring and update need.
    ///
    /// Shapes: `input_ids [B, T]`, `attention_mask [B, T]`, `1 <= n < T` -> `[B, n, V]`.
    ///
    /// The default computes every logit and narrows; [`crate::CausalLm`] overrides it to run
    /// its last block and the unembedding at those positions only
    /// ([`crate::Body::forward_rows`]).
    fn logits_for_last(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        n: i64,
        train: bool,
    ) -> Result<Tensor> {
        let t = check_last_n(input_ids, n, "logits_for_last")?;
        slow_path_once(&LAST_ONCE, "logits_for_last");
        Ok(self
            .logits(input_ids, attention_mask, train)?
            .narrow(1, t - 1 - n, n))
    }

    /// Samples continuations of left-padded prompts (`[B, P]` ids and mask); see
    /// [`GenerateConfig`] and [`Generation`]. The default recomputes the whole sequence at each
    /// step (no cache); models with a KV cache override it.
    fn generate(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        cfg: &GenerateConfig,
    ) -> Result<Generation> {
        slow_path_once(&GENERATE_ONCE, "generate");
        crate::generate::generate_uncached(self, prompt_ids, prompt_mask, cfg)
    }
}

static GENERATE_ONCE: std::sync::Once = std::sync::Once::new();
static LAST_ONCE: std::sync::Once = std::sync::Once::new();
static MASKED_ONCE: std::sync::Once = std::sync::Once::new();

/// Says once per process that a `Policy` runs the default (slow) `method`.
fn slow_path_once(once: &std::sync::Once, method: &str) {
    once.call_once(|| {
        tracing::info!(
            "[rlhf-model] note: a Policy uses the default {method} (the slow path: see the \
             Policy trait's docs for what overriding it gains)"
        )
    });
}

/// A model that scores a whole sequence (prompt + response) with one number.
///
/// The contract: higher is better; scores of different calls are comparable (PPO subtracts
/// the KL penalty from them and whitens nothing unless asked); padding may be on either side
/// and must not change a row's score; the call must not need gradients (PPO calls it under
/// `no_grad`, with `train = false`).
pub trait RewardModel {
    /// One reward per sequence (for a learned model: read at the last non-pad token, with the
    /// checkpoint's normalization applied).
    ///
    /// Shapes: `input_ids [B, T]`, `attention_mask [B, T]` -> `[B]` (f32).
    fn score(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor>;

    /// Scores rows laid out as PPO's rollouts are: `[left-padded prompt | response]`, every
    /// response starting at column `response_start` (and right-padded after its EOS). What
    /// PPO calls; the default ignores `response_start` and calls [`RewardModel::score`].
    /// Override it for a rule on the response alone (its tokens are
    /// `input_ids.narrow(1, response_start, T - response_start)`, real where the mask is 1).
    fn score_responses(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        response_start: i64,
        train: bool,
    ) -> Result<Tensor> {
        let _ = response_start;
        self.score(input_ids, attention_mask, train)
    }

    /// The device inputs should be on.
    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// A critic: one value estimate per token.
pub trait ValueFunction {
    /// Shapes: `input_ids [B, T]`, `attention_mask [B, T]` -> `[B, T]` (f32); entry `t` is the
    /// value of the state after reading tokens `..=t`.
    fn values(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor>;

    /// The values of the states before each of the last `n` tokens (entries `T-1-n ..= T-2` of
    /// [`ValueFunction::values`]): with prompt + response rows, one per response token, what
    /// PPO's scoring and update need.
    ///
    /// Shapes: `input_ids [B, T]`, `attention_mask [B, T]`, `1 <= n < T` -> `[B, n]` (f32).
    ///
    /// The default computes every value and narrows; [`crate::ScalarModel`] overrides it to run
    /// its last block for those positions only.
    fn values_for_last(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        n: i64,
        train: bool,
    ) -> Result<Tensor> {
        let t = check_last_n(input_ids, n, "values_for_last")?;
        Ok(self
            .values(input_ids, attention_mask, train)?
            .narrow(1, t - 1 - n, n))
    }

    /// The trainable variables.
    fn var_store(&self) -> &nn::VarStore;

    /// The device the model lives on.
    fn device(&self) -> Device {
        self.var_store().device()
    }
}

/// Forwards every [`Policy`] method through a smart pointer.
macro_rules! policy_through_pointer {
    ($ptr:ident) => {
        impl<T: Policy + ?Sized> Policy for $ptr<T> {
            fn logits(
                &self,
                input_ids: &Tensor,
                attention_mask: &Tensor,
                train: bool,
            ) -> Result<Tensor> {
                (**self).logits(input_ids, attention_mask, train)
            }

            fn var_store(&self) -> &nn::VarStore {
                (**self).var_store()
            }

            fn device(&self) -> Device {
                (**self).device()
            }

            fn token_log_probs(
                &self,
                input_ids: &Tensor,
                attention_mask: &Tensor,
                temperature: f64,
                train: bool,
            ) -> Result<Tensor> {
                (**self).token_log_probs(input_ids, attention_mask, temperature, train)
            }

            fn masked_token_log_probs(
                &self,
                input_ids: &Tensor,
                attention_mask: &Tensor,
                target_mask: &Tensor,
                temperature: f64,
                train: bool,
            ) -> Result<Tensor> {
                (**self).masked_token_log_probs(
                    input_ids,
                    attention_mask,
                    target_mask,
                    temperature,
                    train,
                )
            }

            fn logits_for_last(
                &self,
                input_ids: &Tensor,
                attention_mask: &Tensor,
                n: i64,
                train: bool,
            ) -> Result<Tensor> {
                (**self).logits_for_last(input_ids, attention_mask, n, train)
            }

            fn generate(
                &self,
                prompt_ids: &Tensor,
                prompt_mask: &Tensor,
                cfg: &GenerateConfig,
            ) -> Result<Generation> {
                (**self).generate(prompt_ids, prompt_mask, cfg)
            }
        }
    };
}

// A shared policy is a policy: PPO can own an `Rc` of the model whose adapters-off view
// ([`crate::AdaptersOff`]) is the reference (tch models are not `Sync`, hence `Rc`).
policy_through_pointer!(Rc);
// A boxed policy is a policy: choose the reference (or the policy) at run time.
policy_through_pointer!(Box);
