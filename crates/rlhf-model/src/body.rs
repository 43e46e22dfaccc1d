//! [`Body`]: the transformer of a [`crate::CausalLm`] or [`crate::ScalarModel`], one of the
//! supported architectures, behind one interface.

use crate::error::Result;
use crate::gpt2::{Gpt2, KvCache};
use crate::llama::Llama;
use crate::model_config::ModelConfig;
use std::ops::Range;
use tch::{nn, Kind, Tensor};

/// A trainable weight drawn from normal(0, `stdev`), in the variable store's kind.
///
/// Only loads (`CausalLm::load`, `ScalarModel::load`, ...) create variables in a reduced
/// precision, and every weight made here is then read from the file: in a reduced precision
/// the weight is zeros, which costs neither the drawing (slow in bf16 on the CPU) nor an f32
/// copy of the model. In f32 it is drawn as always, so the random stream after a load, and
/// every seeded f32 run, stays as it was.
pub(crate) fn normal_var(p: &nn::Path, name: &str, dims: &[i64], stdev: f64) -> Tensor {
    if p.kind() == Kind::Float {
        p.var(name, dims, nn::Init::Randn { mean: 0.0, stdev })
    } else {
        p.var(name, dims, nn::Init::Const(0.0))
    }
}

/// The transformer body, chosen by the config's `model_type`.
#[derive(Debug)]
pub enum Body {
    /// GPT-2 (`transformer.*` variables).
    Gpt2(Gpt2),
    /// Llama / Qwen2 / SmolLM2 (`model.*` variables).
    Llama(Llama),
}

impl Body {
    /// Creates the body's variables under `root / cfg.body_prefix()`.
    pub fn new(root: &nn::Path, cfg: &ModelConfig) -> Result<Self> {
        let p = root / cfg.body_prefix();
        Ok(match cfg {
            ModelConfig::Gpt2(c) => Body::Gpt2(Gpt2::new(&p, c)?),
            ModelConfig::Llama(c) => Body::Llama(Llama::new(&p, c)?),
        })
    }

    /// Runs the transformer.
    ///
    /// Shapes: `input_ids [B, T]` (int64) and `attention_mask [B, past + T]` (1 = real token,
    /// 0 = pad; `None` = no padding) -> hidden states `[B, T, E]` after the final norm.
    /// Position ids come from the attention mask, so left-padded rows start at position 0.
    /// With a cache, the `T` new tokens are appended to it.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        match self {
            Body::Gpt2(b) => b.forward(input_ids, attention_mask, cache, train),
            Body::Llama(b) => b.forward(input_ids, attention_mask, cache, train),
        }
    }

    /// [`Body::forward`] returning only the hidden states of the new-token positions `rows`
    /// (`[B, R, E]`; `None` = all): the same values, with the last block computed for those
    /// positions only (see [`Gpt2::forward_rows`]). What the unembedding of selected positions,
    /// a last-token reward or the values of a response need.
    pub fn forward_rows(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
        rows: Option<Range<i64>>,
    ) -> Result<Tensor> {
        match self {
            Body::Gpt2(b) => b.forward_rows(input_ids, attention_mask, cache, train, rows),
            Body::Llama(b) => b.forward_rows(input_ids, attention_mask, cache, train, rows),
        }
    }

    /// The config the body was built with (dropouts as last set).
    pub fn config(&self) -> ModelConfig {
        match self {
            Body::Gpt2(b) => ModelConfig::Gpt2(b.config().clone()),
            Body::Llama(b) => ModelConfig::Llama(b.config().clone()),
        }
    }

    /// Adds LoRA adapters (see [`crate::lora`]) under `root / cfg.body_prefix()`; returns how
    /// many projections were adapted.
    pub(crate) fn attach_lora(
        &mut self,
        root: &nn::Path,
        prefix: &str,
        cfg: &crate::lora::LoraConfig,
        targets: &[String],
        enabled: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> usize {
        let projections = match self {
            Body::Gpt2(b) => b.projections(),
            Body::Llama(b) => b.projections(),
        };
        crate::lora::attach(&(root / prefix), projections, cfg, targets, enabled)
    }

    /// `(weight name under the body, merged weight)` of every adapted projection.
    pub(crate) fn merged_weights(&mut self) -> Vec<(String, Tensor)> {
        let projections = match self {
            Body::Gpt2(b) => b.projections(),
            Body::Llama(b) => b.projections(),
        };
        crate::lora::merged(projections)
    }

    /// The token embedding `[V, E]` (also the tied unembedding).
    pub fn token_embedding(&self) -> &Tensor {
        match self {
            Body::Gpt2(b) => b.token_embedding(),
            Body::Llama(b) => b.token_embedding(),
        }
    }

    /// The autocast precision, if any.
    pub fn autocast(&self) -> Option<Kind> {
        match self {
            Body::Gpt2(b) => b.autocast(),
            Body::Llama(b) => b.autocast(),
        }
    }

    /// Mixed precision (see [`Gpt2::set_autocast`]).
    pub fn set_autocast(&mut self, kind: Option<Kind>) {
        match self {
            Body::Gpt2(b) => b.set_autocast(kind),
            Body::Llama(b) => b.set_autocast(kind),
        }
    }

    /// The dtype activations are computed in.
    pub fn compute_kind(&self) -> Kind {
        match self {
            Body::Gpt2(b) => b.compute_kind(),
            Body::Llama(b) => b.compute_kind(),
        }
    }

    /// Sets the training-mode dropout probabilities.
    pub fn set_dropout(&mut self, resid: f64, embd: f64, attn: f64) {
        match self {
            Body::Gpt2(b) => b.set_dropout(resid, embd, attn),
            Body::Llama(b) => b.set_dropout(resid, embd, attn),
        }
    }
}
