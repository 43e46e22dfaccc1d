//! The PPO and PPO-ptx stages.

use super::*;

/// Trains a policy from the SFT model with PPO (`ptx_coef` 0) or PPO-ptx against the reward
/// model; the value function starts from the RM. Returns the final policy checkpoint.
pub fn ppo_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    rm_dir: &Path,
    out: &Path,
    name: &str,
    ptx_coef: f64,
) -> anyhow::Result<PathBuf> {
    let single: Rc<dyn Collective> = Rc::new(rlhf_dist::Single);
    ppo_stage_on(cfg, data, sft_dir, rm_dir, out, name, ptx_coef, &single)
}

/// [`ppo_stage`] data-parallel over `comm`'s ranks (each samples and scores its share of every
/// batch; rank 0 evaluates and writes).
#[allow(clippy::too_many_arguments)]
pub fn ppo_stage_on(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    rm_dir: &Path,
    out: &Path,
    name: &str,
    ptx_coef: f64,
    comm: &Rc<dyn Collective>,
) -> anyhow::Result<PathBuf> {
    if stage_done(&out.join(name)) {
        return Ok(out.join(name).join("final"));
    }
    let mut reward = rlhf_model::ScalarModel::load(rm_dir, rank_device(&**comm)?)?;
    reward.var_store_mut().freeze();
    ppo_stage_with(
        cfg, data, sft_dir, rm_dir, reward, out, name, ptx_coef, comm,
    )
}

/// [`ppo_stage_on`] against any reward model (a learned RM, or a rule such as
/// [`rlhf_toy::eval::GoldReward`]); the value function starts from the RM checkpoint
/// `value_init`. With one process, `comm` is `Rc::new(rlhf_dist::Single)`.
#[allow(clippy::too_many_arguments)]
pub fn ppo_stage_with<M: rlhf_model::RewardModel>(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    value_init: &Path,
    reward: M,
    out: &Path,
    name: &str,
    ptx_coef: f64,
    comm: &Rc<dyn Collective>,
) -> anyhow::Result<PathBuf> {
    use rlhf_ppo::{PackedPtx, PpoModels, PpoTrainer, SpecialTokens};
    let dir = out.join(name);
    let final_dir = dir.join("final");
    if stage_done(&dir) {
        return Ok(final_dir);
    }
    let root = comm.is_root();
    let device = rank_device(&**comm)?;
    // Rank 0 tidies what a killed run left before anyone reads its checkpoints.
    let run = open_stage_dir(&dir, name, &**comm)?;
    // A run killed mid-stage continues from its last checkpoint.
    let checkpoints = rlhf_ppo::PpoCheckpoints::new(&dir);
    let resume = checkpoints.latest()?;
    let (mut policy, mut value) = match &resume {
        Some(ck) => (
            CausalLm::load(ck.policy(), device)?,
            rlhf_model::ScalarModel::load(ck.value(), device)?,
        ),
        None => (
            CausalLm::load(sft_dir, device)?,
            rlhf_model::ScalarModel::value_from_reward(value_init, device)?,
        ),
    };
    if let (Some(lora), None) = (&cfg.lora, &resume) {
        tch::manual_seed(cfg.seed as i64 + 11);
        policy.attach_lora(lora)?;
        if value.lora().is_none() {
            value.attach_lora(lora)?;
        }
    }
    // With adapters, the reference is the policy itself with them off: no second copy.
    let policy = std::rc::Rc::new(policy);
    let reference: Box<dyn rlhf_model::Policy> = if policy.lora().is_some() {
        Box::new(rlhf_model::AdaptersOff(policy.clone()))
    } else {
        let mut r = CausalLm::load(sft_dir, device)?;
        r.var_store_mut().freeze();
        Box::new(r)
    };
    let ppo_cfg = rlhf_ppo::PpoConfig {
        ptx_coef,
        seed: cfg.seed,
        ..cfg.ppo.clone()
    };
    let eos = data.collator.config().eos_id as i64;
    let mut trainer = PpoTrainer::new(
        ppo_cfg.clone(),
        PpoModels {
            policy,
            reference,
            reward,
            value,
        },
        SpecialTokens {
            eos: Some(eos),
            pad: eos,
        },
    )?;
    let prompts: Vec<Vec<i64>> = data
        .train_prompts
        .iter()
        .map(|p| {
            Ok(data
                .collator
                .encode(&p.prompt)?
                .into_iter()
                .map(i64::from)
                .collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let texts: Vec<&str> = data
        .world
        .pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let mut ptx = PackedPtx::new(
        data.collator.pack_texts(&texts, cfg.block_len)?,
        ppo_cfg.micro_batch(),
        cfg.seed,
    )?;
    if root {
        run.write_config(&ppo_cfg)?;
    }
    let start = match &resume {
        Some(ck) => {
            if let Some(warning) = ck.restore(&mut trainer)? {
                tracing::warn!("[{name}] warning: {warning}");
            }
            ptx.set_position(ck.state.ptx_position);
            tracing::info!("[{name}] resuming after iteration {}", ck.state.iteration);
            ck.state.iteration
        }
        None => 0,
    };
    trainer.set_collective(comm.clone())?;
    // Lines of iterations after the checkpoint are about to be logged again.
    let mut metrics: Box<dyn rlhf_model::train::MetricsSink> = if root {
        run.truncate_metrics(start)?;
        Box::new(run.metrics()?)
    } else {
        Box::new(rlhf_model::train::NoMetrics)
    };
    let mut progress = crate::run::Progress::new(name, cfg.ppo_iterations);
    // Fixed validation prompts (training users' validation split) for `eval/gold`.
    let check: Vec<(ToyPrompt, Vec<u32>)> = data
        .sft_valid
        .iter()
        .take(cfg.ppo_eval_prompts)
        .map(|d| {
            Ok((
                ToyPrompt::parse(&d.prompt)?,
                data.collator.encode(&d.prompt)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let validation_gold =
        |policy: &CausalLm| -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
            let (tasks, ids): (Vec<ToyPrompt>, Vec<Vec<u32>>) = check.iter().cloned().unzip();
            let ans = answers(
                policy,
                &ids,
                &data.collator,
                cfg.max_new_tokens,
                Some(cfg.seed + 53),
                cfg.gen_batch,
            )?;
            let c = conduct_stats(&tasks, &ans);
            let mut m = serde_json::Map::new();
            m.insert(
                "eval/gold".into(),
                serde_json::json!(mean_gold(&tasks, &ans)),
            );
            m.insert("eval/correctness".into(), serde_json::json!(c.correctness));
            m.insert("eval/filler".into(), serde_json::json!(c.filler));
            m.insert("eval/sign_off".into(), serde_json::json!(c.sign_off));
            Ok(m)
        };
    if root && start == 0 && cfg.ppo_eval_every > 0 && !check.is_empty() {
        metrics.log(0, &validation_gold(trainer.policy())?)?;
    }
    for it in start..cfg.ppo_iterations {
        let idx = rlhf_ppo::data::prompt_indices(prompts.len(), ppo_cfg.batch_size, it, cfg.seed);
        let rows: Vec<&[i64]> = idx.iter().map(|&i| prompts[i].as_slice()).collect();
        let (ids, mask) = rlhf_ppo::data::left_pad(&rows, eos)?;
        let ptx_src: Option<&mut dyn rlhf_ppo::PtxSource> =
            if ptx_coef > 0.0 { Some(&mut ptx) } else { None };
        let stats = trainer.step(
            &ids.to_device(device),
            &mask.to_device(device),
            ptx_src,
            &mut *metrics,
        )?;
        if !root {
            continue;
        }
        let m = stats.to_metrics();
        let get = |k: &str| m.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        progress.update(
            it + 1,
            &format!(
                "score {:.3} kl {:.3}",
                get("objective/scores"),
                get("objective/kl")
            ),
        );
        let done = it + 1;
        if cfg.ppo_eval_every > 0
            && !check.is_empty()
            && (done % cfg.ppo_eval_every == 0 || done == cfg.ppo_iterations)
        {
            let m = validation_gold(trainer.policy())?;
            tracing::info!(
                "[{name}] iteration {done}: validation gold {:.3}",
                m["eval/gold"].as_f64().unwrap_or(f64::NAN)
            );
            metrics.log(done, &m)?;
        }
        if cfg.ppo_save_every > 0 && done % cfg.ppo_save_every == 0 && done < cfg.ppo_iterations {
            checkpoints.save(&trainer, ptx.position(), 1)?;
        }
    }
    if !root {
        // Rank 0 saves the policy and marks the stage done.
        comm.barrier()?;
        return Ok(final_dir);
    }
    let world_size = trainer.world_size();
    let models = trainer.into_models();
    drop(models.reference);
    let mut policy = std::rc::Rc::try_unwrap(models.policy)
        .map_err(|_| anyhow::anyhow!("the PPO policy is still shared after training"))?;
    policy
        .meta_mut()
        .extra
        .insert("stage".into(), serde_json::json!(name));
    policy.save(&final_dir)?;
    finish_stage(
        &dir,
        serde_json::json!({"final": final_dir, "world_size": world_size}),
        &**comm,
    )?;
    Ok(final_dir)
}
