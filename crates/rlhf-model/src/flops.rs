//! FLOP counts of GPT-2 and Llama-family forward passes and the measured matmul peak that benchmark FLOP rates
//! are compared with. One implementation, shared by the `bench` binary (`rlhf-examples`) and
//! the W-PPO workload (`rlhf-ppo`).

use crate::config::Gpt2Config;
use crate::model_config::ModelConfig;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Waits for queued CUDA work, so that wall-clock timings are honest (no-op on the CPU).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Measured throughput (GFLOP/s) of square `n x n` matmuls in `kind` on `device`: the
/// machine's practical peak. Two untimed rounds, then the median of five timed rounds of five
/// products each (CUDA synchronized around every round).
pub fn matmul_peak_gflops(device: Device, kind: Kind, n: i64) -> f64 {
    let _g = tch::no_grad_guard();
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let reps = 5;
    let mut times = Vec::new();
    for round in 0..7 {
        sync(device);
        let t = Instant::now();
        for _ in 0..reps {
            let _ = a.matmul(&b);
        }
        sync(device);
        if round >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|x, y| x.total_cmp(y));
    2.0 * (n as f64).powi(3) * reps as f64 / times[times.len() / 2] / 1e9
}

/// Forward FLOPs (multiply-add = 2) of `n` tokens attending to `ctx` keys each on average
/// through the GPT-2 body (QKV, attention output, MLP, `QK^T` and `AV`), plus `lm_rows` rows of
/// the unembedding.
pub fn forward_flops(cfg: &Gpt2Config, n: f64, ctx: f64, lm_rows: f64) -> f64 {
    let (e, l, v) = (cfg.n_embd as f64, cfg.n_layer as f64, cfg.vocab_size as f64);
    let inner = cfg.inner_dim() as f64;
    let dense = 2.0 * (4.0 * e * e + 2.0 * e * inner) * l;
    let attn = 2.0 * 2.0 * ctx * e * l;
    n * (dense + attn) + lm_rows * 2.0 * e * v
}

/// [`forward_flops`] for any architecture: GPT-2's, or the Llama family's (q/k/v/o with
/// grouped-query key/value widths, the three SwiGLU matrices, `QK^T` and `AV` over the query
/// width).
pub fn model_forward_flops(cfg: &ModelConfig, n: f64, ctx: f64, lm_rows: f64) -> f64 {
    let c = match cfg {
        ModelConfig::Gpt2(c) => return forward_flops(c, n, ctx, lm_rows),
        ModelConfig::Llama(c) => c,
    };
    let (e, l, v) = (
        c.hidden_size as f64,
        c.num_hidden_layers as f64,
        c.vocab_size as f64,
    );
    let q = (c.num_attention_heads * c.head_dim()) as f64;
    let kv = (c.kv_heads() * c.head_dim()) as f64;
    let inner = c.intermediate_size as f64;
    let dense = 2.0 * (2.0 * e * q + 2.0 * e * kv + 3.0 * e * inner) * l;
    let attn = 2.0 * 2.0 * ctx * q * l;
    n * (dense + attn) + lm_rows * 2.0 * e * v
}

/// Forward FLOPs that one position of the last block does not run when its output is not asked
/// for ([`crate::Body::forward_rows`]): the attention output projection, the MLP and the
/// position's `QK^T` and `AV` over `ctx` keys, plus for Llama its query projection (GPT-2's
/// fused `c_attn` still computes it). Its key and value are still computed.
pub fn last_block_row_flops(cfg: &ModelConfig, ctx: f64) -> f64 {
    match cfg {
        ModelConfig::Gpt2(c) => {
            let (e, inner) = (c.n_embd as f64, c.inner_dim() as f64);
            2.0 * (e * e + 2.0 * e * inner) + 2.0 * 2.0 * ctx * e
        }
        ModelConfig::Llama(c) => {
            let e = c.hidden_size as f64;
            let q = (c.num_attention_heads * c.head_dim()) as f64;
            let inner = c.intermediate_size as f64;
            2.0 * (2.0 * e * q + 3.0 * e * inner) + 2.0 * 2.0 * ctx * q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_flops_counts_dense_attention_and_unembedding() {
        let cfg = Gpt2Config::sized(1, 1, 4, 10, 8);
        let inner = cfg.inner_dim() as f64;
        // One token, one key, no unembedding: 2 * (4 e^2 + 2 e inner) + 4 e.
        let body = 2.0 * (4.0 * 16.0 + 2.0 * 4.0 * inner) + 4.0 * 4.0;
        assert_eq!(forward_flops(&cfg, 1.0, 1.0, 0.0), body);
        assert_eq!(
            forward_flops(&cfg, 1.0, 1.0, 3.0),
            body + 3.0 * 2.0 * 4.0 * 10.0
        );
    }

    #[test]
    fn llama_flops_count_gqa_and_swiglu() {
        // e = 8, 2 heads of 4 (q width 8), 1 kv head (kv width 4), inner 16, vocab 10.
        let cfg = ModelConfig::Llama(crate::LlamaConfig::sized(1, 2, 1, 8, 16, 10, 32));
        let body = 2.0 * (2.0 * 8.0 * 8.0 + 2.0 * 8.0 * 4.0 + 3.0 * 8.0 * 16.0) + 4.0 * 8.0;
        assert_eq!(model_forward_flops(&cfg, 1.0, 1.0, 0.0), body);
        assert_eq!(
            model_forward_flops(&cfg, 1.0, 1.0, 2.0),
            body + 2.0 * 2.0 * 8.0 * 10.0
        );
        // SmolLM2-135M: about 2 x 135M (minus the embedding) per token.
        let s = ModelConfig::Llama(crate::LlamaConfig::smollm2_135m());
        let per_token = model_forward_flops(&s, 1.0, 0.0, 0.0);
        assert!((per_token / 2.0 - 106.2e6).abs() < 1e6, "{per_token}");
    }

    #[test]
    fn a_skipped_last_block_row_is_part_of_a_layer() {
        for cfg in [
            ModelConfig::Gpt2(Gpt2Config::sized(3, 2, 8, 10, 16)),
            ModelConfig::Llama(crate::LlamaConfig::sized(3, 2, 1, 8, 16, 10, 32)),
        ] {
            let layer = model_forward_flops(&cfg, 1.0, 5.0, 0.0) / 3.0;
            let skipped = last_block_row_flops(&cfg, 5.0);
            assert!(
                skipped > 0.5 * layer && skipped < layer,
                "{skipped} of {layer}"
            );
        }
        // GPT-2: everything but the fused QKV projection (3 e^2 of a row's 12 e^2 + attention).
        let cfg = ModelConfig::Gpt2(Gpt2Config::sized(1, 1, 4, 10, 8));
        let layer = model_forward_flops(&cfg, 1.0, 2.0, 0.0);
        assert_eq!(last_block_row_flops(&cfg, 2.0), layer - 2.0 * 3.0 * 16.0);
    }

    #[test]
    fn matmul_peak_is_positive() {
        let g = matmul_peak_gflops(Device::Cpu, Kind::Float, 32);
        assert!(g.is_finite() && g > 0.0, "{g}");
    }
}
