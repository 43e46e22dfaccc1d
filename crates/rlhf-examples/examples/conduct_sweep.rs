//! Diagnostic: how the toy world's conduct penalties shape the win rates, measured on
//! **validation** prompts (the training users' validation split) with **training** labelers, so
//! that the world's defaults are chosen without looking at the evaluation prompts or the
//! held-out labelers.
//!
//! `cargo run --release -p rlhf-examples --example conduct_sweep -- RUN_DIR [PROMPTS]`
//! (PROMPTS: validation prompts to measure on, default 600; `-- --help` shows the usage)
//! where RUN_DIR holds a finished pipeline run (`config.toml`, `pretrain/best`, `sft/best`,
//! `ppo_ptx/final`, optional). For each setting of (filler, sign-off, broken-constraint) penalties it
//! recalibrates the training labelers (73% agreement) on SFT samples of training prompts scored
//! with those penalties, then prints the expected win rates against SFT of the base model
//! (few-shot prompts) and of PPO-ptx (trained under the run's penalties; it has dropped the
//! habits, which is what matters here) on the validation prompts.

use rlhf_examples::pipeline::{prepare_data, sample_distinct, PipelineConfig};
use rlhf_model::CausalLm;
use rlhf_toy::eval::{answers, few_shot_prompt, Shot};
use rlhf_toy::{Judgement, LabelerPool, ToyPrompt};
use std::path::PathBuf;

fn gold(j: &Judgement, (f, s, b): (f64, f64, f64)) -> f64 {
    j.correctness
        - f * f64::from(u8::from(j.filler))
        - s * f64::from(u8::from(j.sign_off))
        - b * f64::from(u8::from(j.broke_constraint))
}

#[derive(clap::Parser, Debug)]
#[command(
    about = "Win rates against SFT of the base model and PPO-ptx for other conduct-penalty settings, on validation prompts"
)]
struct Args {
    /// A finished pipeline run (config.toml, pretrain/best, sft/best, optional ppo_ptx/final).
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Validation prompts to measure the win rates on.
    #[arg(value_name = "PROMPTS", default_value_t = 600)]
    prompts: usize,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let (run, n) = (args.run, args.prompts);
    let cfg = PipelineConfig::from_run(&run)?;
    let tmp = tempfile::tempdir()?;
    let data = prepare_data(&cfg, tmp.path())?;
    let col = &data.collator;
    let device = rlhf_examples::stage_device()?;
    let base = CausalLm::load(run.join("pretrain/best"), device)?;
    let sft = CausalLm::load(cfg.sft_dir(&run), device)?;
    // PPO-ptx's column is left out (NaN) while the run has none yet.
    let ptx = CausalLm::load(run.join("ppo_ptx/final"), device).ok();

    // Calibration comparisons: SFT samples of training prompts.
    let k = cfg
        .labelers
        .calibration_prompts
        .min(data.train_prompts.len());
    let cal_prompts = &data.train_prompts[data.train_prompts.len() - k..];
    let cal = sample_distinct(&sft, cal_prompts, col, cfg.rm_k, cfg.max_new_tokens, 1.0, 7)?;
    let cal: Vec<Vec<Judgement>> = cal
        .iter()
        .map(|(p, s)| {
            let tp = ToyPrompt::parse(&p.prompt)?;
            Ok(s.iter().map(|x| tp.judge(x)).collect())
        })
        .collect::<anyhow::Result<_>>()?;

    // Validation prompts and each model's sampled answers.
    let shots = Shot::from_demonstrations(&data.sft_train, 64);
    let mut prompts = vec![];
    let (mut ids, mut few) = (vec![], vec![]);
    for (i, d) in data.sft_valid.iter().take(n).enumerate() {
        let p = ToyPrompt::parse(&d.prompt)?;
        let ex: Vec<Shot> = (0..3)
            .map(|j| shots[(i * 3 + j) % shots.len()].clone())
            .collect();
        few.push(col.encode(&few_shot_prompt(&p, &ex))?);
        ids.push(col.encode(&d.prompt)?);
        prompts.push(p);
    }
    let seed = Some(cfg.seed + 77);
    let judge = |ans: Vec<String>| -> Vec<Judgement> {
        prompts.iter().zip(&ans).map(|(p, a)| p.judge(a)).collect()
    };
    let j_sft = judge(answers(&sft, &ids, col, cfg.max_new_tokens, seed, 64)?);
    let j_base = judge(answers(&base, &few, col, cfg.max_new_tokens, seed, 64)?);
    let j_ptx = match &ptx {
        Some(m) => judge(answers(m, &ids, col, cfg.max_new_tokens, seed, 64)?),
        None => vec![],
    };

    println!(
        "filler sign_off broken | T     | base vs sft | ppo_ptx vs sft | gold base / sft / ppo_ptx"
    );
    let grid = [
        (0.3, 0.3, 0.4),
        (0.25, 0.25, 0.35),
        (0.2, 0.2, 0.4),
        (0.2, 0.2, 0.3),
        (0.15, 0.15, 0.3),
        (0.1, 0.1, 0.5),
    ];
    for w in grid {
        let pairs: Vec<(f64, f64)> = cal
            .iter()
            .flat_map(|js| {
                let g: Vec<f64> = js.iter().map(|j| gold(j, w)).collect();
                let mut out = vec![];
                for a in 0..g.len() {
                    for b in a + 1..g.len() {
                        out.push((g[a], g[b]));
                    }
                }
                out
            })
            .collect();
        let pool = LabelerPool::calibrated_on(&pairs, &cfg.labelers)?;
        let win = |xs: &[Judgement]| -> f64 {
            let mut s = 0.0;
            for (x, y) in xs.iter().zip(&j_sft) {
                let (gx, gy) = (gold(x, w), gold(y, w));
                s += if gx == gy {
                    0.5
                } else {
                    pool.labelers
                        .iter()
                        .map(|l| l.preference_probability(gx, gy))
                        .sum::<f64>()
                        / pool.len() as f64
                };
            }
            s / xs.len() as f64 // NaN without answers
        };
        let mean = |xs: &[Judgement]| xs.iter().map(|j| gold(j, w)).sum::<f64>() / xs.len() as f64;
        println!(
            "{:.2} {:.2} {:.2}       | {:.3} | {:.3}       | {:.3}          | {:.3} / {:.3} / {:.3}",
            w.0,
            w.1,
            w.2,
            pool.base_temperature,
            win(&j_base),
            win(&j_ptx),
            mean(&j_base),
            mean(&j_sft),
            mean(&j_ptx)
        );
    }
    Ok(())
}
