//! The Hugging Face `config.json` of the Llama family (`LlamaConfig`, `Qwen2Config`,
//! `Qwen3Config`, `MistralConfig`; SmolLM2 is `llama`), read and written with the same field
//! names, and its rotary embedding parameters.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// Llama / Qwen2 / Qwen3 / Mistral hyper-parameters, field for field Hugging Face's configs.
///
/// The four share one decoder; they differ in biases (Qwen2: q/k/v), Qwen3's RMSNorm on each
/// head's queries and keys (`q_norm`, `k_norm`), and Mistral's sliding window (which equals
/// full attention on sequences up to its length: see [`LlamaConfig::context_len`]).
///
/// Defaults are Hugging Face's `LlamaConfig` defaults. Keys this struct does not know (e.g.
/// Qwen2's `use_sliding_window`, `dtype`) are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    /// "llama", "qwen2", "qwen3" or "mistral" (default "llama").
    pub model_type: String,
    /// Vocabulary size (default 32000).
    pub vocab_size: i64,
    /// Hidden width (default 4096).
    pub hidden_size: i64,
    /// MLP inner width (default 11008).
    pub intermediate_size: i64,
    /// Number of decoder layers (default 32).
    pub num_hidden_layers: i64,
    /// Query heads per layer (default 32).
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention); `None` means `num_attention_heads`
    /// (default None).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i64>,
    /// Width of one head; `None` means `hidden_size / num_attention_heads` (128 for Qwen3, as
    /// its config's default) (default None).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// MLP activation; only "silu" is supported (default "silu").
    pub hidden_act: String,
    /// Maximum sequence length (default 2048).
    pub max_position_embeddings: i64,
    /// Std of the normal initialization (default 0.02).
    pub initializer_range: f64,
    /// RMSNorm epsilon (default 1e-6).
    pub rms_norm_eps: f64,
    /// RoPE base; `None` means 10000 or `rope_parameters.rope_theta` (default None).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// RoPE scaling (`{"rope_type": "llama3", "factor", "low_freq_factor",
    /// "high_freq_factor", "original_max_position_embeddings"}`, or "linear") (default None).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5's form of `rope_theta` + `rope_scaling` in one object (default None).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Bias on q/k/v/o (Llama's and Qwen3's `attention_bias`; Qwen2 always has q/k/v bias and
    /// no o bias; Mistral never has one) (default false).
    pub attention_bias: bool,
    /// Bias on the MLP projections (default false).
    pub mlp_bias: bool,
    /// Dropout on the attention probabilities in training (default 0).
    pub attention_dropout: f64,
    /// The LM head shares the token embedding matrix (default false).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id (default 1).
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token id (default 2). Llama 3's list form (`[128001, 128008, 128009]`)
    /// reads as its first id, and the whole list is kept in `eos_token_ids`.
    #[serde(deserialize_with = "id_or_first")]
    pub eos_token_id: Option<i64>,
    /// Every end-of-sequence id when `config.json` gives a list, in its order (the first is
    /// `eos_token_id`); empty for a single id. [`crate::ModelConfig`] reads it and writes the
    /// list back, so a saved Llama 3 Instruct checkpoint still stops at `<|eot_id|>` in
    /// `transformers` (default empty).
    #[serde(skip)]
    pub eos_token_ids: Vec<i64>,
    /// Padding token id; `None` means "use eos" (default None).
    pub pad_token_id: Option<i64>,
    /// Hugging Face class names, e.g. ["LlamaForCausalLM"] (default None).
    pub architectures: Option<Vec<String>>,
    /// Training-only dropout on the residual branches (not in Hugging Face's config, not saved)
    /// (default 0).
    #[serde(skip)]
    pub resid_pdrop: f64,
    /// Training-only dropout on the token embeddings (not saved) (default 0).
    #[serde(skip)]
    pub embd_pdrop: f64,
    /// Keys this struct does not model, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        LlamaConfig {
            model_type: "llama".into(),
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            initializer_range: 0.02,
            rms_norm_eps: 1e-6,
            rope_theta: None,
            rope_scaling: None,
            rope_parameters: None,
            attention_bias: false,
            mlp_bias: false,
            attention_dropout: 0.0,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            eos_token_ids: vec![],
            pad_token_id: None,
            architectures: None,
            resid_pdrop: 0.0,
            embd_pdrop: 0.0,
            extra: Default::default(),
        }
    }
}

/// A token id given as an integer, null, or a list of ids (the first is taken).
fn id_or_first<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        One(i64),
        Many(Vec<i64>),
    }
    Ok(match Option::<Id>::deserialize(d)? {
        None => None,
        Some(Id::One(i)) => Some(i),
        Some(Id::Many(v)) => v.first().copied(),
    })
}

/// How RoPE frequencies are rescaled (`rope_scaling` / `rope_parameters`' `rope_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE ("default").
    None,
    /// "linear": every frequency divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// "llama3": low frequencies divided by `factor`, high ones kept, smooth in between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pretrained with.
        original_max_position_embeddings: f64,
    },
}

impl LlamaConfig {
    /// A small config with the given shape (SmolLM2-style defaults otherwise: tied head,
    /// rope_theta 10000, rms_norm_eps 1e-5).
    pub fn sized(
        n_layer: i64,
        n_head: i64,
        n_kv_head: i64,
        hidden: i64,
        intermediate: i64,
        vocab_size: i64,
        max_positions: i64,
    ) -> Self {
        LlamaConfig {
            num_hidden_layers: n_layer,
            num_attention_heads: n_head,
            num_key_value_heads: Some(n_kv_head),
            hidden_size: hidden,
            intermediate_size: intermediate,
            vocab_size,
            max_position_embeddings: max_positions,
            rms_norm_eps: 1e-5,
            rope_theta: Some(10000.0),
            tie_word_embeddings: true,
            bos_token_id: Some(vocab_size - 1),
            eos_token_id: Some(vocab_size - 1),
            ..Default::default()
        }
    }

    /// SmolLM2-135M's shape (30 layers, 576 wide, 9 heads with 3 key/value heads, MLP 1536,
    /// vocab 49152, context 8192, rope_theta 1e5, tied head; BOS 1, EOS and pad 2).
    pub fn smollm2_135m() -> Self {
        LlamaConfig {
            rope_theta: Some(100000.0),
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            pad_token_id: Some(2),
            ..Self::sized(30, 9, 3, 576, 1536, 49152, 8192)
        }
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        match self.head_dim {
            Some(d) => d,
            None if self.model_type == "qwen3" => 128,
            None => self.hidden_size / self.num_attention_heads.max(1),
        }
    }

    /// Whether q/k/v carry a bias (Qwen2 always; Llama and Qwen3 with `attention_bias`;
    /// Mistral never).
    pub fn qkv_bias(&self) -> bool {
        match self.model_type.as_str() {
            "qwen2" => true,
            "mistral" => false,
            _ => self.attention_bias,
        }
    }

    /// Whether o_proj carries a bias (Llama and Qwen3 with `attention_bias`; never Qwen2 or
    /// Mistral).
    pub fn o_bias(&self) -> bool {
        matches!(self.model_type.as_str(), "llama" | "qwen3") && self.attention_bias
    }

    /// Whether each head's queries and keys go through an RMSNorm before RoPE (Qwen3's
    /// `q_norm`, `k_norm`).
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// Longest sequence the model takes: `max_position_embeddings`, and for Mistral at most
    /// its `sliding_window`. Within its window, sliding-window attention is full causal
    /// attention, which is what this crate computes; so a Mistral model with a window (v0.1:
    /// 4096) takes sequences up to it, and longer ones are an error as beyond any context.
    pub fn context_len(&self) -> i64 {
        let window = match self.model_type.as_str() {
            "mistral" => self.extra.get("sliding_window").and_then(|w| w.as_i64()),
            _ => None,
        };
        match window {
            Some(w) => w.min(self.max_position_embeddings),
            None => self.max_position_embeddings,
        }
    }

    /// The RoPE parameters object, from `rope_parameters` or else `rope_scaling`.
    fn rope_object(&self) -> Option<&serde_json::Value> {
        self.rope_parameters
            .as_ref()
            .or(self.rope_scaling.as_ref())
            .filter(|v| !v.is_null())
    }

    /// The RoPE base: `rope_theta`, else `rope_parameters.rope_theta`, else 10000.
    pub fn rope_base(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_object()?.get("rope_theta")?.as_f64())
            .unwrap_or(10000.0)
    }

    /// The parsed RoPE scaling.
    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        let Some(obj) = self.rope_object() else {
            return Ok(RopeScaling::None);
        };
        let ty = obj
            .get("rope_type")
            .or_else(|| obj.get("type"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let num = |key: &str| {
            obj.get(key).and_then(|v| v.as_f64()).ok_or_else(|| {
                ModelError::Config(format!("rope scaling {ty:?} needs a number {key:?}"))
            })
        };
        match ty {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }),
            other => Err(ModelError::Config(format!(
                "rope type {other:?} is not supported; use default, linear or llama3"
            ))),
        }
    }

    /// The id used to pad: `pad_token_id`, else `eos_token_id`, else the last vocabulary id.
    pub fn pad_id(&self) -> i64 {
        self.pad_token_id
            .or(self.eos_token_id)
            .unwrap_or(self.vocab_size - 1)
    }

    /// Checks the invariants the model relies on, with a message saying what to change.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
            ("head_dim", self.head_dim()),
        ] {
            if v <= 0 {
                return Err(ModelError::Config(format!(
                    "{name} must be positive, got {v}"
                )));
            }
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(ModelError::Config(format!(
                "hidden_size ({}) must be divisible by num_attention_heads ({}), or head_dim \
                 given",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(ModelError::Config(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.kv_heads()
            )));
        }
        if self.head_dim() % 2 != 0 {
            return Err(ModelError::Config(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim()
            )));
        }
        if self.hidden_act != "silu" {
            return Err(ModelError::Config(format!(
                "hidden_act {:?} is not supported; only \"silu\" (SwiGLU)",
                self.hidden_act
            )));
        }
        if !matches!(
            self.model_type.as_str(),
            "llama" | "qwen2" | "qwen3" | "mistral"
        ) {
            return Err(ModelError::Config(format!(
                "model_type {:?} is not a Llama-family type (llama, qwen2, qwen3, mistral)",
                self.model_type
            )));
        }
        crate::config::check_dropouts(&[
            ("attention_dropout", self.attention_dropout),
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
        ])?;
        if self.rms_norm_eps <= 0.0 {
            return Err(ModelError::Config("rms_norm_eps must be positive".into()));
        }
        let listed = self
            .eos_token_ids
            .iter()
            .map(|&id| ("eos_token_id", Some(id)));
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ]
        .into_iter()
        .chain(listed)
        {
            if let Some(id) = id {
                if id < 0 || id >= self.vocab_size {
                    return Err(ModelError::Config(format!(
                        "{name} {id} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    )));
                }
            }
        }
        self.rope_scaling()?;
        if self.extra.get("use_sliding_window") == Some(&serde_json::Value::Bool(true)) {
            return Err(ModelError::Config(
                "use_sliding_window is true: sliding-window attention is not supported".into(),
            ));
        }
        if let Some(types) = self.extra.get("layer_types").and_then(|t| t.as_array()) {
            if let Some(other) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
                return Err(ModelError::Config(format!(
                    "layer_types holds {other}: only full attention is supported"
                )));
            }
        }
        if self.model_type == "mistral" {
            match self.extra.get("sliding_window") {
                None | Some(serde_json::Value::Null) => {}
                Some(w) if w.as_i64().is_some_and(|w| w > 0) => {}
                Some(w) => {
                    return Err(ModelError::Config(format!(
                        "sliding_window must be a positive integer or null, got {w}"
                    )))
                }
            }
        }
        Ok(())
    }
}
