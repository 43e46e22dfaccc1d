//! The Hugging Face `config.json` of the Llama family (`LlamaConfig`, `Qwen2Config`,
//! `Qwen3Config`, `MistralConfig`, `Gemma2Config`, `Gemma3TextConfig`, `SmolLM3Config`,
//! `Olmo2Config`; SmolLM2 is `llama`), read and written with the same field names, and its
//! rotary embedding parameters.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// Llama / Qwen2 / Qwen3 / Mistral / Gemma 2 / Gemma 3 / SmolLM3 / OLMo 2 hyper-parameters,
/// field for field Hugging Face's configs.
///
/// They share one decoder; they differ in biases (Qwen2: q/k/v), Qwen3's RMSNorm on each
/// head's queries and keys (`q_norm`, `k_norm`), sliding windows (Mistral's, Gemma's and
/// SmolLM3's: [`LlamaConfig::layer_window`]), Gemma's block (see [`LlamaConfig::is_gemma3`],
/// [`LlamaConfig::is_gemma`]), SmolLM3's layers without RoPE ([`LlamaConfig::layer_rope`]) and
/// OLMo 2's norms ([`LlamaConfig::qk_norm_wide`]).
///
/// Defaults are Hugging Face's `LlamaConfig` defaults. Keys this struct does not know (e.g.
/// Qwen2's `use_sliding_window`, `dtype`, Gemma 3's `query_pre_attn_scalar`,
/// `sliding_window`, `layer_types`) are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    /// "llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "smollm3" or "olmo2"
    /// (default "llama").
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
    /// MLP activation; only "silu" is supported (default "silu"). Gemma 3 names its activation
    /// `hidden_activation` instead (kept in `extra`; "gelu_pytorch_tanh"), and this field is
    /// then not written.
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

/// A RoPE parameters object (`rope_type` or `type`: "default", "linear", "llama3"); `None` is
/// plain RoPE.
fn parse_rope_scaling(obj: Option<&serde_json::Value>) -> Result<RopeScaling> {
    let Some(obj) = obj else {
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
            None if self.is_gemma() => 256,
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
        matches!(
            self.model_type.as_str(),
            "llama" | "qwen3" | "gemma2" | "gemma3_text" | "smollm3" | "olmo2"
        ) && self.attention_bias
    }

    /// Whether the queries and keys go through an RMSNorm before RoPE (Qwen3's and Gemma 3's
    /// `q_norm`, `k_norm`, over each head; OLMo 2's over all heads: [`Self::qk_norm_wide`]).
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3" || self.is_gemma3() || self.model_type == "olmo2"
    }

    /// Whether [`Self::qk_norm`] normalizes a position's queries (keys) of all heads together,
    /// before they are split into heads (OLMo 2's `q_norm` of width heads x head_dim).
    pub fn qk_norm_wide(&self) -> bool {
        self.model_type == "olmo2"
    }

    /// Gemma 3 (`model_type` "gemma3_text", `Gemma3ForCausalLM`: Gemma 3 270M and 1B, and the
    /// language model of the larger ones). Its block differs from Llama's in: token embeddings
    /// scaled by `sqrt(hidden_size)`; RMSNorms that scale by `1 + weight` (stored weights are
    /// centred on 0); four norms per layer (the attention's and the MLP's outputs are
    /// normalized too, before their residual add); `q_norm`/`k_norm` as Qwen3; attention
    /// scaled by `query_pre_attn_scalar ** -0.5`; a GELU (tanh) gated MLP; and local layers
    /// (`layer_types` "sliding_attention", or five of every six by default) that attend to
    /// the last `sliding_window` positions only, with their own RoPE base
    /// (`rope_local_base_freq`, or `rope_parameters.sliding_attention`).
    pub fn is_gemma3(&self) -> bool {
        self.model_type == "gemma3_text"
    }

    /// Gemma 2 (`gemma2`, `Gemma2ForCausalLM`) or Gemma 3: the block of [`Self::is_gemma3`].
    /// Gemma 2 has no `q_norm`/`k_norm` and one RoPE for every layer, makes every second layer
    /// local by default, and soft-caps the attention scores (`attn_logit_softcapping`, 50 by
    /// default: [`Self::attention_softcapping`]) and the logits (`final_logit_softcapping`, 30
    /// by default).
    pub fn is_gemma(&self) -> bool {
        matches!(self.model_type.as_str(), "gemma2" | "gemma3_text")
    }

    /// Gemma 2's `attn_logit_softcapping` (`scores = cap * tanh(scores / cap)` before the
    /// mask and the softmax; 50 when the key is absent, none when null); `None` for the others
    /// (`transformers`' Gemma 3 ignores the key).
    pub fn attention_softcapping(&self) -> Option<f64> {
        if self.model_type != "gemma2" {
            return None;
        }
        match self.extra.get("attn_logit_softcapping") {
            None => Some(50.0),
            Some(v) => v.as_f64(),
        }
    }

    fn extra_f64(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(|v| v.as_f64())
    }

    /// The attention's score scale: Gemma 3's `query_pre_attn_scalar ** -0.5` (default 256),
    /// `None` (`1 / sqrt(head_dim)`) for the others.
    pub fn attention_scale(&self) -> Option<f64> {
        self.is_gemma().then(|| {
            self.extra_f64("query_pre_attn_scalar")
                .unwrap_or(256.0)
                .powf(-0.5)
        })
    }

    /// Gemma's `final_logit_softcapping` (`logits = cap * tanh(logits / cap)`), when set
    /// (Gemma 2: 30 when the key is absent).
    pub fn final_logit_softcapping(&self) -> Option<f64> {
        match (
            self.model_type.as_str(),
            self.extra.get("final_logit_softcapping"),
        ) {
            ("gemma2", None) => Some(30.0),
            (_, v) if self.is_gemma() => v.and_then(|v| v.as_f64()),
            _ => None,
        }
    }

    /// Gemma 3's `layer_types`, or its default (`sliding_window_pattern`, 6: every sixth layer
    /// global, the others local); `None` for the other models.
    fn gemma3_layer_types(&self) -> Option<Vec<String>> {
        if !self.is_gemma() {
            return None;
        }
        if let Some(types) = self.extra.get("layer_types").and_then(|t| t.as_array()) {
            return Some(
                types
                    .iter()
                    .map(|t| t.as_str().unwrap_or("").to_string())
                    .collect(),
            );
        }
        let pattern = ["sliding_window_pattern", "_sliding_window_pattern"]
            .iter()
            .find_map(|k| self.extra.get(*k).and_then(|v| v.as_i64()))
            .filter(|_| self.is_gemma3())
            .unwrap_or(if self.is_gemma3() { 6 } else { 2 })
            .max(1);
        Some(
            (0..self.num_hidden_layers)
                .map(|i| {
                    if (i + 1) % pattern != 0 {
                        "sliding_attention".to_string()
                    } else {
                        "full_attention".to_string()
                    }
                })
                .collect(),
        )
    }

    /// The window of layer `i`'s local attention: each query sees the `window` positions
    /// ending at its own (Hugging Face's `kv_idx > q_idx - sliding_window`); `None` for full
    /// attention. Mistral's `sliding_window` (v0.1: 4096; null in v0.2 and later) applies to
    /// every layer, Gemma 3's to its "sliding_attention" layers; Llama, Qwen2 and Qwen3 attend
    /// in full.
    pub fn layer_window(&self, i: i64) -> Option<i64> {
        if self.model_type == "mistral" {
            return self.extra.get("sliding_window").and_then(|w| w.as_i64());
        }
        if self.model_type == "smollm3" {
            return self
                .smollm3_sliding(i)
                .then(|| self.extra.get("sliding_window").and_then(|w| w.as_i64()))
                .flatten();
        }
        let types = self.gemma3_layer_types()?;
        let sliding = types.get(i as usize).map(String::as_str) == Some("sliding_attention");
        sliding.then(|| self.gemma3_window()).flatten()
    }

    /// Whether layer `i` applies RoPE: all but SmolLM3's `no_rope_layers` entries of 0 (by
    /// default every `no_rope_layer_interval`-th layer, 4: its "NoPE" layers).
    pub fn layer_rope(&self, i: i64) -> bool {
        if self.model_type != "smollm3" {
            return true;
        }
        match self.extra.get("no_rope_layers").and_then(|v| v.as_array()) {
            Some(list) => list.get(i as usize).and_then(|v| v.as_i64()) != Some(0),
            None => {
                let every = self
                    .extra
                    .get("no_rope_layer_interval")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(4)
                    .max(1);
                (i + 1) % every != 0
            }
        }
    }

    /// SmolLM3: whether layer `i` slides (`use_sliding_window` and a "sliding_attention" entry
    /// of `layer_types`, whose default makes the layers without RoPE slide when a
    /// `sliding_window` is set).
    fn smollm3_sliding(&self, i: i64) -> bool {
        if self.extra.get("use_sliding_window") != Some(&serde_json::Value::Bool(true)) {
            return false;
        }
        match self.extra.get("layer_types").and_then(|t| t.as_array()) {
            Some(types) => {
                types.get(i as usize).and_then(|t| t.as_str()) == Some("sliding_attention")
            }
            None => {
                !self.layer_rope(i)
                    && self
                        .extra
                        .get("sliding_window")
                        .is_some_and(|w| !w.is_null())
            }
        }
    }

    /// Gemma 3's `sliding_window` (4096 when the key is absent, as `Gemma3TextConfig`'s
    /// default).
    fn gemma3_window(&self) -> Option<i64> {
        match self.extra.get("sliding_window") {
            None => Some(4096),
            Some(w) => w.as_i64(),
        }
    }

    /// The RoPE base and scaling of full-attention layers (`local = false`) or of Gemma 3's
    /// local layers (`local = true`). Gemma 3 reads `rope_parameters.{full_attention,
    /// sliding_attention}` (transformers 5) or `rope_theta` (default 1e6) with `rope_scaling`
    /// and `rope_local_base_freq` (default 1e4, never scaled); the others have one RoPE,
    /// [`Self::rope_base`] and [`Self::rope_scaling`].
    pub fn rope(&self, local: bool) -> Result<(f64, RopeScaling)> {
        if !self.is_gemma3() {
            return Ok((self.rope_base(), self.rope_scaling()?));
        }
        let key = if local {
            "sliding_attention"
        } else {
            "full_attention"
        };
        let default_base = if local { 10000.0 } else { 1000000.0 };
        if let Some(obj) = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get(key))
            .filter(|v| !v.is_null())
        {
            let base = obj
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(default_base);
            return Ok((base, parse_rope_scaling(Some(obj))?));
        }
        if local {
            Ok((
                self.extra_f64("rope_local_base_freq")
                    .unwrap_or(default_base),
                RopeScaling::None,
            ))
        } else {
            let scaling = self.rope_scaling.as_ref().filter(|v| !v.is_null());
            Ok((
                self.rope_theta.unwrap_or(default_base),
                parse_rope_scaling(scaling)?,
            ))
        }
    }

    /// Longest sequence the model takes: `max_position_embeddings` (a sliding window, as
    /// Mistral's or Gemma 3's, bounds what each position attends to, not the sequence: see
    /// [`Self::layer_window`]).
    pub fn context_len(&self) -> i64 {
        self.max_position_embeddings
    }

    /// The RoPE parameters object, from `rope_parameters` or else `rope_scaling`.
    fn rope_object(&self) -> Option<&serde_json::Value> {
        self.rope_parameters
            .as_ref()
            .or(self.rope_scaling.as_ref())
            .filter(|v| !v.is_null())
    }

    /// The RoPE base: `rope_theta`, else `rope_parameters.rope_theta`, else 10000 (SmolLM3's
    /// default: 2e6).
    pub fn rope_base(&self) -> f64 {
        let default = match self.model_type.as_str() {
            "smollm3" => 2e6,
            _ => 10000.0,
        };
        self.rope_theta
            .or_else(|| self.rope_object()?.get("rope_theta")?.as_f64())
            .unwrap_or(default)
    }

    /// The parsed RoPE scaling.
    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        parse_rope_scaling(self.rope_object())
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
        if self.is_gemma() {
            let act = self.extra.get("hidden_activation");
            if !matches!(act, None | Some(serde_json::Value::Null))
                && act.and_then(|a| a.as_str()) != Some("gelu_pytorch_tanh")
            {
                return Err(ModelError::Config(format!(
                    "hidden_activation {} is not supported; only \"gelu_pytorch_tanh\" (Gemma's \
                     GELU with the tanh approximation)",
                    act.expect("checked above")
                )));
            }
        } else if self.hidden_act != "silu" {
            return Err(ModelError::Config(format!(
                "hidden_act {:?} is not supported; only \"silu\" (SwiGLU)",
                self.hidden_act
            )));
        }
        if !matches!(
            self.model_type.as_str(),
            "llama"
                | "qwen2"
                | "qwen3"
                | "mistral"
                | "gemma2"
                | "gemma3_text"
                | "smollm3"
                | "olmo2"
        ) {
            return Err(ModelError::Config(format!(
                "model_type {:?} is not a Llama-family type (llama, qwen2, qwen3, mistral, \
                 gemma2, gemma3_text, smollm3, olmo2)",
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
        if self.is_gemma() {
            return self.validate_gemma();
        }
        if self.model_type == "smollm3" {
            return self.validate_smollm3();
        }
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

    /// SmolLM3's own keys: `no_rope_layers` (one 0 or 1 per layer), `layer_types` (one per
    /// layer, full or sliding) and, when a layer slides, a positive `sliding_window`.
    fn validate_smollm3(&self) -> Result<()> {
        let per_layer = |key: &str| -> Result<Option<&Vec<serde_json::Value>>> {
            match self.extra.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Array(v)) if v.len() as i64 == self.num_hidden_layers => {
                    Ok(Some(v))
                }
                Some(v) => Err(ModelError::Config(format!(
                    "{key} must list one entry per layer ({}), got {v}",
                    self.num_hidden_layers
                ))),
            }
        };
        if let Some(list) = per_layer("no_rope_layers")? {
            if let Some(bad) = list.iter().find(|v| !matches!(v.as_i64(), Some(0 | 1))) {
                return Err(ModelError::Config(format!(
                    "no_rope_layers holds {bad}: each entry is 1 (RoPE) or 0 (none)"
                )));
            }
        }
        if let Some(types) = per_layer("layer_types")? {
            if let Some(other) = types
                .iter()
                .find(|t| !matches!(t.as_str(), Some("full_attention" | "sliding_attention")))
            {
                return Err(ModelError::Config(format!(
                    "layer_types holds {other}: only full_attention and sliding_attention"
                )));
            }
        }
        let uses_window = self.extra.get("use_sliding_window")
            == Some(&serde_json::Value::Bool(true))
            && self
                .extra
                .get("layer_types")
                .and_then(|t| t.as_array())
                .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("sliding_attention")));
        let window = self.extra.get("sliding_window").and_then(|w| w.as_i64());
        if uses_window && window.is_none_or(|w| w <= 0) {
            return Err(ModelError::Config(
                "use_sliding_window is true and a layer is sliding_attention: sliding_window \
                 must be a positive integer"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Gemma's own keys: `layer_types` (one per layer, full or sliding), `sliding_window`
    /// (a positive integer when a layer slides), `query_pre_attn_scalar`, the soft caps, both
    /// RoPEs; EmbeddingGemma's bidirectional attention is refused. Gemma 3 ignores
    /// `attn_logit_softcapping`, as `transformers`' Gemma 3 does.
    fn validate_gemma(&self) -> Result<()> {
        if let Some(v) = self.extra.get("layer_types").filter(|v| !v.is_null()) {
            let types = v.as_array().ok_or_else(|| {
                ModelError::Config(format!("layer_types must be a list, got {v}"))
            })?;
            if types.len() as i64 != self.num_hidden_layers {
                return Err(ModelError::Config(format!(
                    "layer_types lists {} layers, num_hidden_layers is {}",
                    types.len(),
                    self.num_hidden_layers
                )));
            }
            if let Some(other) = types
                .iter()
                .find(|t| !matches!(t.as_str(), Some("full_attention" | "sliding_attention")))
            {
                return Err(ModelError::Config(format!(
                    "layer_types holds {other}: only full_attention and sliding_attention"
                )));
            }
        }
        let sliding = (0..self.num_hidden_layers).any(|i| {
            self.gemma3_layer_types()
                .and_then(|t| t.get(i as usize).cloned())
                == Some("sliding_attention".to_string())
        });
        if sliding {
            match self.extra.get("sliding_window") {
                None => {}
                Some(w) if w.as_i64().is_some_and(|w| w > 0) => {}
                other => {
                    return Err(ModelError::Config(format!(
                        "sliding_window must be a positive integer when a layer is \
                         sliding_attention, got {}",
                        other.expect("absent is matched above")
                    )))
                }
            }
        }
        if self.extra.get("use_bidirectional_attention") == Some(&serde_json::Value::Bool(true)) {
            return Err(ModelError::Config(
                "use_bidirectional_attention is true (EmbeddingGemma): only causal language \
                 models are supported"
                    .into(),
            ));
        }
        for key in [
            "query_pre_attn_scalar",
            "final_logit_softcapping",
            "attn_logit_softcapping",
        ] {
            match self.extra.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) if v.as_f64().is_some_and(|x| x > 0.0) => {}
                Some(v) => {
                    return Err(ModelError::Config(format!(
                        "{key} must be a positive number, got {v}"
                    )))
                }
            }
        }
        self.rope(false)?;
        self.rope(true)?;
        Ok(())
    }
}
