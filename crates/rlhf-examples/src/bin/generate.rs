//! Prints a model's continuation of a prompt (only the continuation, on stdout), or answers a
//! file of prompts.
//!
//! `generate --model DIR (--prompt TEXT | --prompts prompts.jsonl [--batch-size B])
//! --max-new-tokens N [--greedy | --temperature T --top-k K --top-p P] [--seed S]
//! [--device auto|cpu|cuda] [--dtype f32|bf16] [--adapter PEFT_DIR] [--no-chat-template]`
//!
//! With `--prompts` (JSONL `{"id", "user_id", "prompt"}`), the prompts are answered in batches
//! and each answer is printed as one JSONL line `{"id", "user_id", "prompt", "response"}`: the
//! demonstration format, so the output can be read, compared, ranked or trained on (an answer
//! that is EOS at once prints an empty `response`, which `sft` refuses). Batch `i`
//! samples with the seed mixed with `i`: the same file, batch size and seed give the same
//! answers.

use anyhow::{bail, Context};
use clap::Parser;
use rlhf_data::records::{Demonstration, PromptRecord};
use rlhf_examples::data::read_records;
use rlhf_examples::run::Progress;
use rlhf_examples::stage::{
    chat_template_with_kwargs, load_lm, turn_end_id, unknown_tokens, warn_unknown,
};
use rlhf_model::{parse_device, parse_kind, GenerateConfig, LoadOptions, Policy};
use std::io::Write;

#[derive(Parser, Debug)]
#[command(
    about = "Generate a continuation of a prompt with a checkpoint (Hugging Face layout: GPT-2 or the Llama family)"
)]
struct Args {
    /// Checkpoint directory (config.json, model.safetensors or a sharded checkpoint's
    /// model.safetensors.index.json and shards, tokenizer.json).
    #[arg(long)]
    model: std::path::PathBuf,
    /// The prompt text.
    #[arg(long, required_unless_present = "prompts", conflicts_with = "prompts")]
    prompt: Option<String>,
    /// Prompts, JSONL {"id", "user_id", "prompt"}: print one JSONL line {"id", "user_id",
    /// "prompt", "response"} per prompt, in the file's order.
    #[arg(long)]
    prompts: Option<std::path::PathBuf>,
    /// With --prompts: prompts answered together (one left-padded batch).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
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
    /// A variable for the chat template (KEY=VALUE, repeatable; the value is JSON when it
    /// parses, else a string), as `transformers`' `apply_chat_template(..., KEY=VALUE)`:
    /// `enable_thinking=false` turns Qwen3's and SmolLM3's reasoning off.
    #[arg(long = "chat-template-kwarg", value_name = "KEY=VALUE")]
    chat_template_kwargs: Vec<String>,
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
    let template =
        chat_template_with_kwargs(tok, !args.no_chat_template, &args.chat_template_kwargs)?;
    let prefix = rlhf_data::collate::prompt_prefix(tok.inner());
    let encode = |text: &str| -> anyhow::Result<Vec<i64>> {
        Ok(match &template {
            Some(t) => tok.encode(&t.render_prompt(text)?)?,
            // The tokenizer's BOS first, as `transformers`' `tokenizer(text)` (Llama, Gemma).
            None => [
                prefix.iter().map(|&i| i64::from(i)).collect(),
                tok.encode(text)?,
            ]
            .concat(),
        })
    };
    let n_positions = lm.config().n_positions();
    let eos = lm
        .config()
        .eos_token_id()
        .or_else(|| tok.token_id(rlhf_model::tokenizer::ENDOFTEXT));
    let pad = lm.config().pad_id();
    let cfg = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        do_sample: !args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        eos_token_id: eos,
        // Every EOS id of config.json (Llama 3 Instruct lists three) and generation_config.json
        // (Qwen2.5 Instruct lists two) stops a row, and with a chat template its end of turn
        // (Gemma's <end_of_turn>) and the tokenizer's eos_token too.
        stop_token_ids: lm
            .eos_token_ids()
            .into_iter()
            .chain(template.as_ref().and_then(|t| turn_end_id(tok, t)))
            .chain(tok.eos_token_id().filter(|_| template.is_some()))
            .collect(),
        pad_token_id: pad,
        seed: Some(args.seed),
    };
    // The answers to `rows` (token ids), decoded, EOS (and the other stop ids) and padding
    // dropped.
    let answer = |rows: &[&[i64]], seed: u64| -> anyhow::Result<Vec<String>> {
        let (ids, mask) = rlhf_ppo::data::left_pad(rows, pad)?;
        let (ids, mask) = (ids.to_device(device), mask.to_device(device));
        let cfg = GenerateConfig {
            seed: Some(seed),
            ..cfg.clone()
        };
        let out = lm.generate(&ids, &mask, &cfg)?;
        let tokens = out.tokens.to_device(tch::Device::Cpu);
        let real = out.mask.to_device(tch::Device::Cpu);
        (0..rows.len() as i64)
            .map(|r| {
                let toks = Vec::<i64>::try_from(tokens.get(r))?;
                let keep = Vec::<f32>::try_from(real.get(r))?;
                let toks: Vec<i64> = (toks.into_iter().zip(keep))
                    .filter(|&(t, k)| k > 0.0 && Some(t) != eos && !cfg.stop_token_ids.contains(&t))
                    .map(|(t, _)| t)
                    .collect();
                Ok(tok.decode(&toks, true)?)
            })
            .collect()
    };
    let count_unknown = |seqs: &[&[i64]]| unknown_tokens(tok, seqs.iter().copied());
    // Room for the answer in the model's context, checked before any work (the model refuses
    // a longer sequence only once it gets there). `what` names the prompt.
    let check_room = |len: usize, what: &str| -> anyhow::Result<()> {
        if len == 0 {
            bail!("{what} is empty after tokenization");
        }
        if len as i64 >= n_positions {
            bail!(
                "{what} is {len} tokens long but the model's context (n_positions) is \
                 {n_positions}: shorten it to leave room for the answer"
            );
        }
        let room = n_positions - len as i64;
        if args.max_new_tokens > room {
            bail!(
                "--max-new-tokens is {}, but {what} is {len} tokens long and the model's \
                 context (n_positions) is {n_positions}: use --max-new-tokens {room} or less",
                args.max_new_tokens
            );
        }
        Ok(())
    };
    let Some(path) = &args.prompts else {
        let ids = encode(
            args.prompt
                .as_deref()
                .expect("clap requires --prompt or --prompts"),
        )?;
        warn_unknown("generate", "the prompt", count_unknown(&[&ids[..]]));
        check_room(ids.len(), "the prompt")?;
        println!("{}", answer(&[&ids[..]], args.seed)?[0]);
        return Ok(());
    };
    if args.batch_size == 0 {
        bail!("--batch-size is 0: expected at least 1");
    }
    let records: Vec<PromptRecord> = read_records(path, false)?;
    if records.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    let mut rows = Vec::with_capacity(records.len());
    for r in &records {
        let what = format!("prompt {:?} of {}", r.id, path.display());
        let ids = encode(&r.prompt).with_context(|| what.clone())?;
        check_room(ids.len(), &what)?;
        rows.push(ids);
    }
    let refs: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
    let what = format!("the prompts of {}", path.display());
    warn_unknown("generate", &what, count_unknown(&refs));
    let mut progress = Progress::new("generate", records.len() as u64);
    let mut stdout = std::io::stdout().lock();
    for (i, (batch, recs)) in refs
        .chunks(args.batch_size)
        .zip(records.chunks(args.batch_size))
        .enumerate()
    {
        let seed = rlhf_data::seed::mix2(args.seed, i as u64);
        for (r, response) in recs.iter().zip(answer(batch, seed)?) {
            let line = Demonstration {
                id: r.id.clone(),
                user_id: r.user_id.clone(),
                prompt: r.prompt.clone(),
                response,
            };
            writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
        }
        stdout.flush()?;
        let done = (i * args.batch_size + batch.len()) as u64;
        progress.update(done, "prompts answered");
    }
    Ok(())
}
