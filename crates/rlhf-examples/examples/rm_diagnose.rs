//! What limits the toy world's reward model: the labelers' noise, or what the model can judge?
//!
//! `cargo run --release -p rlhf-examples --example rm_diagnose -- RUN_DIR [--labels gold]
//! [--epochs N] [--seed S]`
//!
//! RUN_DIR holds a finished pipeline run. The example trains a reward model exactly as the
//! run's first RM stage did (from the run's SFT model, the run's `[rm]` settings, on the run's
//! rankings of SFT samples, `RUN_DIR/rm/rankings.jsonl`), except for what it is told:
//!
//! - `--labels labelers` (default): the labelers' rankings as they are (this reproduces the
//!   run's RM, up to the seed of its scalar head);
//! - `--labels gold`: the same responses ranked by their gold score (noise-free labels; ties
//!   keep the labelers' order);
//! - `--epochs N`: that many epochs instead of the run's;
//! - `--init DIR`: the RM made from another LM (e.g. `RUN_DIR/large/sft/best`);
//! - `--max-rankings N`: the first N rankings only;
//! - `--pool sum|lik`: where the score comes from (see `--help`).
//!
//! and evaluates it on the run's validation rankings (`RUN_DIR/rm/valid_rankings.jsonl`, never
//! the evaluation's prompts) four ways:
//!
//! - `labelers`: pairwise accuracy against the labelers' rankings (the pipeline's RM accuracy);
//! - `gold order`: against the gold order of the same responses;
//! - `correctness`: the responses with their habit words deleted (deduplicated), against the
//!   order of their correctness: whether the RM can tell a right answer from a wrong one when
//!   conduct does not differ;
//! - `conduct`: each response that has a habit against the same answer without it: whether the
//!   RM sees what a habit costs.
//!
//! and, for comparison, the SFT model itself as a judge of the `correctness` groups: its
//! log-likelihood of each (habit-free) answer, summed over the answer's tokens and EOS (what
//! the generator "knows" about correctness, with no training on rankings).
//!
//! A diagnosis, not a setting: nothing in the pipeline is chosen with it.

use anyhow::Context;
use rlhf_data::collate::collate_sft;
use rlhf_data::records::{read_jsonl, Demonstration, Ranking, ReadOptions};
use rlhf_examples::pipeline::{prepare_data, PipelineConfig};
use rlhf_model::train::NoMetrics;
use rlhf_model::{CausalLm, Policy, ScalarModel};
use rlhf_reward::{gold_agreement, RankingData, RewardTrainer, TrainableRewardModel};
use rlhf_toy::{without_habits, ToyPrompt};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

#[path = "common/lik_rm.rs"]
#[allow(dead_code)]
mod lik_rm;
use lik_rm::LikRm;

#[derive(clap::Parser, Debug)]
#[command(
    about = "Trains the run's reward model on labeler or gold labels and measures what it judges"
)]
struct Args {
    /// A finished pipeline run.
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Training labels: `labelers` (the run's rankings) or `gold` (ranked by the gold score).
    #[arg(long, default_value = "labelers")]
    labels: String,
    /// RM epochs (default: the run's `[rm] epochs`).
    #[arg(long)]
    epochs: Option<usize>,
    /// Train on the first N rankings only (to see how accuracy grows with data).
    #[arg(long)]
    max_rankings: Option<usize>,
    /// The LM the RM is made from (default: the run's SFT model, `RUN_DIR/sft/best`).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Seed of the scalar head's initialization (the run's first RM stage used `seed + 303`).
    #[arg(long)]
    seed: Option<i64>,
    /// Where the score is read: `last` (the head at the last token, the pipeline's RM) or
    /// `sum` (the head summed over every real token: the prompt's part is the same for all of
    /// a prompt's responses, so the ranking loss sees the sum over the response) or `lik`
    /// (the last token's head plus a learned gain times the sequence's log-likelihood under
    /// the RM's own unembedding, kept from the SFT model and trained with it;
    /// `common/lik_rm.rs`).
    #[arg(long, default_value = "last")]
    pool: String,
    /// With `--pool lik`: the starting value of the learned gain on the log-likelihood.
    #[arg(long, default_value_t = 0.1)]
    lik_gain: f64,
}

/// The RM with its head summed over every real token instead of read at the last one.
struct SumPooled(ScalarModel);

impl rlhf_model::SaveDir for SumPooled {
    fn save_dir(&self, dir: &std::path::Path) -> rlhf_model::Result<()> {
        self.0.save_dir(dir)
    }
}

impl rlhf_model::Checkpointable for SumPooled {
    fn meta(&self) -> &rlhf_model::CheckpointMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut rlhf_model::CheckpointMeta {
        self.0.meta_mut()
    }
    fn save_with_extras(
        &self,
        dir: &std::path::Path,
        extras: Vec<(&str, Vec<u8>)>,
    ) -> rlhf_model::Result<()> {
        self.0.save_with_extras(dir, extras)
    }
    fn restore_from(&mut self, dir: &std::path::Path) -> rlhf_model::Result<()> {
        self.0.restore_from(dir)
    }
}

impl TrainableRewardModel for SumPooled {
    fn forward_scores(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> rlhf_reward::Result<Tensor> {
        let v = self.0.per_token(input_ids, attention_mask, train)?;
        Ok((v * attention_mask.to_kind(Kind::Float)).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Float,
        ))
    }
    fn var_store(&self) -> &tch::nn::VarStore {
        rlhf_model::ValueFunction::var_store(&self.0)
    }
    fn uses_dropout(&self) -> bool {
        TrainableRewardModel::uses_dropout(&self.0)
    }
}

/// Trains `model` on `train` and prints its validation accuracies.
fn train_and_report<M: TrainableRewardModel>(
    model: M,
    rm_cfg: &rlhf_reward::RewardTrainConfig,
    col: &rlhf_data::collate::Collator,
    train: &[rlhf_data::collate::TokenizedRanking],
    valid: &RankingData,
    what: &str,
) -> anyhow::Result<RewardTrainer<M>> {
    let mut trainer = RewardTrainer::new(model, rm_cfg.clone(), col.config().clone(), train.len())?;
    let t0 = std::time::Instant::now();
    trainer.fit(train, None, &mut NoMetrics, None, &mut |_, _, _| {})?;
    println!(
        "RM {what} on {} rankings, {} epoch(s), lr {}: trained in {:.0} s",
        train.len(),
        rm_cfg.epochs,
        rm_cfg.optimizer.lr,
        t0.elapsed().as_secs_f64()
    );
    let rep = trainer.evaluate(valid)?;
    println!(
        "validation, {} rankings: accuracy against the labelers {:.3}, against the gold order {:.3} ({} pairs)",
        valid.groups.len(),
        rep.stats.total.accuracy(),
        rep.gold_accuracy.unwrap_or(f64::NAN),
        rep.gold_pairs
    );
    Ok(trainer)
}

/// Each response's judgement under its prompt.
fn judged(r: &Ranking) -> anyhow::Result<(ToyPrompt, Vec<rlhf_toy::Judgement>)> {
    let p = ToyPrompt::parse(&r.prompt).with_context(|| format!("ranking {}", r.id))?;
    let j = r.responses.iter().map(|x| p.judge(x)).collect();
    Ok((p, j))
}

/// The ranking re-ordered by gold score, best first (a stable sort of the labelers' order).
fn by_gold(r: &Ranking) -> anyhow::Result<Ranking> {
    let (_, j) = judged(r)?;
    let mut order = r.ranking.clone();
    order.sort_by(|&a, &b| j[b].gold.total_cmp(&j[a].gold));
    Ok(Ranking {
        ranking: order,
        ..r.clone()
    })
}

/// Groups whose responses differ only in correctness (habit words deleted, duplicates dropped;
/// at least two distinct correctness values), each with its correctness as the "gold".
fn correctness_groups(valid: &[Ranking]) -> anyhow::Result<(Vec<Ranking>, Vec<Vec<f64>>)> {
    let (mut groups, mut gold) = (Vec::new(), Vec::new());
    for r in valid {
        let p = ToyPrompt::parse(&r.prompt)?;
        let mut responses: Vec<String> = Vec::new();
        for x in &r.responses {
            let s = without_habits(x);
            if !s.is_empty() && !responses.contains(&s) {
                responses.push(s);
            }
        }
        let c: Vec<f64> = responses.iter().map(|x| p.judge(x).correctness).collect();
        if responses.len() < 2 || c.iter().all(|&v| v == c[0]) {
            continue;
        }
        let mut ranking: Vec<usize> = (0..responses.len()).collect();
        ranking.sort_by(|&a, &b| c[b].total_cmp(&c[a]));
        groups.push(Ranking {
            id: r.id.clone(),
            user_id: r.user_id.clone(),
            prompt: r.prompt.clone(),
            responses,
            ranking,
        });
        gold.push(c);
    }
    Ok((groups, gold))
}

/// Pairs (the answer without its habits, the answer as written) for every response with a habit.
fn conduct_groups(valid: &[Ranking]) -> anyhow::Result<(Vec<Ranking>, Vec<Vec<f64>>)> {
    let (mut groups, mut gold) = (Vec::new(), Vec::new());
    for r in valid {
        let p = ToyPrompt::parse(&r.prompt)?;
        for (i, x) in r.responses.iter().enumerate() {
            let clean = without_habits(x);
            if clean == *x || clean.is_empty() {
                continue;
            }
            let g = vec![p.gold(&clean), p.gold(x)];
            groups.push(Ranking {
                id: format!("{}-{i}", r.id),
                user_id: r.user_id.clone(),
                prompt: r.prompt.clone(),
                responses: vec![clean, x.clone()],
                ranking: vec![0, 1],
            });
            gold.push(g);
        }
    }
    Ok((groups, gold))
}

/// The SFT model's log-likelihood of each response (its tokens and EOS), group by group.
fn likelihoods(
    lm: &CausalLm,
    groups: &[Ranking],
    col: &rlhf_data::collate::Collator,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let _g = tch::no_grad_guard();
    let mut out = Vec::with_capacity(groups.len());
    for r in groups {
        let demos: Vec<Demonstration> = r
            .responses
            .iter()
            .map(|x| Demonstration {
                id: r.id.clone(),
                user_id: r.user_id.clone(),
                prompt: r.prompt.clone(),
                response: x.clone(),
            })
            .collect();
        let b = collate_sft(&col.tokenize_demonstrations(&demos)?, col.config())?;
        let t = b.seq_len as i64;
        let shape = [b.batch as i64, t];
        let ids = Tensor::from_slice(&b.input_ids).view(shape);
        let mask = Tensor::from_slice(&b.attention_mask).view(shape);
        let target = Tensor::from_slice(&b.loss_mask)
            .view(shape)
            .narrow(1, 1, t - 1);
        let lp = lm.token_log_probs(&ids, &mask, 1.0, false)?;
        let sums = (lp * target).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        out.push(Vec::<f64>::try_from(sums)?);
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let run = args.run;
    let cfg = PipelineConfig::from_run(&run)?;
    anyhow::ensure!(cfg.lora.is_none(), "runs with LoRA are not supported here");
    let opts = ReadOptions::default();
    let train_r = read_jsonl::<Ranking>(run.join("rm/rankings.jsonl"), &opts)?.0;
    let valid_r = read_jsonl::<Ranking>(run.join("rm/valid_rankings.jsonl"), &opts)?.0;
    let mut train_r = train_r;
    if let Some(n) = args.max_rankings {
        train_r.truncate(n);
    }
    let train_r: Vec<Ranking> = match args.labels.as_str() {
        "labelers" => train_r,
        "gold" => train_r.iter().map(by_gold).collect::<anyhow::Result<_>>()?,
        other => anyhow::bail!("--labels must be labelers or gold, not {other:?}"),
    };
    let tmp = tempfile::tempdir()?;
    let data = prepare_data(&cfg, tmp.path())?;
    let col = &data.collator;
    let mut rm_cfg = cfg.rm.clone();
    if let Some(e) = args.epochs {
        rm_cfg.epochs = e;
    }
    let gold_of = |rs: &[Ranking]| -> anyhow::Result<Vec<Vec<f64>>> {
        rs.iter()
            .map(|r| Ok(judged(r)?.1.iter().map(|j| j.gold).collect()))
            .collect()
    };
    let valid = RankingData {
        groups: col.tokenize_rankings(&valid_r)?,
        gold: Some(gold_of(&valid_r)?),
    };
    let train = col.tokenize_rankings(&train_r)?;
    tch::manual_seed(args.seed.unwrap_or(cfg.seed as i64 + 303));
    let init = args.init.clone().unwrap_or_else(|| run.join("sft/best"));
    let model = ScalarModel::reward_from_lm(&init, Device::Cpu)?;
    let what = format!(
        "from {} ({} labels, pool {})",
        init.display(),
        args.labels,
        args.pool
    );
    match args.pool.as_str() {
        "last" => {
            let t = train_and_report(model, &rm_cfg, col, &train, &valid, &what)?;
            judge_groups(&t, &run, &valid_r, col)
        }
        "sum" => {
            let t = train_and_report(SumPooled(model), &rm_cfg, col, &train, &valid, &what)?;
            judge_groups(&t, &run, &valid_r, col)
        }
        "lik" => {
            let lm = CausalLm::load(&init, Device::Cpu)?;
            let t = train_and_report(
                LikRm::new(lm, args.lik_gain),
                &rm_cfg,
                col,
                &train,
                &valid,
                &what,
            )?;
            println!("learned gain: {:.4}", t.model().gain.double_value(&[0]));
            judge_groups(&t, &run, &valid_r, col)
        }
        other => anyhow::bail!("--pool must be last, sum or lik, not {other:?}"),
    }
}

/// The correctness and conduct measurements of a trained RM (and the SFT likelihood's).
fn judge_groups<M: TrainableRewardModel>(
    trainer: &RewardTrainer<M>,
    run: &std::path::Path,
    valid_r: &[Ranking],
    col: &rlhf_data::collate::Collator,
) -> anyhow::Result<()> {
    let (c_groups, c_gold) = correctness_groups(valid_r)?;
    let lm = CausalLm::load(run.join("sft/best"), Device::Cpu)?;
    let (mut agree, mut pairs) = (0.0, 0);
    for (s, g) in likelihoods(&lm, &c_groups, col)?.iter().zip(&c_gold) {
        let (a, n) = gold_agreement(s, g);
        agree += a;
        pairs += n;
    }
    println!(
        "correctness, the SFT model's likelihood as the judge: accuracy {:.3} over {pairs} pairs",
        agree / pairs.max(1) as f64
    );
    for (name, (groups, gold)) in [
        ("correctness", (c_groups, c_gold)),
        ("conduct", conduct_groups(valid_r)?),
    ] {
        let d = RankingData {
            groups: col.tokenize_rankings(&groups)?,
            gold: Some(gold),
        };
        let rep = trainer.evaluate(&d)?;
        println!(
            "{name}: accuracy {:.3} over {} pairs of {} groups",
            rep.gold_accuracy.unwrap_or(f64::NAN),
            rep.gold_pairs,
            groups.len()
        );
    }
    Ok(())
}
