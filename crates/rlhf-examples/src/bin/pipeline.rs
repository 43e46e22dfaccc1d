//! The whole InstructGPT recipe on the built-in toy world, on a laptop CPU in minutes:
//! data (split by user) -> pretrain -> SFT -> rankings -> RM -> PPO and PPO-ptx -> evaluation.
//!
//! `pipeline [--out DIR] [--config FILE.toml] [--set key=value]... [--rounds N]`
//!
//! Prints the InstructGPT-style table and writes `report.json` and `report.md` in the run
//! directory (default: a new directory under runs/). Rerunning with the same --out resumes.
//! Under `mpirun -np N` (built with the `mpi` feature) the training stages are data-parallel;
//! give every rank the same `--out`, on a file system they all see.

use clap::Parser;
use rlhf_examples::pipeline::{run_on, PipelineConfig, PipelineReport};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    about = "InstructGPT in miniature on the toy world (SFT, RM, PPO, PPO-ptx) with the paper's table"
)]
struct Args {
    /// Run directory (default: `runs/pipeline-<time>`); an existing one is resumed, with its own
    /// config (a different one is refused, except for rounds and the evaluation settings).
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
    /// The toy world: `preferences` (default: demonstrators with habits labelers dislike,
    /// prompts with explicit constraints) or `correctness` (the ablation without habits or
    /// constraints, where the gold score is correctness alone and RL is not expected to help).
    #[arg(long, value_enum, default_value_t = Preset::Preferences)]
    preset: Preset,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    Preferences,
    Correctness,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    // Under mpirun, the training stages run data-parallel over the ranks (rank 0 does the rest
    // and writes the run directory, which every rank must see).
    let comm: std::rc::Rc<dyn rlhf_dist::Collective> =
        rlhf_dist::init_for_devices(rlhf_examples::stage_device()?.is_cuda())?.into();
    let mut overrides = Vec::new();
    if args.preset == Preset::Correctness {
        // Before the user's --set, which may still change any of these keys.
        for key in [
            "filler_rate",
            "sign_off_rate",
            "ignore_constraint_rate",
            "constraint_rate",
        ] {
            overrides.push(format!("world.habits.{key}=0.0"));
        }
    }
    overrides.extend(args.overrides.iter().cloned());
    if let Some(n) = args.rounds {
        if n == 0 {
            anyhow::bail!(
                "--rounds 0: the pipeline needs at least one round (use --rounds 1 or more)"
            );
        }
        overrides.push(format!("rounds={n}"));
    }
    let cfg: PipelineConfig = rlhf_examples::run::load_config(args.config.as_deref(), &overrides)?;
    // Every rank checks the same config: a bad one ends them all before any work.
    anyhow::Context::context(cfg.validate(), "invalid pipeline config")?;
    let out = match args.out {
        Some(out) => out,
        None => {
            // Rank 0's name for the new directory (the clock may differ between ranks).
            let mut name = rlhf_examples::run::RunDir::default_for("pipeline")
                .to_string_lossy()
                .into_owned()
                .into_bytes();
            comm.broadcast_bytes(&mut name, 0)?;
            PathBuf::from(String::from_utf8(name)?)
        }
    };
    if comm.is_root() {
        tracing::info!(
            "[pipeline] run directory {}{}",
            out.display(),
            if comm.world_size() > 1 {
                format!(" ({} ranks)", comm.world_size())
            } else {
                String::new()
            }
        );
    }
    match run_on(&cfg, &out, comm.clone()) {
        Ok(Some(report)) => print_table(&report),
        Ok(None) => {}
        Err(e) if comm.world_size() > 1 => {
            // The other ranks may be waiting for this one: end the whole job.
            eprintln!("Error (rank {}): {e:#}", comm.rank());
            comm.abort(1);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

fn print_table(r: &PipelineReport) {
    println!(
        "{:<10} {:>16} {:>7} {:>14} {:>10} {:>14} {:>12} {:>7} {:>9} {:>7}",
        "model",
        "win rate vs SFT",
        "gold",
        "gold (greedy)",
        "KL to SFT",
        "pretrain loss",
        "correctness",
        "filler",
        "sign-off",
        "broken"
    );
    for name in r.model_names() {
        let name = name.as_str();
        if let Some(g) = r.gold_score.get(name) {
            let greedy = r.gold_score_greedy.get(name).copied().unwrap_or(f64::NAN);
            let c = r.conduct.get(name).copied().unwrap_or_default();
            println!(
                "{:<10} {:>16.3} {:>7.3} {:>14.3} {:>10.2} {:>14.3} {:>12.3} {:>7.3} {:>9.3} {:>7.3}",
                name,
                r.win_rate_vs_sft[name],
                g,
                greedy,
                r.kl_to_sft[name],
                r.pretrain_loss[name],
                c.correctness,
                c.filler,
                c.sign_off,
                c.broken_constraint
            );
        }
    }
    println!("(win rates judged by held-out labelers on held-out users' prompts; filler, sign-off: share of answers with one; broken: share of `answer only :` prompts answered with either)");
    if let Some(f) = &r.final_policy {
        if let Some(w) = r.win_rate_vs_sft.get(f) {
            println!("final policy (the last round's PPO-ptx): {f}, win rate vs SFT {w:.3}");
        }
    }
    if let (Some(a), Some(h)) = (r.labeler_agreement, r.heldout_labeler_agreement) {
        println!("labeler agreement on SFT samples: training {a:.3}, held-out {h:.3}");
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
