//! Writes a randomly initialized GPT-2 checkpoint (HF layout) with a byte-level tokenizer.
//!
//! `init-model --out DIR [--size byte-tiny|tiny|gpt2-small] [--seed S]`

use clap::Parser;
use rlhf_model::{CausalLm, Gpt2Config, Policy, Tokenizer};

#[derive(Parser, Debug)]
#[command(
    about = "Write a random-init GPT-2 checkpoint (config.json, model.safetensors, tokenizer.json)"
)]
struct Args {
    /// Output checkpoint directory (an earlier checkpoint there is replaced atomically; a
    /// folder holding other files is refused).
    #[arg(long)]
    out: std::path::PathBuf,
    /// byte-tiny (the tiny shape over the 257-token byte-level vocabulary), tiny or gpt2-small.
    #[arg(long, default_value = "byte-tiny")]
    size: String,
    /// Seed of the initialization.
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    let tok = Tokenizer::byte_level();
    let eos = tok
        .token_id(rlhf_model::tokenizer::ENDOFTEXT)
        .expect("byte-level has EOS");
    let cfg = match args.size.as_str() {
        "byte-tiny" => Gpt2Config {
            vocab_size: tok.vocab_size() as i64,
            bos_token_id: Some(eos),
            eos_token_id: Some(eos),
            ..Gpt2Config::tiny()
        },
        other => rlhf_examples::workload_config(other)?,
    };
    tch::manual_seed(args.seed);
    let mut lm = CausalLm::new(&cfg, tch::Device::Cpu)?;
    if tok.vocab_size() as i64 <= cfg.vocab_size {
        lm.set_tokenizer(tok)?;
    }
    lm.save(&args.out)?;
    tracing::info!(
        "wrote a random {} model ({} parameters) to {}",
        args.size,
        lm.var_store()
            .variables()
            .values()
            .map(|t| t.numel())
            .sum::<usize>(),
        args.out.display()
    );
    Ok(())
}
