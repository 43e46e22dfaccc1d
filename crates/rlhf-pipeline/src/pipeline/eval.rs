//! Evaluation: every model against SFT on held-out users' prompts, judged by held-out labelers.

use super::*;

/// Evaluates named policies on held-out prompts against the SFT model.
pub fn evaluate_models(
    cfg: &PipelineConfig,
    data: &PipelineData,
    judges: &LabelerPool,
    models: &[(&str, &CausalLm)],
    sft: &CausalLm,
    report: &mut PipelineReport,
) -> anyhow::Result<EvalAnswers> {
    let col = &data.collator;
    // The base model is prompted with labeler demonstrations (the only answers the pipeline
    // has), habits included.
    let shots = rlhf_toy::eval::Shot::from_demonstrations(&data.sft_train, 64);
    anyhow::ensure!(
        !shots.is_empty(),
        "no demonstration to prompt the base model with"
    );
    let ev = EvalPrompts::new(&data.world.heldout_prompts, &shots, cfg.eval_prompts, col)
        .context("building the evaluation prompts")?;
    let heldout: Vec<&str> = data
        .world
        .heldout_pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let heldout = LmData::Blocks(col.pack_texts(&heldout, cfg.block_len)?);
    let n = cfg.max_new_tokens;
    // Every model's answers use the same sampler seed (the table's models see the same draws
    // of randomness); SFT's are its answers to the same prompts.
    let decode_seed = (!cfg.eval_greedy).then_some(cfg.seed + 41);
    let sft_answers = answers(sft, &ev.prompts, col, n, decode_seed, cfg.gen_batch)?;
    let mut judged = EvalAnswers {
        prompts: data.world.heldout_prompts[..ev.tasks.len()].to_vec(),
        answers: vec![],
        baseline: sft_answers.clone(),
    };
    for (name, model) in models {
        let prompts = if *name == "base" {
            &ev.few_shot
        } else {
            &ev.prompts
        };
        let ans = answers(*model, prompts, col, n, decode_seed, cfg.gen_batch)?;
        report
            .gold_score
            .insert(name.to_string(), mean_gold(&ev.tasks, &ans));
        report
            .conduct
            .insert(name.to_string(), conduct_stats(&ev.tasks, &ans));
        let greedy = if cfg.eval_greedy {
            ans.clone()
        } else {
            answers(*model, prompts, col, n, None, cfg.gen_batch)?
        };
        report
            .gold_score_greedy
            .insert(name.to_string(), mean_gold(&ev.tasks, &greedy));
        report.win_rate_vs_sft.insert(
            name.to_string(),
            win_rate(&ev.tasks, &ans, &sft_answers, judges, cfg.seed + 17),
        );
        let kl = kl_to_reference(*model, sft, prompts, col, n, cfg.seed + 29, cfg.gen_batch)?;
        report.kl_to_sft.insert(name.to_string(), kl);
        report
            .pretrain_loss
            .insert(name.to_string(), evaluate_loss(*model, &heldout, 64)?);
        let c = report.conduct[*name];
        tracing::info!(
            "[eval] {name}: gold {:.3} (greedy {:.3}), win rate vs SFT {:.3}, KL to SFT {:.2}, pretrain loss {:.3}; correctness {:.3}, filler {:.3}, sign-off {:.3}, broken constraint {:.3}",
            report.gold_score[*name], report.gold_score_greedy[*name], report.win_rate_vs_sft[*name], report.kl_to_sft[*name], report.pretrain_loss[*name],
            c.correctness, c.filler, c.sign_off, c.broken_constraint
        );
        judged.answers.push((name.to_string(), ans));
    }
    Ok(judged)
}

/// The answers the table judged: every evaluated model's (sampled, or greedy with
/// `eval_greedy`) answer to each held-out prompt. The base model answered the same task as a
/// few-shot prompt.
#[derive(Debug, Clone, Default)]
pub struct EvalAnswers {
    /// The held-out prompts, in order.
    pub prompts: Vec<PromptRecord>,
    /// Each model's answers to them, in the table's order.
    pub answers: Vec<(String, Vec<String>)>,
    /// The answers every win rate was judged against (the SFT model's, in a pipeline run).
    pub baseline: Vec<String>,
}

impl EvalAnswers {
    /// One JSON object per prompt and line: `{"id", "prompt", MODEL: answer, ...}`.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.prompts.iter().enumerate() {
            let mut row = serde_json::Map::new();
            row.insert("id".into(), p.id.clone().into());
            row.insert("prompt".into(), p.prompt.clone().into());
            for (name, ans) in &self.answers {
                row.insert(name.clone(), ans[i].clone().into());
            }
            out.push_str(&serde_json::Value::Object(row).to_string());
            out.push('\n');
        }
        out
    }

    /// The first `n` prompts with every model's answer, as a markdown section.
    pub fn to_markdown(&self, n: usize) -> String {
        let code = |t: &str| format!("`{}`", t.replace('`', "'").replace('\n', " "));
        let mut md = format!(
            "\n## Examples\n\nThe first {} held-out prompts and each model's answer, as judged \
             (every answer in `answers.jsonl`; the base model answered the task as a few-shot \
             prompt).\n",
            n.min(self.prompts.len())
        );
        for (i, p) in self.prompts.iter().take(n).enumerate() {
            md.push_str(&format!("\n{}\n\n", code(&p.prompt)));
            for (name, ans) in &self.answers {
                md.push_str(&format!("- {name}: {}\n", code(&ans[i])));
            }
        }
        md
    }
}
