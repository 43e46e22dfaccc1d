//! Small tensor helpers shared by every stage, each tested against a plain loop.

use tch::{Kind, Tensor};

/// The one log-prob alignment rule: `logits[:, t-1]` predicts token `t`.
///
/// Shapes: `logits [B, T, V]`, `input_ids [B, T]` -> `[B, T-1]`, where entry `t-1` is
/// `log p(input_ids[:, t] | input_ids[:, ..t])` under `softmax(logits / temperature)`, in f32.
/// Rollouts and training must pass the same temperature (the sampling one).
pub fn token_log_probs(logits: &Tensor, input_ids: &Tensor, temperature: f64) -> Tensor {
    let t = logits.size()[1];
    let logits = logits.narrow(1, 0, t - 1).to_kind(Kind::Float);
    let logits = if temperature == 1.0 {
        logits
    } else {
        logits / temperature
    };
    let targets = input_ids.narrow(1, 1, t - 1).unsqueeze(-1);
    let picked = logits.gather(-1, &targets, false).squeeze_dim(-1);
    picked - logits.logsumexp([-1], false)
}

/// Index of the last real (non-pad) token of each row, for right or left padding.
///
/// Shapes: `attention_mask [B, T]` (1 = real) -> `[B]` int64. A row with no real token gives 0.
pub fn last_token_index(attention_mask: &Tensor) -> Tensor {
    let t = attention_mask.size()[1];
    let idx = Tensor::arange(t, (Kind::Int64, attention_mask.device()));
    (attention_mask.to_kind(Kind::Int64) * idx.unsqueeze(0)).argmax(-1, false)
}

/// Entropy of `softmax(logits)` along the last dim, in f32. Shapes: `[.., V] -> [..]`.
pub fn entropy_from_logits(logits: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    let logp = logits.log_softmax(-1, Kind::Float);
    -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float)
}
