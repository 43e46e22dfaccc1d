//! Rankings of the model's own samples by the labelers, and the reward model trained on them.

use super::*;

/// Collects rankings of SFT samples, trains the reward model from the SFT checkpoint,
/// normalizes it on the demonstrations, and measures its held-out accuracy and the labelers'
/// noise ceiling. Returns the RM checkpoint, its accuracy and the ceiling.
pub fn rm_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    labelers: &LabelerPool,
    sft_dir: &Path,
    out: &Path,
) -> anyhow::Result<(PathBuf, f64, f64)> {
    rm_stage_in(
        cfg,
        data,
        labelers,
        sft_dir,
        sft_dir,
        &[],
        &out.join("rm"),
        1,
        &(Rc::new(rlhf_dist::Single) as Rc<dyn Collective>),
    )
}

/// The RM stage in `dir`: the labelers rank samples of `sample_from` (the SFT model in the
/// first round, the current policy in later ones); the RM is trained from the SFT checkpoint
/// `sft_dir` on these rankings plus the training rankings of `earlier` RM stage directories (the
/// paper keeps collecting comparisons), and validated on held-out rankings of the new samples.
/// The RM trains data-parallel over `comm`'s ranks; rank 0 alone samples and ranks, and writes.
#[allow(clippy::too_many_arguments)]
pub fn rm_stage_in(
    cfg: &PipelineConfig,
    data: &PipelineData,
    labelers: &LabelerPool,
    sft_dir: &Path,
    sample_from: &Path,
    earlier: &[PathBuf],
    dir: &Path,
    round: u64,
    comm: &Rc<dyn Collective>,
) -> anyhow::Result<(PathBuf, f64, f64)> {
    let dir = dir.to_path_buf();
    let final_dir = dir.join("final");
    let root = comm.is_root();
    if stage_done(&dir) {
        let done: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("done.json"))?)?;
        return Ok((
            final_dir,
            done["accuracy"].as_f64().unwrap_or(f64::NAN),
            done["ceiling"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    // Tidy what a killed run left before reading its rankings and checkpoint.
    let run = open_stage_dir(&dir, "rm", &**comm)?;
    let device = rank_device(&**comm)?;
    let col = &data.collator;
    let rankings_path = dir.join("rankings.jsonl");
    let valid_path = dir.join("valid_rankings.jsonl");
    // Rank 0 samples and ranks (and writes the rankings); the others read them.
    let (train_r, valid_r) = root_first(&**comm, || -> anyhow::Result<_> {
        Ok(if rankings_path.exists() && valid_path.exists() {
            let opts = rlhf_data::records::ReadOptions::default();
            (
                rlhf_data::records::read_jsonl::<Ranking>(&rankings_path, &opts)?.0,
                rlhf_data::records::read_jsonl::<Ranking>(&valid_path, &opts)?.0,
            )
        } else {
            let sft = CausalLm::load(sample_from, device)?;
            let mut valid_prompts = data.valid_prompt_records();
            valid_prompts.truncate(cfg.rm_valid_prompts);
            // Later rounds rank other prompts first (the pool wraps around).
            let n = cfg.rm_prompts.min(data.train_prompts.len());
            let start = ((round - 1) as usize * n) % data.train_prompts.len().max(1);
            let prompts: Vec<PromptRecord> = data
                .train_prompts
                .iter()
                .cycle()
                .skip(start)
                .take(n)
                .cloned()
                .collect();
            let round_seed = cfg.seed + 1000 * (round - 1);
            let (train_r, sk1) = collect_rankings(
                &sft,
                &prompts,
                col,
                labelers,
                cfg.rm_k,
                cfg.max_new_tokens,
                cfg.rm_sample_temperature,
                round_seed + 101,
            )?;
            let (valid_r, sk2) = collect_rankings(
                &sft,
                &valid_prompts,
                col,
                labelers,
                cfg.rm_k,
                cfg.max_new_tokens,
                cfg.rm_sample_temperature,
                round_seed + 202,
            )?;
            tracing::info!("[rm] {} training and {} validation rankings of SFT samples ({} prompts skipped: fewer than 2 distinct samples)", train_r.len(), valid_r.len(), sk1 + sk2);
            write_jsonl(&rankings_path, &train_r)?;
            write_jsonl(&valid_path, &valid_r)?;
            (train_r, valid_r)
        })
    })?;
    let mut all_train = Vec::new();
    for d in earlier {
        let opts = rlhf_data::records::ReadOptions::default();
        all_train
            .extend(rlhf_data::records::read_jsonl::<Ranking>(d.join("rankings.jsonl"), &opts)?.0);
    }
    if !earlier.is_empty() {
        tracing::info!(
            "[rm] training on {} new and {} earlier rankings",
            train_r.len(),
            all_train.len()
        );
    }
    all_train.extend(train_r.iter().cloned());
    let train = col.tokenize_rankings(&all_train)?;
    if comm.is_root() {
        let c = col.config();
        crate::stage::warn_truncation(
            "rm",
            "rankings",
            c.truncation_of_rankings(&train),
            c,
            ("sft.max_prompt_tokens", "sft.max_response_tokens"),
        );
    }
    let gold: Vec<Vec<f64>> = valid_r
        .iter()
        .map(|r| {
            let prompt = ToyPrompt::parse(&r.prompt)?;
            Ok(r.responses.iter().map(|x| prompt.gold(x)).collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let gold_pairs: Vec<(f64, f64)> = valid_r
        .iter()
        .map(|r| {
            Ok(rlhf_toy::gold_pairs(
                &ToyPrompt::parse(&r.prompt)?,
                &r.responses,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let ceiling = labelers.noise_ceiling(&gold_pairs);
    let valid = rlhf_reward::RankingData {
        groups: col.tokenize_rankings(&valid_r)?,
        gold: Some(gold),
    };
    let collate = col.config().clone();
    let latest = dir.join("latest");
    let mut trainer = if rlhf_model::checkpoint::resolve_dir(&latest).is_ok() {
        rlhf_reward::RewardTrainer::resume(&latest, device, cfg.rm.clone(), collate, train.len())?
    } else {
        // The fresh scalar head (and LoRA's A matrices) are drawn from libtorch's generator:
        // seed it for this stage and round, so the RM does not depend on what earlier stages
        // of the same process drew (a run resumed before this stage gets the same RM).
        tch::manual_seed((cfg.seed + 1000 * (round - 1) + 303) as i64);
        let mut model = rlhf_model::ScalarModel::reward_from_lm(sft_dir, device)?;
        if let Some(lora) = &cfg.lora {
            model.attach_lora(lora)?;
        }
        rlhf_reward::RewardTrainer::new(model, cfg.rm.clone(), collate, train.len())?
    };
    trainer.set_collective(comm.clone())?;
    let mut metrics: Box<dyn rlhf_model::train::MetricsSink> = if root {
        Box::new(run.metrics()?)
    } else {
        Box::new(rlhf_model::train::NoMetrics)
    };
    let mut progress = crate::run::Progress::new("rm", 0);
    let mut known = false;
    let reports = trainer.fit(
        &train,
        Some(&valid),
        &mut *metrics,
        Some(&dir),
        &mut |done, total, status| {
            if !known {
                progress = crate::run::Progress::new("rm", total);
                known = true;
            }
            progress.update(done, status);
        },
    )?;
    // Rank 0 normalizes, saves and marks the stage done; the others read its numbers back.
    let (acc, ceiling) = root_first(&**comm, || {
        if stage_done(&dir) {
            let done: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("done.json"))?)?;
            let get = |k: &str| done[k].as_f64().unwrap_or(f64::NAN);
            return Ok((get("accuracy"), get("ceiling")));
        }
        let demos = col.tokenize_demonstrations(&data.sft_train)?;
        let norm = trainer.normalize(&demos)?;
        trainer.model().save(&final_dir)?;
        let last = reports
            .last()
            .context("the reward trainer returned no validation report")?;
        let acc = last.stats.total.accuracy();
        tracing::info!(
            "[rm] held-out accuracy {:.3} against the labelers (gold order: {}), noise ceiling {:.3}; normalization bias {:.3}",
            acc,
            last.gold_accuracy.map_or("n/a".into(), |g| format!("{g:.3}")),
            ceiling,
            norm.bias
        );
        mark_done(
            &dir,
            serde_json::json!({
                "accuracy": acc,
                "ceiling": ceiling,
                "gold_accuracy": last.gold_accuracy,
                "world_size": trainer.world_size(),
            }),
        )?;
        Ok((acc, ceiling))
    })?;
    Ok((final_dir, acc, ceiling))
}

/// The paper's comparison data: for each prompt, K (uniform in `min_k..=max_k`) distinct
/// samples of `policy` (temperature `temperature`), ranked best-first by a labeler drawn at
/// random. Prompts where fewer than 2 distinct answers come out are skipped (and counted).
#[allow(clippy::too_many_arguments)]
pub fn collect_rankings(
    policy: &CausalLm,
    prompts: &[PromptRecord],
    col: &Collator,
    pool: &LabelerPool,
    ks: (usize, usize),
    max_new_tokens: i64,
    temperature: f64,
    seed: u64,
) -> anyhow::Result<(Vec<Ranking>, usize)> {
    use rand::SeedableRng;
    let samples = sample_distinct(policy, prompts, col, ks, max_new_tokens, temperature, seed)?;
    let skipped = prompts.len() - samples.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x5eed));
    let mut out = Vec::with_capacity(samples.len());
    for (p, distinct) in samples {
        let prompt = ToyPrompt::parse(&p.prompt)?;
        let ranking = pool.choose(&mut rng).rank(&prompt, &distinct, &mut rng);
        out.push(Ranking {
            id: format!("ranking-{}", p.id),
            user_id: p.user_id.clone(),
            prompt: p.prompt.clone(),
            responses: distinct,
            ranking,
        });
    }
    Ok((out, skipped))
}

/// K (uniform in `min_k..=max_k`) distinct samples of `policy` per prompt (2K drawn, the first
/// K distinct kept); prompts with fewer than 2 distinct samples are left out.
pub fn sample_distinct<'a>(
    policy: &CausalLm,
    prompts: &'a [PromptRecord],
    col: &Collator,
    (min_k, max_k): (usize, usize),
    max_new_tokens: i64,
    temperature: f64,
    seed: u64,
) -> anyhow::Result<Vec<(&'a PromptRecord, Vec<String>)>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let per_batch = 4usize;
    for (bi, chunk) in prompts.chunks(per_batch).enumerate() {
        let ks: Vec<usize> = chunk.iter().map(|_| rng.gen_range(min_k..=max_k)).collect();
        let mut rows = vec![];
        for (p, &k) in chunk.iter().zip(&ks) {
            let ids = col.encode(&p.prompt)?;
            rows.extend(std::iter::repeat_n(ids, 2 * k));
        }
        let gen = rlhf_model::GenerateConfig {
            max_new_tokens,
            temperature,
            seed: Some(seed.wrapping_mul(1_000_003).wrapping_add(bi as u64)),
            eos_token_id: Some(col.config().eos_id as i64),
            pad_token_id: col.config().pad_id as i64,
            ..Default::default()
        };
        let (_, _, toks, mask) = rlhf_sft::answer(policy, &rows, col.config(), &gen)?;
        let (toks, mask) = (
            toks.to_device(tch::Device::Cpu),
            mask.to_device(tch::Device::Cpu),
        );
        let mut row = 0i64;
        for (p, &k) in chunk.iter().zip(&ks) {
            let mut distinct: Vec<String> = Vec::new();
            for _ in 0..2 * k {
                let n = mask.get(row).sum(tch::Kind::Float).double_value(&[]) as usize;
                let ids: Vec<u32> = Vec::<i64>::try_from(toks.get(row))?
                    .into_iter()
                    .take(n)
                    .filter(|&t| t != col.config().eos_id as i64)
                    .map(|t| t as u32)
                    .collect();
                let text = col.decode(&ids)?;
                if distinct.len() < k && !distinct.contains(&text) {
                    distinct.push(text);
                }
                row += 1;
            }
            if distinct.len() >= 2 {
                out.push((p, distinct));
            }
        }
    }
    Ok(out)
}
