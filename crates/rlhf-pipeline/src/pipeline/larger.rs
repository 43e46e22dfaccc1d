//! The paper's most quoted finding, at toy scale: the small PPO-ptx policy against the SFT model
//! of a **larger** model (InstructGPT: outputs of the 1.3B PPO-ptx model were preferred to
//! those of the 175B GPT-3).

use super::*;

/// One model's row of a [`LargerSftComparison`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComparisonRow {
    /// Win rate against the run's SFT model (0.5 for itself).
    pub win_rate_vs_sft: f64,
    /// Win rate against the larger SFT model (0.5 for itself).
    pub win_rate_vs_sft_large: f64,
    /// Mean gold score of sampled answers.
    pub gold_score: f64,
    /// Mean gold score of greedy answers.
    pub gold_score_greedy: f64,
    /// LM loss on the held-out pretraining text.
    pub pretrain_loss: f64,
    /// Correctness and habits of the sampled answers.
    pub conduct: ConductStats,
}

/// What [`compare_with_larger_sft`] measured (also written as `RUN/large/report.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LargerSftComparison {
    /// The run's final policy (the last round's PPO-ptx).
    pub final_policy: String,
    /// Parameters of `sft` and `sft_large`.
    pub parameters: BTreeMap<String, usize>,
    /// Rows `sft`, `sft_large` and the final policy's.
    pub rows: BTreeMap<String, ComparisonRow>,
    /// The larger model's shape.
    pub shape: ModelShape,
}

/// The resolved config a pipeline run wrote (`RUN/config.toml`).
pub fn read_run_config(run: &Path) -> anyhow::Result<PipelineConfig> {
    let path = run.join("config.toml");
    toml::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (a pipeline run?)", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))
}

fn parameters(lm: &CausalLm) -> usize {
    lm.var_store().variables().values().map(|t| t.numel()).sum()
}

/// Pretrains and fine-tunes a model of `shape` with a finished run's recipe (the same world,
/// corpus, demonstrations, seed and training settings; only `[model]` differs) in
/// `RUN/large/` (resumable: finished stages are skipped), then has the run's **held-out
/// labelers** judge, on its **held-out prompts**, the larger SFT model against the run's SFT
/// model, and the run's final policy and SFT model against the larger SFT model.
///
/// An evaluation: nothing should be chosen from it.
pub fn compare_with_larger_sft(
    run: &Path,
    shape: &ModelShape,
) -> anyhow::Result<LargerSftComparison> {
    let cfg = read_run_config(run)?;
    anyhow::ensure!(
        cfg.lora.is_none(),
        "{}: a LoRA run; the comparison is between fully fine-tuned models",
        run.display()
    );
    anyhow::ensure!(
        shape.n_embd > 0
            && shape.n_layer > 0
            && shape.n_head > 0
            && shape.n_embd % shape.n_head == 0
            && shape.n_positions > 0,
        "larger model {shape:?}: every number must be positive and n_embd a multiple of n_head"
    );
    let report_path = run.join("report.json");
    let run_report: PipelineReport =
        serde_json::from_str(&std::fs::read_to_string(&report_path).with_context(|| {
            format!("reading {} (run the pipeline first)", report_path.display())
        })?)
        .with_context(|| format!("parsing {}", report_path.display()))?;
    let final_name = run_report
        .final_policy
        .clone()
        .unwrap_or_else(|| "ppo_ptx".to_string());
    let final_dir = match final_name.strip_prefix("ppo_ptx_r") {
        Some(round) => run.join(format!("round-{round}/ppo_ptx/final")),
        None => run.join(&final_name).join("final"),
    };
    anyhow::ensure!(
        run.join("labelers/done.json").exists(),
        "{} has no calibrated labelers (labelers/done.json): run the pipeline first",
        run.display()
    );

    let large_cfg = PipelineConfig {
        model: shape.clone(),
        ..cfg.clone()
    };
    // The same data as the run's (built from its seed; the run's files are left as they are).
    let data = prepare_data_on(&cfg, run, false)?;
    let large_dir = run.join("large");
    std::fs::create_dir_all(&large_dir)?;
    let large_base = pretrain_stage(&large_cfg, &data, &large_dir)?;
    let large_sft_dir = sft_stage(&large_cfg, &data, &large_base, &large_dir)?;

    let sft_dir = run.join("sft/best");
    let labelers = labeler_stage(&cfg, &data, &sft_dir, run)?;
    let device = rank_device(&rlhf_dist::Single)?;
    let sft = CausalLm::load(&sft_dir, device)?;
    let large = CausalLm::load(&large_sft_dir, device)?;
    let policy = CausalLm::load(&final_dir, device)
        .with_context(|| format!("the final policy {}", final_dir.display()))?;

    // The larger SFT model against the run's SFT model, then the run's models against the
    // larger SFT model, all judged by the held-out labelers on the held-out prompts.
    let mut vs_sft = PipelineReport::default();
    evaluate_models(
        &cfg,
        &data,
        &labelers.heldout,
        &[("sft_large", &large)],
        &sft,
        &mut vs_sft,
    )?;
    let mut vs_large = PipelineReport::default();
    evaluate_models(
        &cfg,
        &data,
        &labelers.heldout,
        &[(final_name.as_str(), &policy), ("sft", &sft)],
        &large,
        &mut vs_large,
    )?;
    let row = |r: &PipelineReport, name: &str, vs_sft: f64, vs_large: f64| ComparisonRow {
        win_rate_vs_sft: vs_sft,
        win_rate_vs_sft_large: vs_large,
        gold_score: r.gold_score[name],
        gold_score_greedy: r.gold_score_greedy[name],
        pretrain_loss: r.pretrain_loss[name],
        conduct: r.conduct[name],
    };
    let final_vs_sft = *run_report
        .win_rate_vs_sft
        .get(&final_name)
        .with_context(|| format!("{} has no win rate for {final_name}", report_path.display()))?;
    let mut rows = BTreeMap::new();
    rows.insert(
        "sft".to_string(),
        row(&vs_large, "sft", 0.5, vs_large.win_rate_vs_sft["sft"]),
    );
    rows.insert(
        "sft_large".to_string(),
        row(
            &vs_sft,
            "sft_large",
            vs_sft.win_rate_vs_sft["sft_large"],
            0.5,
        ),
    );
    rows.insert(
        final_name.clone(),
        row(
            &vs_large,
            &final_name,
            final_vs_sft,
            vs_large.win_rate_vs_sft[&final_name],
        ),
    );
    let out = LargerSftComparison {
        final_policy: final_name,
        parameters: BTreeMap::from([
            ("sft".to_string(), parameters(&sft)),
            ("sft_large".to_string(), parameters(&large)),
        ]),
        rows,
        shape: shape.clone(),
    };
    let text = serde_json::to_string_pretty(&out)?;
    rlhf_model::checkpoint::write_atomic(&large_dir.join("report.json"), text.as_bytes())?;
    Ok(out)
}
