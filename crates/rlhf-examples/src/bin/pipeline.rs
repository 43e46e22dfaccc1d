//! The whole InstructGPT recipe on the built-in toy world, on a laptop CPU in minutes:
//! data (split by user) -> pretrain -> SFT -> rankings -> RM -> PPO and PPO-ptx -> evaluation.
//!
//! `pipeline [--out DIR] [--config FILE.toml] [--set key=value]... [--rounds N]`
//!
//! Prints the InstructGPT-style table and writes `report.json` and `report.md` in the run
//! directory (default: a new directory under runs/). Rerunning with the same --out resumes.

use clap::Parser;
use rlhf_examples::pipeline::{run, PipelineConfig, PipelineReport};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    about = "InstructGPT in miniature on the toy world (SFT, RM, PPO, PPO-ptx) with the paper's table"
)]
struct Args {
    /// Run directory (default: runs/pipeline-<time>); an existing one is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// TOML config (keys of PipelineConfig; defaults for the rest).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a key, e.g. `--set sft.epochs=2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Rounds of the paper's iteration (rank the current policy's samples, retrain the RM,
    /// train a new PPO-ptx policy); the same as `--set rounds=N`.
    #[arg(long)]
    rounds: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    let mut overrides = args.overrides.clone();
    if let Some(n) = args.rounds {
        if n == 0 {
            anyhow::bail!(
                "--rounds 0: the pipeline needs at least one round (use --rounds 1 or more)"
            );
        }
        overrides.push(format!("rounds={n}"));
    }
    let cfg: PipelineConfig = rlhf_examples::run::load_config(args.config.as_deref(), &overrides)?;
    let out = args
        .out
        .unwrap_or_else(|| rlhf_examples::run::RunDir::default_for("pipeline"));
    eprintln!("[pipeline] run directory {}", out.display());
    let report = run(&cfg, &out)?;
    print_table(&report);
    Ok(())
}

fn print_table(r: &PipelineReport) {
    println!(
        "{:<10} {:>16} {:>10} {:>14} {:>10} {:>14}",
        "model", "win rate vs SFT", "gold", "gold (greedy)", "KL to SFT", "pretrain loss"
    );
    for name in r.model_names() {
        let name = name.as_str();
        if let Some(g) = r.gold_score.get(name) {
            let greedy = r.gold_score_greedy.get(name).copied().unwrap_or(f64::NAN);
            println!(
                "{:<10} {:>16.3} {:>10.3} {:>14.3} {:>10.2} {:>14.3}",
                name, r.win_rate_vs_sft[name], g, greedy, r.kl_to_sft[name], r.pretrain_loss[name]
            );
        }
    }
    if let (Some(a), Some(c)) = (r.rm_accuracy, r.rm_accuracy_ceiling) {
        println!("RM held-out accuracy {a:.3} (noise ceiling {c:.3})");
    }
    for (round, a) in &r.rm_accuracy_by_round {
        let c = r
            .rm_accuracy_ceiling_by_round
            .get(round)
            .copied()
            .unwrap_or(f64::NAN);
        println!("  {round}: RM accuracy {a:.3} (ceiling {c:.3})");
    }
    println!(
        "seconds: {}",
        serde_json::to_string(&r.seconds).unwrap_or_default()
    );
}
