//! The paper's most quoted finding, at toy scale: is the small PPO-ptx policy preferred over the
//! SFT model of a **larger** model? (InstructGPT: outputs of the 1.3B PPO-ptx model were
//! preferred to those of the 175B GPT-3.)
//!
//! `cargo run --release -p rlhf-examples --example large_sft -- RUN_DIR [--n-embd 256]
//! [--n-layer 2] [--n-head 4]`
//!
//! RUN_DIR holds a finished pipeline run. The example pretrains and fine-tunes a larger model
//! with the run's recipe (only `[model]` changes: by default twice the width, about four times
//! the parameters of the default model) in `RUN_DIR/large/` (resumable), then has the run's
//! held-out labelers judge, on its held-out prompts, the larger SFT model against the run's SFT
//! model and the run's final policy against the larger SFT model
//! ([`rlhf_examples::pipeline::compare_with_larger_sft`]). Prints a table; the numbers are also
//! in `RUN_DIR/large/report.json`.

use rlhf_examples::pipeline::{compare_with_larger_sft, read_run_config, ModelShape};
use std::path::PathBuf;

#[derive(clap::Parser, Debug)]
#[command(about = "The run's final policy against the SFT model of a larger model")]
struct Args {
    /// A finished pipeline run.
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Width of the larger model.
    #[arg(long, default_value_t = 256)]
    n_embd: i64,
    /// Layers of the larger model.
    #[arg(long, default_value_t = 2)]
    n_layer: i64,
    /// Attention heads of the larger model.
    #[arg(long, default_value_t = 4)]
    n_head: i64,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let shape = ModelShape {
        n_embd: args.n_embd,
        n_layer: args.n_layer,
        n_head: args.n_head,
        // The run's context length.
        ..read_run_config(&args.run)?.model
    };
    let c = compare_with_larger_sft(&args.run, &shape)?;
    println!(
        "held-out prompts judged by the held-out labelers; sft {} parameters, sft_large {} ({:.1}x)",
        c.parameters["sft"],
        c.parameters["sft_large"],
        c.parameters["sft_large"] as f64 / c.parameters["sft"] as f64
    );
    println!(
        "{:<12} {:>8} {:>14} {:>7} {:>9} {:>8} {:>7} {:>8} {:>7}",
        "model",
        "vs sft",
        "vs sft_large",
        "gold",
        "pretrain",
        "correct",
        "filler",
        "sign-off",
        "broken"
    );
    for name in ["sft", "sft_large", c.final_policy.as_str()] {
        let r = &c.rows[name];
        println!(
            "{:<12} {:>8.3} {:>14.3} {:>7.3} {:>9.3} {:>8.3} {:>7.3} {:>8.3} {:>7.3}",
            name,
            r.win_rate_vs_sft,
            r.win_rate_vs_sft_large,
            r.gold_score,
            r.pretrain_loss,
            r.conduct.correctness,
            r.conduct.filler,
            r.conduct.sign_off,
            r.conduct.broken_constraint
        );
    }
    Ok(())
}
