//! Shared-prompt scoring: each prompt of a ranking group is run through the transformer
//! **once**, and its K responses attend to the prompt's keys and values.
//!
//! In a causal transformer the prompt's hidden states do not depend on what follows them, so
//! the K rows `prompt + response_i` of a group recompute the same prompt K times. This module
//! computes the prompt once per group (`[G, P]` tokens) and the responses once each (`[N, R]`
//! tokens, position ids continuing after their prompt), with every response query attending
//! to its prompt's keys/values and to its own earlier tokens. The scores equal those of the
//! full rows (up to float rounding; see the tests), gradients flow to the shared prompt
//! computation from all K responses, and the work drops from `N (P + R)` to `G P + N R`
//! tokens.
//!
//! The forward reads the GPT-2 weights of a [`ScalarModel`]'s variable store by their Hugging
//! Face names (`transformer.h.{i}.attn.c_attn.weight`, ..., `score.weight`) and mirrors
//! `rlhf_model::Gpt2::forward` (pre-LN blocks, learned positions, fp32 math in the weights'
//! precision, no autocast).

use crate::error::{Result, RewardError};
use rlhf_data::collate::RewardBatch;
use rlhf_model::{Activation, Gpt2Config, ScalarModel};
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

/// A reward batch in shared-prompt layout: every prompt once, every response once.
///
/// Shapes: `prompt_ids`, `prompt_mask` `[G, P]` (right-padded); `prompt_lens` `[G]`;
/// `response_ids`, `response_mask` `[N, R]` (right-padded, responses include their EOS);
/// `response_group`, `response_lens` `[N]` (all int64). Response rows are in the order of the
/// [`RewardBatch`] rows (grouped by prompt).
#[derive(Debug)]
pub struct SharedPromptBatch {
    /// Prompt token ids `[G, P]`.
    pub prompt_ids: Tensor,
    /// 1 for real prompt tokens `[G, P]`.
    pub prompt_mask: Tensor,
    /// Real prompt tokens per group `[G]`.
    pub prompt_lens: Tensor,
    /// Response token ids `[N, R]`.
    pub response_ids: Tensor,
    /// 1 for real response tokens `[N, R]`.
    pub response_mask: Tensor,
    /// The group (prompt) of each response `[N]`.
    pub response_group: Tensor,
    /// Real response tokens per row `[N]` (at least 1).
    pub response_lens: Tensor,
}

impl SharedPromptBatch {
    /// Splits a collated [`RewardBatch`] into prompts and responses. Errors if a response row
    /// is empty (then the reward would be read on the prompt: use the full-row forward) or if
    /// the rows of one group do not share their prompt.
    pub fn from_reward_batch(b: &RewardBatch, device: Device) -> Result<Self> {
        let g = b.group_sizes.len();
        let offsets = b.group_offsets();
        let p_max = b.prompt_lens.iter().copied().max().unwrap_or(0);
        let r_max = b.response_lens.iter().copied().max().unwrap_or(0);
        if p_max == 0 || r_max == 0 {
            return Err(RewardError::Input(
                "shared-prompt batch needs non-empty prompts and responses".into(),
            ));
        }
        // Padded positions are masked out, so any valid id fills them: reuse the batch's first.
        let pad = b.input_ids.first().copied().unwrap_or(0);
        let mut prompt_ids = vec![pad; g * p_max];
        let mut prompt_mask = vec![0i64; g * p_max];
        let mut prompt_lens = Vec::with_capacity(g);
        for (gi, &off) in offsets.iter().enumerate() {
            let pl = b.prompt_lens[off];
            let row = b.row(off);
            for r in off..off + b.group_sizes[gi] {
                if b.prompt_lens[r] != pl || b.row(r)[..pl] != row[..pl] {
                    return Err(RewardError::Input(format!(
                        "rows {off} and {r} of group {gi} do not share their prompt"
                    )));
                }
            }
            prompt_ids[gi * p_max..gi * p_max + pl].copy_from_slice(&row[..pl]);
            prompt_mask[gi * p_max..gi * p_max + pl].fill(1);
            prompt_lens.push(pl as i64);
        }
        let n = b.batch;
        let mut response_ids = vec![pad; n * r_max];
        let mut response_mask = vec![0i64; n * r_max];
        let mut response_group = Vec::with_capacity(n);
        let mut response_lens = Vec::with_capacity(n);
        for (gi, &off) in offsets.iter().enumerate() {
            for r in off..off + b.group_sizes[gi] {
                let (pl, rl) = (b.prompt_lens[r], b.response_lens[r]);
                if rl == 0 {
                    return Err(RewardError::Input(format!(
                        "row {r} has an empty response: shared-prompt scoring reads the reward \
                         on the response's last token"
                    )));
                }
                response_ids[r * r_max..r * r_max + rl].copy_from_slice(&b.row(r)[pl..pl + rl]);
                response_mask[r * r_max..r * r_max + rl].fill(1);
                response_group.push(gi as i64);
                response_lens.push(rl as i64);
            }
        }
        let t = |v: &[i64], shape: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        let (g, p, n, r) = (g as i64, p_max as i64, n as i64, r_max as i64);
        Ok(SharedPromptBatch {
            prompt_ids: t(&prompt_ids, &[g, p]),
            prompt_mask: t(&prompt_mask, &[g, p]),
            prompt_lens: t(&prompt_lens, &[g]),
            response_ids: t(&response_ids, &[n, r]),
            response_mask: t(&response_mask, &[n, r]),
            response_group: t(&response_group, &[n]),
            response_lens: t(&response_lens, &[n]),
        })
    }

    /// Number of prompts, G.
    pub fn num_prompts(&self) -> i64 {
        self.prompt_ids.size()[0]
    }

    /// Number of responses, N.
    pub fn num_responses(&self) -> i64 {
        self.response_ids.size()[0]
    }
}

struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    /// Hugging Face Conv1D: `x @ W + b`, W stored `[in, out]`. Shapes: `[.., in] -> [.., out]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut shape = x.size();
        let n_in = *shape.last().expect("at least one dim");
        *shape.last_mut().expect("at least one dim") = self.w.size()[1];
        self.b
            .addmm(&x.reshape([-1, n_in]), &self.w)
            .view(shape.as_slice())
    }
}

struct Norm {
    w: Tensor,
    b: Tensor,
}

struct Layer {
    ln_1: Norm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: Norm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// The weights of a GPT-2 reward model, looked up by name in its variable store (shallow
/// handles: optimizer updates are seen).
pub struct SharedPromptScorer {
    wte: Tensor,
    wpe: Tensor,
    layers: Vec<Layer>,
    ln_f: Norm,
    score: Tensor,
    cfg: Gpt2Config,
    act: Activation,
}

impl std::fmt::Debug for SharedPromptScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPromptScorer")
            .field("n_layer", &self.layers.len())
            .finish()
    }
}

impl SharedPromptScorer {
    /// Looks up the weights of a GPT-2 scalar model (`transformer.*` and `score.weight`).
    pub fn new(vs: &nn::VarStore, cfg: &Gpt2Config) -> Result<Self> {
        let vars: HashMap<String, Tensor> = vs.variables();
        let get = |name: String| -> Result<Tensor> {
            vars.get(&name).map(Tensor::shallow_clone).ok_or_else(|| {
                RewardError::Input(format!(
                    "shared-prompt scoring needs a GPT-2 scalar model; variable {name} is missing"
                ))
            })
        };
        let lin = |p: &str| -> Result<Linear> {
            Ok(Linear {
                w: get(format!("{p}.weight"))?,
                b: get(format!("{p}.bias"))?,
            })
        };
        let norm = |p: &str| -> Result<Norm> {
            Ok(Norm {
                w: get(format!("{p}.weight"))?,
                b: get(format!("{p}.bias"))?,
            })
        };
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let p = format!("transformer.h.{i}");
                Ok(Layer {
                    ln_1: norm(&format!("{p}.ln_1"))?,
                    c_attn: lin(&format!("{p}.attn.c_attn"))?,
                    attn_proj: lin(&format!("{p}.attn.c_proj"))?,
                    ln_2: norm(&format!("{p}.ln_2"))?,
                    c_fc: lin(&format!("{p}.mlp.c_fc"))?,
                    mlp_proj: lin(&format!("{p}.mlp.c_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SharedPromptScorer {
            wte: get("transformer.wte.weight".into())?,
            wpe: get("transformer.wpe.weight".into())?,
            layers,
            ln_f: norm("transformer.ln_f")?,
            score: get("score.weight".into())?,
            act: cfg.activation()?,
            cfg: cfg.clone(),
        })
    }

    /// The weights of a [`ScalarModel`].
    pub fn of(model: &ScalarModel) -> Result<Self> {
        let cfg = model.config().as_gpt2().ok_or_else(|| {
            RewardError::Input(format!(
                "shared-prompt scoring needs a GPT-2 scalar model, this one is {:?}",
                model.config().model_type()
            ))
        })?;
        Self::new(rlhf_model::ValueFunction::var_store(model), cfg)
    }

    fn ln(&self, x: &Tensor, n: &Norm) -> Tensor {
        x.layer_norm(
            [self.cfg.n_embd],
            Some(&n.w),
            Some(&n.b),
            self.cfg.layer_norm_epsilon,
            false,
        )
    }

    fn mlp(&self, l: &Layer, x: &Tensor, train: bool) -> Tensor {
        let h = l.c_fc.forward(&self.ln(x, &l.ln_2));
        let h = match self.act {
            Activation::GeluTanh => h.gelu("tanh"),
            Activation::Gelu => h.gelu("none"),
            Activation::Relu => h.relu(),
        };
        l.mlp_proj.forward(&h).dropout(self.cfg.resid_pdrop, train)
    }

    /// `[B, T, 3E] -> (q, k, v)` each `[B, H, T, D]`.
    fn split_heads(&self, qkv: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, t, _) = qkv.size3().expect("[B, T, 3E]");
        let h = self.cfg.n_head;
        let qkv = qkv
            .view([b, t, 3, h, self.cfg.n_embd / h])
            .permute([2, 0, 3, 1, 4]);
        (qkv.get(0), qkv.get(1), qkv.get(2))
    }

    fn merge_heads(&self, y: &Tensor) -> Tensor {
        let (b, _, t, _) = y.size4().expect("[B, H, T, D]");
        y.transpose(1, 2).reshape([b, t, self.cfg.n_embd])
    }

    /// Raw rewards (no normalization bias) of every response, read at its last token.
    ///
    /// Shapes: a [`SharedPromptBatch`] of G prompts and N responses -> `[N]` f32. `train`
    /// enables dropout.
    pub fn scores(&self, batch: &SharedPromptBatch, train: bool) -> Result<Tensor> {
        let (_, p) = batch.prompt_ids.size2()?;
        let (n, r) = batch.response_ids.size2()?;
        if p + r > self.cfg.n_positions {
            return Err(RewardError::Input(format!(
                "prompt ({p}) + response ({r}) tokens exceed n_positions {}",
                self.cfg.n_positions
            )));
        }
        let dev = batch.prompt_ids.device();
        let cfg = &self.cfg;
        let attn_p = if train { cfg.attn_pdrop } else { 0.0 };
        let scale = if cfg.scale_attn_weights {
            None
        } else {
            Some(1.0)
        };
        let grp = &batch.response_group;
        // Embeddings: prompts at positions 0.., responses continue after their prompt.
        let pos_p = Tensor::arange(p, (Kind::Int64, dev)).unsqueeze(0);
        let pos_r = batch.prompt_lens.index_select(0, grp).unsqueeze(1)
            + Tensor::arange(r, (Kind::Int64, dev)).unsqueeze(0);
        let emb = |ids: &Tensor, pos: &Tensor| {
            (Tensor::embedding(&self.wte, ids, -1, false, false)
                + Tensor::embedding(&self.wpe, pos, -1, false, false))
            .dropout(cfg.embd_pdrop, train)
        };
        let mut xp = emb(&batch.prompt_ids, &pos_p);
        let mut xr = emb(&batch.response_ids, &pos_r);
        // Response queries see their prompt's real tokens, then their own response causally
        // (and always themselves, so padded rows stay finite).
        let q_idx = Tensor::arange(r, (Kind::Int64, dev)).view([r, 1]);
        let k_idx = Tensor::arange(r, (Kind::Int64, dev)).view([1, r]);
        let causal = k_idx.le_tensor(&q_idx).view([1, 1, r, r]);
        let real_r = batch.response_mask.to_kind(Kind::Bool).view([n, 1, 1, r]);
        let own = k_idx.eq_tensor(&q_idx).view([1, 1, r, r]);
        let resp_part = causal.logical_and(&real_r).logical_or(&own);
        let prompt_part = batch
            .prompt_mask
            .to_kind(Kind::Bool)
            .index_select(0, grp)
            .view([n, 1, 1, p])
            .expand([n, 1, r, p], false);
        let mask = Tensor::cat(&[prompt_part, resp_part.expand([n, 1, r, r], false)], 3);
        // Only each response's last token is read: the last block runs for the response
        // columns `lo..=hi` that hold one (a single column when the responses are equally long).
        let last_idx = &batch.response_lens - 1;
        let (lo, hi) = if n == 0 {
            (0, r - 1)
        } else {
            (
                last_idx.min().int64_value(&[]),
                last_idx.max().int64_value(&[]),
            )
        };
        let keep = hi + 1 - lo;
        let n_layer = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            let (qp, kp, vp) = self.split_heads(&l.c_attn.forward(&self.ln(&xp, &l.ln_1)));
            let (qr, kr, vr) = self.split_heads(&l.c_attn.forward(&self.ln(&xr, &l.ln_1)));
            let last_block = i + 1 == n_layer;
            let (qr, mask) = if last_block {
                xr = xr.narrow(1, lo, keep);
                (qr.narrow(2, lo, keep), mask.narrow(2, lo, keep))
            } else {
                (qr, mask.shallow_clone())
            };
            // Prompts: plain causal attention (right padding never affects real tokens).
            let yp = (i + 1 < n_layer).then(|| {
                Tensor::scaled_dot_product_attention::<Tensor>(
                    &qp, &kp, &vp, None, attn_p, true, scale, false,
                )
            });
            let k = Tensor::cat(&[kp.index_select(0, grp), kr], 2);
            let v = Tensor::cat(&[vp.index_select(0, grp), vr], 2);
            let yr = Tensor::scaled_dot_product_attention(
                &qr,
                &k,
                &v,
                Some(&mask),
                attn_p,
                false,
                scale,
                false,
            );
            // Residual adds are out of place: LayerNorm's backward needs its input unchanged.
            let a = l
                .attn_proj
                .forward(&self.merge_heads(&yr))
                .dropout(cfg.resid_pdrop, train);
            xr = xr.g_add(&a);
            let m = self.mlp(l, &xr, train);
            xr = xr.g_add(&m);
            if let Some(yp) = yp {
                // The prompt's states after the last block are never read.
                let a = l
                    .attn_proj
                    .forward(&self.merge_heads(&yp))
                    .dropout(cfg.resid_pdrop, train);
                xp = xp.g_add(&a);
                let m = self.mlp(l, &xp, train);
                xp = xp.g_add(&m);
            }
        }
        if n_layer == 0 {
            xr = xr.narrow(1, lo, keep);
        }
        let e = cfg.n_embd;
        let last = (last_idx - lo).view([n, 1, 1]).expand([n, 1, e], false);
        let h = self.ln(&xr.gather(1, &last, false).squeeze_dim(1), &self.ln_f);
        Ok(h.matmul(&self.score.tr())
            .squeeze_dim(-1)
            .to_kind(Kind::Float))
    }
}
