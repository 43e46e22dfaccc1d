//! The Hugging Face GPT-2 `config.json`, read and written with the same field names.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Activation of the MLP, as named by Hugging Face's `activation_function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`): GPT-2's.
    GeluTanh,
    /// Exact (erf) GELU (`gelu`).
    Gelu,
    /// ReLU (`relu`).
    Relu,
}

impl Activation {
    /// Parses a Hugging Face `activation_function` name.
    pub fn from_hf(name: &str) -> Result<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::Gelu),
            "relu" => Ok(Activation::Relu),
            other => Err(ModelError::Config(format!(
                "activation_function {other:?} is not supported; use one of gelu_new, \
                 gelu_pytorch_tanh, gelu_fast, gelu, relu"
            ))),
        }
    }
}

/// GPT-2 hyper-parameters, field for field the Hugging Face `GPT2Config` (`config.json`).
///
/// Defaults are Hugging Face's (the 124M "gpt2" model). Keys this struct does not know are kept
/// in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// Vocabulary size (default 50257).
    pub vocab_size: i64,
    /// Maximum sequence length: rows of the position embedding (default 1024).
    pub n_positions: i64,
    /// Hidden width (default 768).
    pub n_embd: i64,
    /// Number of transformer blocks (default 12).
    pub n_layer: i64,
    /// Attention heads per block; must divide `n_embd` (default 12).
    pub n_head: i64,
    /// MLP inner width; `None` means 4 * n_embd (default None).
    pub n_inner: Option<i64>,
    /// MLP activation (default "gelu_new", the tanh approximation).
    pub activation_function: String,
    /// Dropout on the residual branches (attention and MLP outputs) (default 0.1).
    pub resid_pdrop: f64,
    /// Dropout on the sum of token and position embeddings (default 0.1).
    pub embd_pdrop: f64,
    /// Dropout on the attention probabilities (default 0.1).
    pub attn_pdrop: f64,
    /// LayerNorm epsilon (default 1e-5).
    pub layer_norm_epsilon: f64,
    /// Std of the normal initialization (default 0.02).
    pub initializer_range: f64,
    /// Scale attention scores by 1/sqrt(head_dim) (default true).
    pub scale_attn_weights: bool,
    /// The LM head shares the token embedding matrix (default true).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id (default 50256).
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token id (default 50256).
    pub eos_token_id: Option<i64>,
    /// Padding token id; GPT-2 has none, so `None` means "use eos" (default None).
    pub pad_token_id: Option<i64>,
    /// Always "gpt2".
    pub model_type: String,
    /// Hugging Face class names, e.g. ["GPT2LMHeadModel"] (default None).
    pub architectures: Option<Vec<String>>,
    /// Keys this struct does not model, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: "gelu_new".into(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            tie_word_embeddings: true,
            bos_token_id: Some(50256),
            eos_token_id: Some(50256),
            pad_token_id: None,
            model_type: "gpt2".into(),
            architectures: None,
            extra: Default::default(),
        }
    }
}

impl Gpt2Config {
    /// A config of the given size with GPT-2's other defaults.
    pub fn sized(
        n_layer: i64,
        n_head: i64,
        n_embd: i64,
        vocab_size: i64,
        n_positions: i64,
    ) -> Self {
        Gpt2Config {
            n_layer,
            n_head,
            n_embd,
            vocab_size,
            n_positions,
            bos_token_id: Some(vocab_size - 1),
            eos_token_id: Some(vocab_size - 1),
            ..Default::default()
        }
    }

    /// The `tiny` size of benches/WORKLOAD.md: 4 layers, 4 heads, 256 wide, vocab 8192, context 256.
    pub fn tiny() -> Self {
        Self::sized(4, 4, 256, 8192, 256)
    }

    /// GPT-2 small (124M): 12 layers, 12 heads, 768 wide, vocab 50257, context 1024.
    pub fn gpt2_small() -> Self {
        Self::sized(12, 12, 768, 50257, 1024)
    }

    /// Sets all three dropout probabilities.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.resid_pdrop = p;
        self.embd_pdrop = p;
        self.attn_pdrop = p;
        self
    }

    /// MLP inner width.
    pub fn inner_dim(&self) -> i64 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }

    /// The parsed activation.
    pub fn activation(&self) -> Result<Activation> {
        Activation::from_hf(&self.activation_function)
    }

    /// The id used to pad: `pad_token_id`, else `eos_token_id`, else the last vocabulary id.
    pub fn pad_id(&self) -> i64 {
        self.pad_token_id
            .or(self.eos_token_id)
            .unwrap_or(self.vocab_size - 1)
    }

    /// Checks the invariants the model relies on, with a message saying what to change.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: i64| {
            if v <= 0 {
                Err(ModelError::Config(format!(
                    "{name} must be positive, got {v}"
                )))
            } else {
                Ok(())
            }
        };
        pos("vocab_size", self.vocab_size)?;
        pos("n_positions", self.n_positions)?;
        pos("n_embd", self.n_embd)?;
        pos("n_layer", self.n_layer)?;
        pos("n_head", self.n_head)?;
        pos("n_inner", self.inner_dim())?;
        if self.n_embd % self.n_head != 0 {
            return Err(ModelError::Config(format!(
                "n_embd ({}) must be divisible by n_head ({})",
                self.n_embd, self.n_head
            )));
        }
        check_dropouts(&[
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ])?;
        if self.layer_norm_epsilon <= 0.0 {
            return Err(ModelError::Config(
                "layer_norm_epsilon must be positive".into(),
            ));
        }
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if let Some(id) = id {
                if id < 0 || id >= self.vocab_size {
                    return Err(ModelError::Config(format!(
                        "{name} {id} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    )));
                }
            }
        }
        if self.model_type != "gpt2" {
            return Err(ModelError::Config(format!(
                "model_type is {:?}, not \"gpt2\": read it as a ModelConfig (supported: {})",
                self.model_type,
                crate::model_config::SUPPORTED_MODEL_TYPES.join(", ")
            )));
        }
        self.activation()?;
        Ok(())
    }

    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let cfg: Gpt2Config = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        cfg.validate()
            .map_err(|e| ModelError::ckpt(path, e.to_string()))?;
        Ok(cfg)
    }

    /// The config as pretty JSON (Hugging Face layout).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Gpt2Config always serializes")
    }
}

/// Checks that every named dropout probability is in `[0, 1)` (shared by the config types).
pub(crate) fn check_dropouts(named: &[(&str, f64)]) -> Result<()> {
    for &(name, p) in named {
        if !(0.0..1.0).contains(&p) {
            return Err(ModelError::Config(format!(
                "{name} must be in [0, 1), got {p}"
            )));
        }
    }
    Ok(())
}
