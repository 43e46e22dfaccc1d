//! [`ModelConfig`]: the `config.json` of any supported architecture, chosen by `model_type`.

use crate::config::Gpt2Config;
use crate::error::{ModelError, Result};
use crate::llama_config::LlamaConfig;
use std::path::Path;

/// The `model_type`s this crate reads.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "gpt2",
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gemma2",
    "gemma3_text",
    "smollm3",
    "olmo2",
];

/// The Hugging Face config of one of the supported architectures.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// `model_type` "gpt2".
    Gpt2(Gpt2Config),
    /// `model_type` "llama" (Llama 2/3, SmolLM2), "qwen2" (Qwen2, Qwen2.5), "qwen3", "mistral",
    /// "gemma2", "gemma3_text" (Gemma 3), "smollm3" or "olmo2" (OLMo 2).
    Llama(LlamaConfig),
}

impl From<Gpt2Config> for ModelConfig {
    fn from(c: Gpt2Config) -> Self {
        ModelConfig::Gpt2(c)
    }
}

impl From<&Gpt2Config> for ModelConfig {
    fn from(c: &Gpt2Config) -> Self {
        ModelConfig::Gpt2(c.clone())
    }
}

impl From<LlamaConfig> for ModelConfig {
    fn from(c: LlamaConfig) -> Self {
        ModelConfig::Llama(c)
    }
}

impl From<&LlamaConfig> for ModelConfig {
    fn from(c: &LlamaConfig) -> Self {
        ModelConfig::Llama(c.clone())
    }
}

/// A config a model can be built from: [`Gpt2Config`], [`LlamaConfig`] or [`ModelConfig`]
/// (what [`crate::CausalLm::new`] and [`crate::ScalarModel::new`] take).
pub trait ArchConfig {
    /// This config as a [`ModelConfig`].
    fn to_model_config(&self) -> ModelConfig;
}

impl ArchConfig for Gpt2Config {
    fn to_model_config(&self) -> ModelConfig {
        ModelConfig::Gpt2(self.clone())
    }
}

impl ArchConfig for LlamaConfig {
    fn to_model_config(&self) -> ModelConfig {
        ModelConfig::Llama(self.clone())
    }
}

impl ArchConfig for ModelConfig {
    fn to_model_config(&self) -> ModelConfig {
        self.clone()
    }
}

/// Training-mode dropout probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropouts {
    /// On the residual branches.
    pub resid: f64,
    /// On the embeddings.
    pub embd: f64,
    /// On the attention probabilities.
    pub attn: f64,
}

impl ModelConfig {
    /// Parses a `config.json` text, choosing the architecture by `model_type` ("gpt2" when the
    /// key is absent, as in old GPT-2 checkpoints), and validates it.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let ty = match value.get("model_type") {
            None => "gpt2".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("model_type must be a string, got {other}")),
        };
        let cfg = match ty.as_str() {
            "gpt2" => ModelConfig::Gpt2(serde_json::from_value(value).map_err(|e| e.to_string())?),
            "llama" | "qwen2" | "qwen3" | "mistral" | "gemma2" | "gemma3_text" | "smollm3"
            | "olmo2" => {
                let listed = match value.get("eos_token_id") {
                    Some(serde_json::Value::Array(ids)) => ids
                        .iter()
                        .map(|id| {
                            id.as_i64().ok_or_else(|| {
                                format!("eos_token_id lists {id}, which is not a token id")
                            })
                        })
                        .collect::<std::result::Result<Vec<i64>, String>>()?,
                    _ => vec![],
                };
                let mut c: LlamaConfig =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                c.eos_token_ids = listed;
                ModelConfig::Llama(c)
            }
            other => {
                return Err(format!(
                    "model_type {other:?} is not supported; supported: {}",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ))
            }
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// Reads and validates a Hugging Face `config.json` of any supported architecture.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text).map_err(|msg| ModelError::ckpt(path, msg))
    }

    /// The config as pretty JSON (Hugging Face layout).
    pub fn to_json(&self) -> String {
        match self {
            ModelConfig::Gpt2(c) => c.to_json(),
            ModelConfig::Llama(c) if c.eos_token_ids.len() <= 1 && !c.is_gemma() => {
                serde_json::to_string_pretty(c).expect("a LlamaConfig always serializes")
            }
            ModelConfig::Llama(c) => {
                let mut v = serde_json::to_value(c).expect("a LlamaConfig always serializes");
                // A list of EOS ids goes back as the list it was read as.
                if c.eos_token_ids.len() > 1 {
                    v["eos_token_id"] = c.eos_token_ids.clone().into();
                }
                // Gemma names its activation `hidden_activation` (kept in `extra`).
                if c.is_gemma() {
                    if let Some(map) = v.as_object_mut() {
                        map.remove("hidden_act");
                    }
                }
                serde_json::to_string_pretty(&v).expect("JSON serializes")
            }
        }
    }

    /// Checks the invariants of the architecture's config.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::Gpt2(c) => c.validate(),
            ModelConfig::Llama(c) => c.validate(),
        }
    }

    /// The GPT-2 config, if this is GPT-2.
    pub fn as_gpt2(&self) -> Option<&Gpt2Config> {
        match self {
            ModelConfig::Gpt2(c) => Some(c),
            ModelConfig::Llama(_) => None,
        }
    }

    /// The Llama-family config, if this is one.
    pub fn as_llama(&self) -> Option<&LlamaConfig> {
        match self {
            ModelConfig::Llama(c) => Some(c),
            ModelConfig::Gpt2(_) => None,
        }
    }

    /// "gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "smollm3" or
    /// "olmo2".
    pub fn model_type(&self) -> &str {
        match self {
            ModelConfig::Gpt2(c) => &c.model_type,
            ModelConfig::Llama(c) => &c.model_type,
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.vocab_size,
            ModelConfig::Llama(c) => c.vocab_size,
        }
    }

    /// Longest sequence the model takes (`n_positions` / `max_position_embeddings`).
    pub fn n_positions(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.n_positions,
            ModelConfig::Llama(c) => c.context_len(),
        }
    }

    /// Hidden width (`n_embd` / `hidden_size`).
    pub fn hidden_size(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.n_embd,
            ModelConfig::Llama(c) => c.hidden_size,
        }
    }

    /// Number of transformer blocks.
    pub fn n_layer(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.n_layer,
            ModelConfig::Llama(c) => c.num_hidden_layers,
        }
    }

    /// Key/value heads per layer (the KV cache's head count).
    pub fn kv_heads(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.n_head,
            ModelConfig::Llama(c) => c.kv_heads(),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.head_dim(),
            ModelConfig::Llama(c) => c.head_dim(),
        }
    }

    /// Whether the LM head shares the token embedding.
    pub fn tie_word_embeddings(&self) -> bool {
        match self {
            ModelConfig::Gpt2(c) => c.tie_word_embeddings,
            ModelConfig::Llama(c) => c.tie_word_embeddings,
        }
    }

    /// Ties (or unties) the LM head to the token embedding.
    pub fn set_tie_word_embeddings(&mut self, tied: bool) {
        match self {
            ModelConfig::Gpt2(c) => c.tie_word_embeddings = tied,
            ModelConfig::Llama(c) => c.tie_word_embeddings = tied,
        }
    }

    /// Std of the normal initialization.
    pub fn initializer_range(&self) -> f64 {
        match self {
            ModelConfig::Gpt2(c) => c.initializer_range,
            ModelConfig::Llama(c) => c.initializer_range,
        }
    }

    /// Beginning-of-sequence token id.
    pub fn bos_token_id(&self) -> Option<i64> {
        match self {
            ModelConfig::Gpt2(c) => c.bos_token_id,
            ModelConfig::Llama(c) => c.bos_token_id,
        }
    }

    /// End-of-sequence token id (the first, when the config lists several).
    pub fn eos_token_id(&self) -> Option<i64> {
        match self {
            ModelConfig::Gpt2(c) => c.eos_token_id,
            ModelConfig::Llama(c) => c.eos_token_id,
        }
    }

    /// Every end-of-sequence id: the config's list (Llama 3 Instruct's `[128001, 128008,
    /// 128009]`), else `eos_token_id` alone, else none. Generation (`generate`) stops at any;
    /// the training stages end responses with [`ModelConfig::eos_token_id`].
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match self {
            ModelConfig::Llama(c) if !c.eos_token_ids.is_empty() => c.eos_token_ids.clone(),
            _ => self.eos_token_id().into_iter().collect(),
        }
    }

    /// Padding token id, if the config names one.
    pub fn pad_token_id(&self) -> Option<i64> {
        match self {
            ModelConfig::Gpt2(c) => c.pad_token_id,
            ModelConfig::Llama(c) => c.pad_token_id,
        }
    }

    /// The id used to pad: `pad_token_id`, else `eos_token_id`, else the last vocabulary id.
    pub fn pad_id(&self) -> i64 {
        match self {
            ModelConfig::Gpt2(c) => c.pad_id(),
            ModelConfig::Llama(c) => c.pad_id(),
        }
    }

    /// The training-mode dropout probabilities.
    pub fn dropouts(&self) -> Dropouts {
        match self {
            ModelConfig::Gpt2(c) => Dropouts {
                resid: c.resid_pdrop,
                embd: c.embd_pdrop,
                attn: c.attn_pdrop,
            },
            ModelConfig::Llama(c) => Dropouts {
                resid: c.resid_pdrop,
                embd: c.embd_pdrop,
                attn: c.attention_dropout,
            },
        }
    }

    /// The Hugging Face class name of this architecture with an LM head (`lm`) or a one-label
    /// sequence-classification head.
    pub fn hf_architecture(&self, lm: bool) -> &'static str {
        match (self.model_type(), lm) {
            ("qwen2", true) => "Qwen2ForCausalLM",
            ("qwen2", false) => "Qwen2ForSequenceClassification",
            ("llama", true) => "LlamaForCausalLM",
            ("llama", false) => "LlamaForSequenceClassification",
            ("qwen3", true) => "Qwen3ForCausalLM",
            ("qwen3", false) => "Qwen3ForSequenceClassification",
            ("mistral", true) => "MistralForCausalLM",
            ("mistral", false) => "MistralForSequenceClassification",
            ("gemma2", true) => "Gemma2ForCausalLM",
            ("gemma2", false) => "Gemma2ForSequenceClassification",
            ("gemma3_text", true) => "Gemma3ForCausalLM",
            ("gemma3_text", false) => "Gemma3TextForSequenceClassification",
            ("smollm3", true) => "SmolLM3ForCausalLM",
            ("smollm3", false) => "SmolLM3ForSequenceClassification",
            ("olmo2", true) => "Olmo2ForCausalLM",
            ("olmo2", false) => "Olmo2ForSequenceClassification",
            (_, true) => "GPT2LMHeadModel",
            (_, false) => "GPT2ForSequenceClassification",
        }
    }

    /// Sets `architectures` (written into `config.json`).
    pub fn set_architectures(&mut self, names: Vec<String>) {
        match self {
            ModelConfig::Gpt2(c) => c.architectures = Some(names),
            ModelConfig::Llama(c) => c.architectures = Some(names),
        }
    }

    /// Keys of `config.json` the typed config does not model.
    pub fn extra_mut(&mut self) -> &mut serde_json::Map<String, serde_json::Value> {
        match self {
            ModelConfig::Gpt2(c) => &mut c.extra,
            ModelConfig::Llama(c) => &mut c.extra,
        }
    }

    /// Sets `pad_token_id` when the config has none.
    pub fn ensure_pad_token_id(&mut self) {
        let id = self.pad_id();
        match self {
            ModelConfig::Gpt2(c) => c.pad_token_id.get_or_insert(id),
            ModelConfig::Llama(c) => c.pad_token_id.get_or_insert(id),
        };
    }

    /// Name of the body's variable prefix: "transformer" (GPT-2) or "model" (Llama family).
    pub fn body_prefix(&self) -> &'static str {
        match self {
            ModelConfig::Gpt2(_) => "transformer",
            ModelConfig::Llama(_) => "model",
        }
    }
}

/// What a KV cache needs to know of a model: layers, key/value heads, head width.
pub trait KvLayout {
    /// Number of layers.
    fn cache_layers(&self) -> i64;
    /// Key/value heads per layer.
    fn cache_heads(&self) -> i64;
    /// Width of one head.
    fn cache_head_dim(&self) -> i64;
}

impl KvLayout for Gpt2Config {
    fn cache_layers(&self) -> i64 {
        self.n_layer
    }
    fn cache_heads(&self) -> i64 {
        self.n_head
    }
    fn cache_head_dim(&self) -> i64 {
        self.head_dim()
    }
}

impl KvLayout for LlamaConfig {
    fn cache_layers(&self) -> i64 {
        self.num_hidden_layers
    }
    fn cache_heads(&self) -> i64 {
        self.kv_heads()
    }
    fn cache_head_dim(&self) -> i64 {
        self.head_dim()
    }
}

impl KvLayout for ModelConfig {
    fn cache_layers(&self) -> i64 {
        self.n_layer()
    }
    fn cache_heads(&self) -> i64 {
        self.kv_heads()
    }
    fn cache_head_dim(&self) -> i64 {
        self.head_dim()
    }
}
