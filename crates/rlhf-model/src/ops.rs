//! Small tensor helpers shared by every stage, each tested against a plain loop.

use tch::{Kind, Tensor};

/// The one log-prob alignment rule: `logits[:, t-1]` predicts token `t`.
///
/// Shapes: `logits [B, T, V]`, `input_ids [B, T]` -> `[B, T-1]`, where entry `t-1` is
/// `log p(input_ids[:, t] | input_ids[:, ..t])` under `softmax(logits / temperature)`, in f32.
/// Rollouts and training must pass the same temperature (the sampling one).
pub fn token_log_probs(logits: &Tensor, input_ids: &Tensor, temperature: f64) -> Tensor {
    let t = logits.size()[1];
    let targets = input_ids.narrow(1, 1, t - 1);
    log_probs_of(&logits.narrow(1, 0, t - 1), &targets, temperature)
}

/// `log softmax(logits / temperature)[.., target]` in f32, for logits that already sit at the
/// predicting positions. Shapes: `logits [.., V]`, `targets [..]` (int64) -> `[..]`.
///
/// One fused `log_softmax` then a `gather`: its backward is a single `log_softmax_backward`
/// pass over the logits, where `picked - logsumexp` takes several. GPT-2 small, 1024 x 50257
/// logits, unembedding + loss forward and backward, interleaved on a busy 2-core CPU: 0.46 of
/// the old full-logits `logsumexp` path here vs 0.54 with `logsumexp` on the same rows.
pub fn log_probs_of(logits: &Tensor, targets: &Tensor, temperature: f64) -> Tensor {
    let logp = if temperature == 1.0 {
        logits.log_softmax(-1, Kind::Float)
    } else {
        (logits.to_kind(Kind::Float) / temperature).log_softmax(-1, Kind::Float)
    };
    logp.gather(-1, &targets.unsqueeze(-1), false)
        .squeeze_dim(-1)
}

/// Row indices (into the flattened `[B * T]` positions) of the logits that predict the tokens
/// selected by `target_mask`, and those tokens, both in row-major order.
///
/// Shapes: `target_mask [B, T]` (nonzero where token `t` is scored; column 0 is ignored since
/// nothing predicts the first token), `input_ids [B, T]` -> `(rows [N], targets [N])` int64.
/// Token `(b, t)` is predicted by row `b * T + t - 1` (the one alignment rule).
pub fn selected_positions(target_mask: &Tensor, input_ids: &Tensor) -> (Tensor, Tensor) {
    let t = input_ids.size()[1];
    let sel = target_mask.narrow(1, 1, t - 1).ne(0);
    let nz = sel.nonzero(); // [N, 2]: (b, t - 1)
    let rows = nz.select(1, 0) * t + nz.select(1, 1);
    let targets = input_ids.narrow(1, 1, t - 1).masked_select(&sel);
    (rows, targets)
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
