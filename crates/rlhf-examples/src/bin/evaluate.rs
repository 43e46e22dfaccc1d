//! Win rate of one checkpoint against another on a prompt file.
//!
//! `evaluate --a DIR --b DIR --prompts prompts.jsonl [--reward RM_DIR] [--max-prompts N]
//! [--max-new-tokens N] [--seed S] [--answers FILE] [--device auto|cpu|cuda]`
//!
//! Both models answer each prompt greedily. The judge is a reward model (`--reward`: the higher
//! score wins; it scores prompt + answer as the stages feed it: the prompt's last tokens, and
//! an EOS after an answer that ended, none after one cut at `--max-new-tokens`) or, for
//! toy-world prompts, simulated labelers calibrated on the toy world's reference answers
//! (perfect, corrupted and junk); identical answers are ties and count half. Prints one JSON
//! object; `--answers FILE` also writes every prompt's two answers (and rewards) as JSONL.
//!
//! `evaluate --run RUN_DIR --a DIR [--b DIR] [--answers FILE]` judges A as a finished pipeline
//! run's table does: the run's held-out labelers, its held-out users' prompts (`eval_prompts`
//! of them), answers sampled at temperature 1 with the run's sampler seed (`eval_greedy` as
//! configured), against the run's SFT model (or `--b`); it prints the table's row for A (win
//! rate, gold, gold of greedy answers, KL to B, pretraining loss, correctness and conduct), and
//! `--answers` writes the answers of A and B that were judged. A checkpoint of the run
//! gets the number of the run's `report.json`; any other checkpoint with the run's tokenizer
//! (an intermediate PPO checkpoint, a policy trained outside the pipeline) gets a number on
//! the same footing. The default judgement above differs from the table's (greedy answers,
//! labelers calibrated on other comparisons), so compare its numbers only with each other.

use anyhow::Context;
use clap::Parser;
use rlhf_data::collate::TokenizedPair;
use rlhf_data::records::PromptRecord;
use rlhf_examples::data::read_records;
use rlhf_examples::pipeline::{
    evaluate_models, labeler_stage, prepare_data_on, PipelineConfig, PipelineReport,
};
use rlhf_examples::stage::{check_same_vocab, collator, load_lm, load_reward};
use rlhf_model::parse_device;
use rlhf_model::CausalLm;
use rlhf_reward::trainer::score_demonstrations;
use rlhf_toy::eval::{answers, mean_gold, win_rate};
use rlhf_toy::{LabelerConfig, LabelerPool, ToyPrompt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Rows per forward pass when `--reward` scores the answers.
const SCORE_BATCH: usize = 16;

#[derive(Parser, Debug)]
#[command(
    about = "Win rate of checkpoint A against checkpoint B (simulated labelers or a reward model)"
)]
struct Args {
    /// Checkpoint A (an LM).
    #[arg(long)]
    a: PathBuf,
    /// Checkpoint B (an LM; the baseline, e.g. the SFT model). Default with --run: the run's
    /// SFT model.
    #[arg(long, required_unless_present = "run")]
    b: Option<PathBuf>,
    /// Prompts, JSONL {"id", "user_id", "prompt"} (not with --run: it uses the run's).
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    prompts: Option<PathBuf>,
    /// A finished pipeline run: judge A as its table does (its held-out labelers, prompts,
    /// sampling and seeds; see the binary's docs).
    #[arg(long, conflicts_with_all = ["reward", "max_prompts", "max_new_tokens", "seed", "no_chat_template", "chat_template_kwargs"])]
    run: Option<PathBuf>,
    /// Judge with this reward model instead of the simulated labelers.
    #[arg(long)]
    reward: Option<PathBuf>,
    /// Use at most this many prompts.
    #[arg(long, default_value_t = 200)]
    max_prompts: usize,
    /// Tokens per answer.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: i64,
    /// Seed of the labelers' noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Encode prompts as they are, even when --a has a chat template.
    #[arg(long)]
    no_chat_template: bool,
    /// A variable for the chat template (KEY=VALUE, repeatable; e.g. enable_thinking=false),
    /// as the stages take it.
    #[arg(long = "chat-template-kwarg", value_name = "KEY=VALUE")]
    chat_template_kwargs: Vec<String>,
    /// Also write each prompt's answers as JSONL: {"id", "prompt", "a", "b"}, with
    /// "reward_a" and "reward_b" under --reward.
    #[arg(long)]
    answers: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    if args.max_prompts == 0 {
        anyhow::bail!("--max-prompts is 0: expected at least 1");
    }
    if args.max_new_tokens < 1 {
        anyhow::bail!(
            "--max-new-tokens is {}: expected at least 1",
            args.max_new_tokens
        );
    }
    if let Some(path) = args.answers.as_ref().filter(|p| p.is_dir()) {
        anyhow::bail!(
            "--answers {} is a folder: expected a file name",
            path.display()
        );
    }
    let device = parse_device(&args.device)?;
    if let Some(run) = &args.run {
        return evaluate_as_run(
            run,
            &args.a,
            args.b.as_deref(),
            args.answers.as_deref(),
            device,
        );
    }
    let (Some(b_dir), Some(prompts_path)) = (&args.b, &args.prompts) else {
        anyhow::bail!("--b and --prompts are required without --run");
    };
    let a = load_lm(&args.a, device, "--a")?;
    let b = load_lm(b_dir, device, "--b")?;
    let rm = args
        .reward
        .as_ref()
        .map(|p| load_reward(p, device, "--reward"))
        .transpose()?;
    if let Some(rm) = &rm {
        check_same_vocab(&a, rm, "--reward")?;
    }
    // Prompts keep their last tokens so that prompt, answer and EOS fit every model's context.
    let n_ctx = [
        Some(a.config()),
        Some(b.config()),
        rm.as_ref().map(|m| m.config()),
    ]
    .into_iter()
    .flatten()
    .map(|c| c.n_positions())
    .min()
    .unwrap_or(0);
    let max_prompt = (n_ctx - args.max_new_tokens - 1).min(128);
    if max_prompt < 1 {
        anyhow::bail!(
            "--max-new-tokens {} leaves no room for the prompt in the models' context \
             (n_positions {n_ctx}): lower it",
            args.max_new_tokens
        );
    }
    let prompts: Vec<PromptRecord> = read_records(prompts_path, false)?;
    let prompts = &prompts[..prompts.len().min(args.max_prompts)];
    let chat = !args.no_chat_template;
    let col = collator(
        &a,
        max_prompt as usize,
        args.max_new_tokens as usize,
        chat,
        &args.chat_template_kwargs,
    )?;
    let tok_b = b
        .tokenizer()
        .context("--b has no tokenizer.json: evaluate needs one to read its answers")?;
    if col.tokenizer().get_vocab(true) != tok_b.inner().get_vocab(true) {
        anyhow::bail!("--a and --b use different tokenizers: compare models that share one");
    }
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| col.encode_prompt(&p.prompt))
        .collect::<Result<_, _>>()?;
    // Progress: with a real model each phase takes minutes on a CPU.
    let timed = |what: &str, m: &CausalLm| -> anyhow::Result<Vec<String>> {
        let start = std::time::Instant::now();
        tracing::info!(
            "{what}: greedy answers to {} prompts, at most {} tokens each",
            ids.len(),
            args.max_new_tokens
        );
        let out = answers(m, &ids, &col, args.max_new_tokens, None, 64)?;
        tracing::info!("{what}: done in {:.1} s", start.elapsed().as_secs_f64());
        Ok(out)
    };
    let ans_a = timed("--a", &a)?;
    let ans_b = timed("--b", &b)?;
    let mut scores: Option<(Vec<f64>, Vec<f64>)> = None;
    let result = match &rm {
        Some(rm) => {
            // Prompt + answer + EOS, truncated as the models were fed (the collator's limits),
            // scored `SCORE_BATCH` rows per forward pass, with the checkpoint's normalization.
            let score = |ans: &[String]| -> anyhow::Result<Vec<f64>> {
                let rows: Vec<TokenizedPair> = prompts
                    .iter()
                    .zip(ans)
                    .map(|(p, r)| -> anyhow::Result<TokenizedPair> {
                        Ok(TokenizedPair {
                            prompt: col.encode_prompt(&p.prompt)?,
                            response: col.encode(r)?,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let raw = score_demonstrations(rm, &rows, col.config(), SCORE_BATCH)?;
                let meta = rm.meta();
                Ok(raw
                    .into_iter()
                    .map(|s| s * meta.reward_gain + meta.reward_bias)
                    .collect())
            };
            let start = std::time::Instant::now();
            tracing::info!("--reward: scoring {} answers", 2 * prompts.len());
            let (sa, sb) = (score(&ans_a)?, score(&ans_b)?);
            tracing::info!("--reward: done in {:.1} s", start.elapsed().as_secs_f64());
            let wins: f64 = sa
                .iter()
                .zip(&sb)
                .zip(ans_a.iter().zip(&ans_b))
                .map(|((x, y), (p, q))| {
                    if p == q || x == y {
                        0.5
                    } else if x > y {
                        1.0
                    } else {
                        0.0
                    }
                })
                .sum();
            let result = json!({"judge": "reward_model", "win_rate_a_vs_b": wins / prompts.len() as f64,
                   "mean_reward_a": sa.iter().sum::<f64>() / sa.len() as f64,
                   "mean_reward_b": sb.iter().sum::<f64>() / sb.len() as f64, "prompts": prompts.len()});
            scores = Some((sa, sb));
            result
        }
        None => {
            let tasks: Vec<ToyPrompt> = prompts
                .iter()
                .map(|p| ToyPrompt::parse(&p.prompt).with_context(|| format!(
                    "prompt {} is not a toy-world prompt: the simulated labelers cannot judge it; pass --reward RM_DIR", p.id)))
                .collect::<anyhow::Result<_>>()?;
            let pool = LabelerPool::calibrated(&LabelerConfig::default(), args.seed)?;
            json!({"judge": "simulated_labelers", "win_rate_a_vs_b": win_rate(&tasks, &ans_a, &ans_b, &pool, args.seed),
                   "gold_a": mean_gold(&tasks, &ans_a), "gold_b": mean_gold(&tasks, &ans_b), "prompts": prompts.len()})
        }
    };
    if let Some(path) = &args.answers {
        let mut rows = vec![];
        for (i, p) in prompts.iter().enumerate() {
            let mut row = json!({"id": p.id, "prompt": p.prompt, "a": ans_a[i], "b": ans_b[i]});
            if let Some((sa, sb)) = &scores {
                row["reward_a"] = json!(sa[i]);
                row["reward_b"] = json!(sb[i]);
            }
            rows.push(row);
        }
        write_answers(path, &rows)?;
    }
    println!("{result}");
    Ok(())
}

/// `--run`: A judged as the run's table judges its models (`evaluate_models`, the pipeline's
/// own evaluation), against the run's SFT model or `b`.
fn evaluate_as_run(
    run: &Path,
    a_dir: &Path,
    b_dir: Option<&Path>,
    answers_path: Option<&Path>,
    device: tch::Device,
) -> anyhow::Result<()> {
    let cfg = PipelineConfig::from_run(run).context("--run")?;
    anyhow::ensure!(
        run.join("labelers/done.json").exists(),
        "--run: {} has no calibrated labelers (labelers/done.json): give a pipeline run that \
         got past its labeler stage",
        run.display()
    );
    // The run's data, rebuilt from its seed (nothing is written into the run).
    let data = prepare_data_on(&cfg, run, false)?;
    let sft_dir = cfg.sft_dir(run);
    let labelers = labeler_stage(&cfg, &data, &sft_dir, run)?;
    let b_dir = b_dir.unwrap_or(&sft_dir);
    let a = load_lm(a_dir, device, "--a")?;
    let b = load_lm(b_dir, device, "--b")?;
    let vocab = |m: &CausalLm| m.tokenizer().map(|t| t.inner().get_vocab(true));
    let run_vocab = Some(data.collator.tokenizer().get_vocab(true));
    for (m, flag) in [(&a, "--a"), (&b, "--b")] {
        anyhow::ensure!(
            vocab(m) == run_vocab,
            "{flag} does not use the run's tokenizer (toy world): compare models of that run"
        );
    }
    let mut report = PipelineReport::default();
    let judged = evaluate_models(
        &cfg,
        &data,
        &labelers.heldout,
        &[("a", &a)],
        &b,
        &mut report,
    )?;
    if let Some(path) = answers_path {
        let rows: Vec<Value> = judged
            .prompts
            .iter()
            .zip(&judged.answers[0].1)
            .zip(&judged.baseline)
            .map(|((p, a), b)| json!({"id": p.id, "prompt": p.prompt, "a": a, "b": b}))
            .collect();
        write_answers(path, &rows)?;
    }
    let c = report.conduct["a"];
    println!(
        "{}",
        json!({
            "judge": "heldout_labelers",
            "run": run.display().to_string(),
            "prompts": cfg.eval_prompts.min(data.world.heldout_prompts.len()),
            "win_rate_a_vs_b": report.win_rate_vs_sft["a"],
            "gold_a": report.gold_score["a"],
            "gold_greedy_a": report.gold_score_greedy["a"],
            "kl_a_to_b": report.kl_to_sft["a"],
            "pretrain_loss_a": report.pretrain_loss["a"],
            "correctness_a": c.correctness,
            "filler_a": c.filler,
            "sign_off_a": c.sign_off,
            "broken_constraint_a": c.broken_constraint,
        })
    );
    Ok(())
}

/// `--answers`: one JSON object per line.
fn write_answers(path: &Path, rows: &[Value]) -> anyhow::Result<()> {
    let mut out = String::new();
    for row in rows {
        out.push_str(&row.to_string());
        out.push('\n');
    }
    rlhf_io::write_atomic(path, out.as_bytes())
        .with_context(|| format!("--answers {}", path.display()))?;
    tracing::info!(
        "--answers: {} rows written to {}",
        rows.len(),
        path.display()
    );
    Ok(())
}
