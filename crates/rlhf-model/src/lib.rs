//! # rlhf-model
//!
//! Transformer language models on LibTorch (through `tch`), as InstructGPT's three stages need
//! them. Two architectures, chosen by `config.json`'s `model_type` ([`ModelConfig`]): GPT-2
//! ([`Gpt2`]) and the Llama family ([`Llama`]: Llama 2/3, Qwen2, Qwen3, Mistral, SmolLM2).
//!
//! - [`CausalLm`]: the language model (Hugging Face `GPT2LMHeadModel` / `LlamaForCausalLM`),
//!   a [`Policy`] with a KV-cache sampler ([`GenerateConfig`]: greedy, temperature, top-k,
//!   top-p, EOS stop, seeded).
//! - [`ScalarModel`]: the body with a scalar head (`GPT2ForSequenceClassification`, one label),
//!   a [`RewardModel`] (one score per sequence, read at the last non-pad token) and a
//!   [`ValueFunction`] (one value per token). Built from an LM checkpoint
//!   ([`ScalarModel::reward_from_lm`]) or a reward checkpoint ([`ScalarModel::value_from_reward`]).
//! - Checkpoint directories in Hugging Face layout ([`checkpoint`]): `config.json`,
//!   `model.safetensors`, `tokenizer.json`, plus our `rlhf.json`; written atomically; a model
//!   saved by `transformers` loads here and ours loads there.
//!
//! Stages use models only through the traits, so downstream crates can bring their own.
//!
//! ```no_run
//! use rlhf_model::{CausalLm, GenerateConfig, Gpt2Config, Policy};
//! use tch::{Device, Kind, Tensor};
//! let lm = CausalLm::new(&Gpt2Config::tiny(), Device::Cpu)?;
//! let prompts = Tensor::randint(8192, [2, 16], (Kind::Int64, Device::Cpu));
//! let mask = Tensor::ones([2, 16], (Kind::Int64, Device::Cpu));
//! let out = lm.generate(&prompts, &mask, &GenerateConfig::greedy(8))?;
//! assert_eq!(out.tokens.size(), [2, 8]);
//! # Ok::<(), rlhf_model::ModelError>(())
//! ```

#![warn(missing_docs)]

pub mod array;
pub mod body;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod error;
pub mod flops;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod llama;
pub mod llama_config;
pub mod lora;
pub mod model;
pub mod model_config;
pub mod ops;
pub mod role;
pub mod tokenizer;
pub mod train;
pub mod traits;
mod weights;

pub use body::Body;
pub use checkpoint::{CheckpointMeta, HeadKind};
pub use config::{Activation, Gpt2Config};
pub use error::{ModelError, Result};
pub use generate::{GenerateConfig, Generation};
pub use gpt2::{Gpt2, KvCache};
pub use llama::Llama;
pub use llama_config::{LlamaConfig, RopeScaling};
pub use lora::AdaptersOff;
pub use lora::LoraConfig;
pub use model::{CausalLm, LoadOptions, ScalarModel};
pub use model_config::{ArchConfig, Dropouts, KvLayout, ModelConfig, SUPPORTED_MODEL_TYPES};
pub use role::{Checkpointable, SaveDir, TrainingSwitches};
pub use tokenizer::Tokenizer;
pub use traits::{Policy, RewardModel, ValueFunction};

/// CUDA device 0 when libtorch sees a GPU, else the CPU.
pub fn default_device() -> tch::Device {
    tch::Device::cuda_if_available()
}

/// Parses "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
pub fn parse_device(s: &str) -> Result<tch::Device> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        "auto" => Ok(default_device()),
        "cuda" | "gpu" => cuda_device(0),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda_device(i),
            _ => Err(ModelError::Input(format!(
                "unknown device {s:?}: use cpu, cuda, cuda:N or auto"
            ))),
        },
    }
}

fn cuda_device(i: usize) -> Result<tch::Device> {
    let n = tch::Cuda::device_count() as usize;
    if i >= n {
        return Err(ModelError::Input(format!(
            "CUDA device {i} requested but libtorch sees {n} CUDA device(s)"
        )));
    }
    Ok(tch::Device::Cuda(i))
}

/// Parses "f32"/"fp32"/"float32" or "bf16"/"bfloat16".
pub fn parse_kind(s: &str) -> Result<tch::Kind> {
    match s {
        "f32" | "fp32" | "float32" => Ok(tch::Kind::Float),
        "bf16" | "bfloat16" => Ok(tch::Kind::BFloat16),
        s => Err(ModelError::Input(format!(
            "unknown dtype {s:?}: use f32 or bf16"
        ))),
    }
}
