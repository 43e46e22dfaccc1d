//! The pipeline's data: the toy world with the paper's hygiene and user splits, and the labelers (calibrated on the pipeline's own comparisons).

use super::*;

/// What the data stage produces.
pub struct PipelineData {
    /// The generated world.
    pub world: ToyWorld,
    /// Training demonstrations after hygiene (training users).
    pub sft_train: Vec<Demonstration>,
    /// Validation demonstrations (other users).
    pub sft_valid: Vec<Demonstration>,
    /// Prompts of training users (for rankings and PPO).
    pub train_prompts: Vec<PromptRecord>,
    /// The collator (toy tokenizer, EOS = pad = 0).
    pub collator: Collator,
}

/// The two groups of simulated labelers, calibrated on the SFT model's samples.
#[derive(Debug, Clone)]
pub struct Labelers {
    /// Training labelers: they rank the RM's comparisons.
    pub train: LabelerPool,
    /// Held-out labelers: they judge every win rate, nothing else.
    pub heldout: LabelerPool,
    /// Measured agreement of two training labelers on the calibration comparisons.
    pub agreement: f64,
    /// Measured agreement of two held-out labelers on the calibration comparisons.
    pub heldout_agreement: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LabelersDone {
    train: (f64, usize, f64),
    heldout: (f64, usize, f64),
    agreement: f64,
    heldout_agreement: f64,
    comparisons: usize,
}

impl PipelineData {
    /// The validation split's prompts (training users held out for validation), as prompt
    /// records.
    pub fn valid_prompt_records(&self) -> Vec<PromptRecord> {
        self.sft_valid
            .iter()
            .map(|d| PromptRecord {
                id: d.id.clone(),
                user_id: d.user_id.clone(),
                prompt: d.prompt.clone(),
                task: None,
                source: None,
            })
            .collect()
    }
}

/// Generates the world, applies the paper's hygiene and splits by user; writes the data as
/// JSONL under `out/data/`.
pub fn prepare_data(cfg: &PipelineConfig, out: &Path) -> anyhow::Result<PipelineData> {
    prepare_data_on(cfg, out, true)
}

/// [`prepare_data`], writing the files only when `write` (rank 0 of a data-parallel run;
/// every rank builds the same data from the seed).
pub fn prepare_data_on(
    cfg: &PipelineConfig,
    out: &Path,
    write: bool,
) -> anyhow::Result<PipelineData> {
    let world = ToyWorld::generate(&ToyConfig {
        seed: cfg.seed,
        ..cfg.world.clone()
    })?;
    let scrubber = PiiScrubber::new();
    let mut demos = world.demonstrations.clone();
    let pii = scrubber.scrub_records(&mut demos);
    let (demos, cap) = cap_per_user(demos, cfg.max_prompts_per_user);
    let (demos, dedup) = dedup_prompts(
        demos,
        &DedupConfig {
            prefix_chars: None,
            ..Default::default()
        },
    );
    let split = split_by_user(
        demos,
        (1.0 - cfg.valid_fraction, cfg.valid_fraction, 0.0),
        cfg.seed,
    )?;
    let (prompts, _) = cap_per_user(world.prompts.clone(), cfg.max_prompts_per_user);
    let train_users: std::collections::HashSet<&str> =
        split.train.iter().map(|d| d.user_id.as_str()).collect();
    let train_prompts: Vec<PromptRecord> = prompts
        .into_iter()
        .filter(|p| train_users.contains(p.user_id.as_str()))
        .collect();
    if write {
        let dir = out.join("data");
        std::fs::create_dir_all(&dir)?;
        write_jsonl(dir.join("sft_train.jsonl"), &split.train)?;
        write_jsonl(dir.join("sft_valid.jsonl"), &split.valid)?;
        write_jsonl(dir.join("train_prompts.jsonl"), &train_prompts)?;
        write_jsonl(dir.join("heldout_prompts.jsonl"), &world.heldout_prompts)?;
        write_jsonl(dir.join("pretrain.jsonl"), &world.pretrain)?;
    }
    tracing::info!(
        "[data] {} demonstrations -> {} train / {} valid (by user; PII scrubbed in {} records, {} over the per-user cap, {} duplicates); {} held-out prompts",
        world.demonstrations.len(),
        split.train.len(),
        split.valid.len(),
        pii.records_changed,
        cap.dropped,
        dedup.exact_duplicates + dedup.prefix_duplicates,
        world.heldout_prompts.len()
    );
    let col = Collator::new(
        toy_tokenizer(),
        CollateConfig::new(TOY_EOS_ID, TOY_EOS_ID)
            .with_limits(cfg.sft.max_prompt_tokens, cfg.sft.max_response_tokens),
    )?;
    cfg.labelers.validate()?;
    Ok(PipelineData {
        world,
        sft_train: split.train,
        sft_valid: split.valid,
        train_prompts,
        collator: col,
    })
}

/// Calibrates the labelers on the comparisons the pipeline collects: K (`rm_k`) samples of the
/// SFT model on `labelers.calibration_prompts` training prompts (other draws than the RM's).
/// The training group is calibrated to `target_agreement`, the disjoint held-out group to
/// `heldout_target_agreement`; both agreements are then measured by simulation (two different
/// labelers of a group rank each sample). Saved in `out/labelers/done.json` and reloaded.
pub fn labeler_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    out: &Path,
) -> anyhow::Result<Labelers> {
    use rand::SeedableRng;
    let dir = out.join("labelers");
    let lc = &cfg.labelers;
    let pools = |d: &LabelersDone| -> anyhow::Result<Labelers> {
        let mut heldout = LabelerPool::with_temperature(d.heldout.0, d.heldout.1, d.heldout.2)?;
        for l in &mut heldout.labelers {
            l.id += d.train.1;
        }
        Ok(Labelers {
            train: LabelerPool::with_temperature(d.train.0, d.train.1, d.train.2)?,
            heldout,
            agreement: d.agreement,
            heldout_agreement: d.heldout_agreement,
        })
    };
    if stage_done(&dir) {
        let d: LabelersDone =
            serde_json::from_str(&std::fs::read_to_string(dir.join("done.json"))?)
                .with_context(|| format!("reading {}", dir.join("done.json").display()))?;
        return pools(&d);
    }
    std::fs::create_dir_all(&dir)?;
    let sft = CausalLm::load(sft_dir, crate::stage_device()?)?;
    let n = lc.calibration_prompts.min(data.train_prompts.len());
    // The last training prompts (the RM ranks the first ones).
    let prompts = &data.train_prompts[data.train_prompts.len() - n..];
    let samples = sample_distinct(
        &sft,
        prompts,
        &data.collator,
        (lc.min_k, lc.max_k),
        cfg.max_new_tokens,
        cfg.rm_sample_temperature,
        cfg.seed + 303,
    )?;
    let samples: Vec<(ToyPrompt, Vec<String>)> = samples
        .into_iter()
        .map(|(p, s)| Ok((ToyPrompt::parse(&p.prompt)?, s)))
        .collect::<anyhow::Result<_>>()?;
    let pairs: Vec<(f64, f64)> = samples
        .iter()
        .flat_map(|(p, s)| rlhf_toy::gold_pairs(p, s))
        .collect();
    let train = LabelerPool::calibrated_on(&pairs, lc)
        .context("calibrating the training labelers on SFT samples")?;
    let heldout = LabelerPool::heldout_on(&pairs, lc)
        .context("calibrating the held-out labelers on SFT samples")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed + 404);
    let agreement = train.measure_agreement(&samples, &mut rng).rate();
    let heldout_agreement = heldout.measure_agreement(&samples, &mut rng).rate();
    let done = LabelersDone {
        train: (train.base_temperature, train.len(), lc.noise_spread),
        heldout: (heldout.base_temperature, heldout.len(), lc.noise_spread),
        agreement,
        heldout_agreement,
        comparisons: pairs.len(),
    };
    tracing::info!(
        "[labelers] calibrated on {} comparisons of SFT samples: training labelers agree {:.3} (T {:.3}), held-out labelers {:.3} (T {:.3})",
        pairs.len(),
        agreement,
        train.base_temperature,
        heldout_agreement,
        heldout.base_temperature
    );
    rlhf_model::checkpoint::write_atomic(
        &dir.join("done.json"),
        serde_json::to_string_pretty(&done)?.as_bytes(),
    )?;
    pools(&done)
}
