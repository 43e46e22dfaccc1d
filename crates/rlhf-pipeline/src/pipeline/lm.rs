//! The language-model stages: pretraining the base model and SFT.

use super::*;

/// Pretrains the base model on the world's corpus (or loads it when already done).
pub fn pretrain_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    pretrain_stage_on(cfg, data, out, &rlhf_dist::Single)
}

/// [`pretrain_stage`] data-parallel over `comm`'s ranks (rank 0 writes).
pub fn pretrain_stage_on(
    cfg: &PipelineConfig,
    data: &PipelineData,
    out: &Path,
    comm: &dyn Collective,
) -> anyhow::Result<PathBuf> {
    let dir = out.join("pretrain");
    let best = dir.join("best");
    if stage_done(&dir) {
        return Ok(best);
    }
    let tok = Tokenizer::from_inner(toy_tokenizer());
    let m = &cfg.model;
    let eos = TOY_EOS_ID as i64;
    let gcfg = Gpt2Config {
        bos_token_id: Some(eos),
        eos_token_id: Some(eos),
        pad_token_id: Some(eos),
        ..Gpt2Config::sized(
            m.n_layer,
            m.n_head,
            m.n_embd,
            tok.vocab_size() as i64,
            m.n_positions,
        )
        .with_dropout(0.0)
    };
    tch::manual_seed(cfg.seed as i64);
    let mut lm = CausalLm::new(&gcfg, rank_device(comm)?)?;
    lm.set_tokenizer(tok)?;
    let texts: Vec<&str> = data
        .world
        .pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let valid: Vec<&str> = data
        .world
        .heldout_pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let train = LmData::Blocks(data.collator.pack_texts(&texts, cfg.block_len)?);
    let valid = LmData::Blocks(data.collator.pack_texts(&valid, cfg.block_len)?);
    let run = open_stage_dir(&dir, "pretrain", comm)?;
    if comm.is_root() {
        run.write_config(&cfg.pretrain)?;
    }
    tracing::info!(
        "[pretrain] {} blocks of {} tokens, {} parameters",
        train.len(),
        cfg.block_len,
        lm.var_store()
            .variables()
            .values()
            .map(|t| t.numel())
            .sum::<usize>()
    );
    train_lm(
        "pretrain",
        &mut lm,
        (&train, Some(&valid)),
        &cfg.pretrain,
        &run,
        None,
        comm,
    )?;
    finish_stage(&dir, serde_json::json!({"best": best}), comm)?;
    Ok(best)
}

/// Fine-tunes the base model on demonstrations (selection by validation loss; the RM does not
/// exist yet in the first round).
pub fn sft_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    base: &Path,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    sft_stage_on(cfg, data, base, out, &rlhf_dist::Single)
}

/// [`sft_stage`] data-parallel over `comm`'s ranks (rank 0 writes).
pub fn sft_stage_on(
    cfg: &PipelineConfig,
    data: &PipelineData,
    base: &Path,
    out: &Path,
    comm: &dyn Collective,
) -> anyhow::Result<PathBuf> {
    let dir = out.join("sft");
    let best = dir.join("best");
    let merged = dir.join("merged");
    if stage_done(&dir) {
        return Ok(cfg.sft_dir(out));
    }
    let device = rank_device(comm)?;
    let mut lm = CausalLm::load(base, device)?;
    if let (Some(lora), None) = (&cfg.lora, lm.lora()) {
        // A resumed SFT stage reloads its adapters with the checkpoint; a fresh one draws A
        // from the run's seed.
        tch::manual_seed(cfg.seed as i64 + 7);
        lm.attach_lora(lora)?;
    }
    let col = &data.collator;
    let to_data = |d: &[Demonstration], what: &str| -> anyhow::Result<LmData> {
        let pairs = col.tokenize_demonstrations(d)?;
        if comm.is_root() {
            crate::stage::warn_truncation(
                "sft",
                what,
                col.config().truncation_of_pairs(&pairs),
                col.config(),
                ("sft.max_prompt_tokens", "sft.max_response_tokens"),
            );
        }
        Ok(LmData::Demonstrations {
            pairs,
            collate: col.config().clone(),
        })
    };
    let train = to_data(&data.sft_train, "training demonstrations")?;
    let valid = to_data(&data.sft_valid, "validation demonstrations")?;
    let run = open_stage_dir(&dir, "sft", comm)?;
    if comm.is_root() {
        run.write_config(&cfg.sft)?;
    }
    train_lm(
        "sft",
        &mut lm,
        (&train, Some(&valid)),
        &cfg.sft,
        &run,
        None,
        comm,
    )?;
    if cfg.lora.is_some() {
        // Later stages start from plain weights: the best adapters folded in.
        if comm.is_root() {
            CausalLm::load(&best, device)?.save_merged(&merged)?;
        }
        finish_stage(&dir, serde_json::json!({"best": merged}), comm)?;
        return Ok(merged);
    }
    finish_stage(&dir, serde_json::json!({"best": best}), comm)?;
    Ok(best)
}
