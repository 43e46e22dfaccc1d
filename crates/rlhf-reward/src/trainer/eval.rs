//! Evaluation of any trainable reward model on rankings, and the paper's normalization on demonstrations.

use super::*;

/// [`RewardTrainer::evaluate`] for any model.
pub fn evaluate<M: TrainableRewardModel + ?Sized>(
    model: &M,
    data: &RankingData,
    collate: &CollateConfig,
    cfg: &RewardTrainConfig,
) -> Result<EvalReport> {
    let _g = tch::no_grad_guard();
    if data.groups.is_empty() {
        return Err(RewardError::Input("no validation rankings".into()));
    }
    check_rankings(&data.groups, "validation")?;
    if let Some(gold) = &data.gold {
        if gold.len() != data.groups.len()
            || gold
                .iter()
                .zip(&data.groups)
                .any(|(g, r)| g.len() != r.responses.len())
        {
            return Err(RewardError::Input(
                "gold scores must have one entry per response of every validation group".into(),
            ));
        }
    }
    let device = model.var_store().device();
    let (bias, gain) = (model.meta().reward_bias, model.meta().reward_gain);
    let mut stats = RankingStats::default();
    let mut all = Vec::new();
    let (mut gold_correct, mut gold_pairs) = (0.0, 0usize);
    for (ci, chunk) in data.groups.chunks(cfg.eval_batch_prompts).enumerate() {
        let batch = collate_rewards(chunk, collate)?;
        let pairs = PairIndex::from_batch(&batch, device)?;
        let (scores, _) = score_batch(model, &batch, cfg.shared_prompt, false)?;
        let l = kwise_ranking_loss(&scores, &pairs)?;
        stats.add(&l, &pairs)?;
        let host = Vec::<f64>::try_from(scores.to_kind(Kind::Double))?;
        if let Some(gold) = &data.gold {
            let mut off = 0;
            for (gi, grp) in chunk.iter().enumerate() {
                let k = grp.responses.len();
                let g = &gold[ci * cfg.eval_batch_prompts + gi];
                let (c, n) = gold_agreement(&host[off..off + k], g);
                gold_correct += c;
                gold_pairs += n;
                off += k;
            }
        }
        all.extend(host.into_iter().map(|s| s * gain + bias));
    }
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    Ok(EvalReport {
        stats,
        gold_accuracy: (data.gold.is_some() && gold_pairs > 0)
            .then(|| gold_correct / gold_pairs as f64),
        gold_pairs,
        reward_mean: mean,
        reward_std: var.sqrt(),
    })
}

/// Raw scores (no bias) of prompt + demonstration rows, in order. Shapes: `[D]`.
pub fn score_demonstrations<M: TrainableRewardModel + ?Sized>(
    model: &M,
    demos: &[TokenizedPair],
    collate: &CollateConfig,
    batch_rows: usize,
) -> Result<Vec<f64>> {
    let _g = tch::no_grad_guard();
    let device = model.var_store().device();
    let mut out = Vec::with_capacity(demos.len());
    for chunk in demos.chunks(batch_rows.max(1)) {
        let b = collate_sft(chunk, collate)?;
        let ids = tensor_from(b.input_ids_2d(), device);
        let mask = tensor_from(b.attention_mask_2d(), device);
        let s = model.forward_scores(&ids, &mask, false)?;
        out.extend(Vec::<f64>::try_from(s.to_kind(Kind::Double))?);
    }
    Ok(out)
}

/// [`RewardTrainer::normalize`] for any model.
pub fn normalize<M: TrainableRewardModel + ?Sized>(
    model: &mut M,
    demos: &[TokenizedPair],
    collate: &CollateConfig,
    batch_rows: usize,
) -> Result<Normalization> {
    if demos.is_empty() {
        return Err(RewardError::Input(
            "normalization needs at least one demonstration".into(),
        ));
    }
    let raw = score_demonstrations(model, demos, collate, batch_rows)?;
    let n = raw.len() as f64;
    let mean = raw.iter().sum::<f64>() / n;
    let std = (raw.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
    // One demonstration (or identical scores) has no spread to scale by: keep the gain.
    let gain = if std > 1e-8 { 1.0 / std } else { 1.0 };
    let bias = -mean * gain;
    let meta = model.meta_mut();
    meta.reward_bias = bias;
    meta.reward_gain = gain;
    meta.extra.insert(
        "reward_normalization".into(),
        json!({"demonstrations": raw.len(), "raw_mean": mean, "raw_std": std}),
    );
    Ok(Normalization {
        bias,
        gain,
        demonstrations: raw.len(),
        raw_mean: mean,
        raw_std: std,
    })
}
