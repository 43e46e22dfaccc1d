//! The SFT trainer's settings ([`SftConfig`]) and its residual-dropout option.

use crate::trainer::{Result, SftError};
use rlhf_model::train::AdamWConfig;
use serde::{Deserialize, Serialize};

/// Trainer settings. Defaults suit the small models of the toy world; the paper's values are
/// noted where they differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Passes over the training data (paper: 16; validation loss overfits after one epoch
    /// while the RM score keeps improving). Default 16.
    pub epochs: usize,
    /// Sequences per micro-batch. Default 8.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation). Default 1.
    pub grad_accum_steps: usize,
    /// AdamW; default lr 1e-4 (paper: 9.65e-6 for 1.3B/6B models, cosine decay), betas
    /// (0.9, 0.95), weight decay 0.0 (never on biases and norms; embeddings only if asked).
    pub optimizer: AdamWConfig,
    /// Linear warmup steps before the cosine decay. Default 10.
    pub warmup_steps: u64,
    /// Final learning rate as a fraction of the peak (paper: cosine to 10%). Default 0.1.
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this; `None` disables (`"off"` in TOML). Default 1.0.
    #[serde(with = "off_or_f64")]
    pub max_grad_norm: Option<f64>,
    /// Residual dropout during training. Default [`ResidualDropout::Auto`]: the paper's 0.2 on
    /// GPT-2, none on the Llama family.
    pub residual_dropout: ResidualDropout,
    /// Longest prompt in tokens (truncated from the left). Default 128.
    pub max_prompt_tokens: usize,
    /// Longest response in tokens, EOS included (truncated from the right). Default 128.
    pub max_response_tokens: usize,
    /// Seed of shuffling and dropout. Default 0.
    pub seed: u64,
    /// Compute in bf16 from f32 master weights. Default false.
    pub bf16_autocast: bool,
    /// Sequences per batch when computing the validation loss. Default 32.
    pub eval_batch_size: usize,
    /// Also save a resumable state every this many optimizer steps (besides each epoch's end).
    /// Default None.
    pub save_every_steps: Option<u64>,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            epochs: 16,
            batch_size: 8,
            grad_accum_steps: 1,
            optimizer: AdamWConfig {
                lr: 1e-4,
                ..Default::default()
            },
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            max_grad_norm: Some(1.0),
            residual_dropout: ResidualDropout::Auto,
            max_prompt_tokens: 128,
            max_response_tokens: 128,
            seed: 0,
            bf16_autocast: false,
            eval_batch_size: 32,
            save_every_steps: None,
        }
    }
}

impl SftConfig {
    /// Checks the settings, naming the key to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SftError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch_size and eval_batch_size must be at least 1".into());
        }
        if self.grad_accum_steps == 0 {
            return bad("grad_accum_steps must be at least 1".into());
        }
        if let ResidualDropout::Rate(p) = self.residual_dropout {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("residual_dropout must be in [0, 1), got {p}"));
            }
        }
        if let Some(n) = self.max_grad_norm {
            if n <= 0.0 {
                return bad(format!("max_grad_norm must be positive, got {n}"));
            }
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio must be in [0, 1], got {}",
                self.min_lr_ratio
            ));
        }
        if self.max_prompt_tokens == 0 || self.max_response_tokens == 0 {
            return bad("max_prompt_tokens and max_response_tokens must be positive".into());
        }
        self.optimizer
            .validate()
            .map_err(|e| SftError::Config(format!("optimizer: {e}")))
    }
}

/// Residual dropout while training (`residual_dropout` in TOML: `"auto"`, `"off"` or a rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResidualDropout {
    /// The paper's 0.2 for GPT-2 checkpoints (pretrained with dropout); none for the Llama
    /// family, which is pretrained without it: there residual dropout 0.2 wrecks a pretrained
    /// model (measured on SmolLM2-135M-Instruct: SFT training loss 12.3 instead of 3.8 on the
    /// first batch). `"auto"` in TOML.
    Auto,
    /// Keep the checkpoint's own rates. `"off"` in TOML.
    Off,
    /// This rate on every architecture.
    Rate(f64),
}

impl ResidualDropout {
    /// The rate to set on a model (pretrained with dropout or not; see
    /// [`rlhf_model::TrainingSwitches::pretrained_with_dropout`]), or `None` to keep its own.
    pub fn rate_for(&self, pretrained_with_dropout: bool) -> Option<f64> {
        match *self {
            ResidualDropout::Auto => pretrained_with_dropout.then_some(0.2),
            ResidualDropout::Off => None,
            ResidualDropout::Rate(p) => Some(p),
        }
    }
}

impl Serialize for ResidualDropout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ResidualDropout::Auto => s.serialize_str("auto"),
            ResidualDropout::Off => s.serialize_str("off"),
            ResidualDropout::Rate(p) => s.serialize_f64(*p),
        }
    }
}

impl<'de> Deserialize<'de> for ResidualDropout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(x) => Ok(ResidualDropout::Rate(x)),
            Raw::Int(x) => Ok(ResidualDropout::Rate(x as f64)),
            Raw::Text(t) if t == "auto" => Ok(ResidualDropout::Auto),
            Raw::Text(t) if t == "off" || t == "none" => Ok(ResidualDropout::Off),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected a rate, \"auto\" or \"off\", got {t:?}"
            ))),
        }
    }
}

/// Serde for an `Option<f64>` whose default is `Some`: `None` is written and read as the string
/// `"off"` (TOML has no null, and a missing key means the default), so a config survives a
/// write/read round trip and a file can switch the option off.
mod off_or_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => s.serialize_f64(*x),
            None => s.serialize_str("off"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Int(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Num(x) => Ok(Some(x)),
            Raw::Int(x) => Ok(Some(x as f64)),
            Raw::Text(t) if t == "off" || t == "none" => Ok(None),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected a number or \"off\", got {t:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ResidualDropout;

    #[test]
    fn residual_dropout_auto_is_the_papers_on_gpt2_and_none_on_llama() {
        // GPT-2 is pretrained with dropout, the Llama family without.
        assert_eq!(ResidualDropout::Auto.rate_for(true), Some(0.2));
        assert_eq!(ResidualDropout::Auto.rate_for(false), None);
        assert_eq!(ResidualDropout::Off.rate_for(true), None);
        assert_eq!(ResidualDropout::Rate(0.1).rate_for(false), Some(0.1));
        for (v, text) in [
            (ResidualDropout::Auto, "\"auto\""),
            (ResidualDropout::Off, "\"off\""),
            (ResidualDropout::Rate(0.25), "0.25"),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), text);
            assert_eq!(serde_json::from_str::<ResidualDropout>(text).unwrap(), v);
        }
        assert_eq!(
            serde_json::from_str::<ResidualDropout>("0").unwrap(),
            ResidualDropout::Rate(0.0)
        );
        let err = serde_json::from_str::<ResidualDropout>("\"half\"").unwrap_err();
        assert!(err.to_string().contains("\"auto\""), "{err}");
    }
}
