//! Prints a model's continuation of a prompt (only the continuation, on stdout).
//!
//! `generate --model DIR --prompt TEXT --max-new-tokens N [--greedy | --temperature T --top-k K
//! --top-p P] [--seed S] [--device auto|cpu|cuda] [--dtype f32|bf16] [--adapter PEFT_DIR]
//! [--no-chat-template]`

use anyhow::{bail, Context};
use clap::Parser;
use rlhf_examples::stage::{chat_template, load_lm, warn_unknown};
use rlhf_model::{parse_device, parse_kind, GenerateConfig, LoadOptions, Policy};
use tch::Tensor;

#[derive(Parser, Debug)]
#[command(
    about = "Generate a continuation of a prompt with a checkpoint (Hugging Face layout: GPT-2 or the Llama family)"
)]
struct Args {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: std::path::PathBuf,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: i64,
    /// Greedy decoding (argmax); ignores temperature, top-k and top-p.
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    greedy: bool,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Sample among the k most likely tokens only.
    #[arg(long)]
    top_k: Option<i64>,
    /// Nucleus sampling: the smallest set of tokens with this much probability.
    #[arg(long)]
    top_p: Option<f64>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// A LoRA adapter directory in PEFT's layout (`adapter_config.json`,
    /// `adapter_model.safetensors`) to apply to --model.
    #[arg(long)]
    adapter: Option<std::path::PathBuf>,
    /// Encode the prompt as it is, even when the checkpoint has a chat template (by default it
    /// is rendered through the template as one user message).
    #[arg(long)]
    no_chat_template: bool,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    if args.max_new_tokens < 1 {
        bail!(
            "--max-new-tokens is {}: expected at least 1",
            args.max_new_tokens
        );
    }
    if !args.greedy {
        if !(args.temperature > 0.0 && args.temperature.is_finite()) {
            bail!(
                "--temperature is {}: expected a positive number (or --greedy)",
                args.temperature
            );
        }
        if let Some(k) = args.top_k.filter(|&k| k < 1) {
            bail!("--top-k is {k}: expected at least 1");
        }
        if let Some(p) = args.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            bail!("--top-p is {p}: expected a probability in (0, 1]");
        }
    }
    let device = parse_device(&args.device)?;
    let kind = parse_kind(&args.dtype)?;
    let mut lm = load_lm(&args.model, LoadOptions { device, kind }, "--model")?;
    if let Some(dir) = &args.adapter {
        lm.load_adapter(dir)
            .with_context(|| format!("--adapter {}", dir.display()))?;
    }
    let Some(tok) = lm.tokenizer() else {
        bail!(
            "{} has no tokenizer.json: generate needs one to read the prompt",
            args.model.display()
        );
    };
    let ids = match chat_template(tok, !args.no_chat_template)? {
        Some(t) => tok.encode(&t.render_prompt(&args.prompt)?)?,
        None => tok.encode(&args.prompt)?,
    };
    if ids.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    let unknown = rlhf_data::collate::unknown_token(tok.inner());
    let unknown =
        unknown.map(|(t, id)| rlhf_data::collate::UnknownTokens::count(&t, id, [&ids[..]]));
    warn_unknown("generate", "the prompt", unknown);
    let n_positions = lm.config().n_positions();
    if ids.len() as i64 >= n_positions {
        bail!(
            "the prompt is {} tokens long but the model's context (n_positions) is {n_positions}: \
             shorten it to leave room for the answer",
            ids.len()
        );
    }
    // Checked before any work: the model refuses a longer sequence only once it gets there.
    let room = n_positions - ids.len() as i64;
    if args.max_new_tokens > room {
        bail!(
            "--max-new-tokens is {}, but the prompt is {} tokens long and the model's context \
             (n_positions) is {n_positions}: use --max-new-tokens {room} or less",
            args.max_new_tokens,
            ids.len()
        );
    }
    let eos = lm
        .config()
        .eos_token_id()
        .or_else(|| tok.token_id(rlhf_model::tokenizer::ENDOFTEXT));
    let cfg = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        do_sample: !args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        eos_token_id: eos,
        pad_token_id: lm.config().pad_id(),
        seed: Some(args.seed),
    };
    let prompt = Tensor::from_slice(&ids).unsqueeze(0).to_device(device);
    let out = lm.generate(&prompt, &prompt.ones_like(), &cfg)?;
    let n_real = out.mask.sum(tch::Kind::Float).double_value(&[]) as usize;
    let toks = Vec::<i64>::try_from(out.tokens.get(0).to_device(tch::Device::Cpu))?;
    let toks: Vec<i64> = toks
        .into_iter()
        .take(n_real)
        .filter(|&t| Some(t) != eos)
        .collect();
    println!("{}", tok.decode(&toks, true)?);
    Ok(())
}
