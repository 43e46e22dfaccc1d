//! Evaluation on the toy world: greedy answers to held-out users' prompts, their gold score,
//! win rates judged by the simulated labelers (the paper's "win rate against SFT"), the KL to a
//! reference model, and the LM loss on held-out pretraining text.

use crate::{LabelerPool, ToyPrompt, ToyTask};
use anyhow::Context;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rlhf_data::collate::Collator;
use rlhf_data::records::PromptRecord;
use rlhf_model::{GenerateConfig, Policy};
use rlhf_sft::answer;
use tch::{Device, Kind, Tensor};

/// Held-out prompts with their tasks, tokenized as asked and as few-shot prompts (for the base
/// model, which has not learned to follow instructions).
#[derive(Debug, Clone)]
pub struct EvalPrompts {
    /// Task and constraint behind each prompt (for the gold score).
    pub tasks: Vec<ToyPrompt>,
    /// The prompts as users wrote them.
    pub prompts: Vec<Vec<u32>>,
    /// The same tasks as few-shot prompts (examples drawn from `shots`).
    pub few_shot: Vec<Vec<u32>>,
}

/// A few-shot example for the base model: a labeler demonstration, its task written as a
/// plain query (`reverse : a b c =>`) followed by the demonstrator's response, habits
/// included: the pipeline has no other answers to prompt with.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// The demonstration's task as a plain query.
    pub query: String,
    /// The demonstrator's response.
    pub response: String,
}

impl Shot {
    /// Shots from toy-world demonstrations (the first `n` whose prompt parses).
    pub fn from_demonstrations(demos: &[rlhf_data::records::Demonstration], n: usize) -> Vec<Shot> {
        demos
            .iter()
            .filter_map(|d| {
                let task = ToyTask::from_prompt(&d.prompt).ok()?;
                Some(Shot {
                    query: task.plain_prompt(),
                    response: d.response.clone(),
                })
            })
            .take(n)
            .collect()
    }
}

/// The base model's prompt for a task: `examples` as `query response ;` segments, then the
/// task's plain query, with the prompt's constraint (if any) in front. Examples are dropped
/// from the front while the prompt is over [`crate::TOY_MAX_PROMPT_TOKENS`].
pub fn few_shot_prompt(prompt: &ToyPrompt, examples: &[Shot]) -> String {
    let head = match prompt.constraint {
        Some(_) => format!("{} ", crate::ANSWER_ONLY_PREFIX.join(" ")),
        None => String::new(),
    };
    let query = prompt.task.plain_prompt();
    let mut start = 0;
    loop {
        let body: Vec<String> = examples[start..]
            .iter()
            .map(|e| format!("{} {} ;", e.query, e.response))
            .chain(std::iter::once(query.clone()))
            .collect();
        let text = format!("{head}{}", body.join(" "));
        if text.split_whitespace().count() <= crate::TOY_MAX_PROMPT_TOKENS
            || start == examples.len()
        {
            return text;
        }
        start += 1;
    }
}

impl EvalPrompts {
    /// The first `n` of `records` (toy-world prompts), with few-shot versions built from
    /// `shots` (three per prompt, in turn; see [`few_shot_prompt`]).
    pub fn new(
        records: &[PromptRecord],
        shots: &[Shot],
        n: usize,
        col: &Collator,
    ) -> anyhow::Result<Self> {
        let mut out = EvalPrompts {
            tasks: vec![],
            prompts: vec![],
            few_shot: vec![],
        };
        for (i, r) in records.iter().take(n).enumerate() {
            let prompt = ToyPrompt::parse(&r.prompt).with_context(|| format!("prompt {}", r.id))?;
            let examples: Vec<Shot> = (0..3)
                .map(|j| shots[(i * 3 + j) % shots.len()].clone())
                .collect();
            out.few_shot
                .push(col.encode(&few_shot_prompt(&prompt, &examples))?);
            out.prompts.push(col.encode(&r.prompt)?);
            out.tasks.push(prompt);
        }
        Ok(out)
    }
}

/// The model's answers to `prompts` (greedy, or sampled with `seed`), decoded up to EOS.
pub fn answers(
    policy: &dyn Policy,
    prompts: &[Vec<u32>],
    col: &Collator,
    max_new_tokens: i64,
    sample_seed: Option<u64>,
    batch: usize,
) -> anyhow::Result<Vec<String>> {
    let _g = tch::no_grad_guard();
    let cfg = col.config();
    let gen = GenerateConfig {
        max_new_tokens,
        do_sample: sample_seed.is_some(),
        seed: sample_seed,
        eos_token_id: Some(cfg.eos_id as i64),
        pad_token_id: cfg.pad_id as i64,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let (_, _, toks, mask) = answer(policy, chunk, cfg, &gen)?;
        let toks = toks.to_device(Device::Cpu);
        let mask = mask.to_device(Device::Cpu);
        for r in 0..chunk.len() as i64 {
            let n = mask.get(r).sum(Kind::Float).double_value(&[]) as usize;
            let ids: Vec<u32> = Vec::<i64>::try_from(toks.get(r))?
                .into_iter()
                .take(n)
                .filter(|&t| t != cfg.eos_id as i64)
                .map(|t| t as u32)
                .collect();
            out.push(col.decode(&ids)?);
        }
    }
    Ok(out)
}

/// Mean gold score of answers.
pub fn mean_gold(tasks: &[ToyPrompt], answers: &[String]) -> f64 {
    let s: f64 = tasks.iter().zip(answers).map(|(t, a)| t.gold(a)).sum();
    s / tasks.len().max(1) as f64
}

/// Where a model's gold score comes from: mean correctness and the shares of answers with each
/// habit the labelers dislike.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConductStats {
    /// Mean correctness (the correctness-only gold: habit words removed, no penalties).
    pub correctness: f64,
    /// Share of answers with a filler phrase.
    pub filler: f64,
    /// Share of answers with a sign-off.
    pub sign_off: f64,
    /// Share of answers to `answer only :` prompts that break the constraint.
    pub broken_constraint: f64,
}

/// [`ConductStats`] of answers.
pub fn conduct_stats(tasks: &[ToyPrompt], answers: &[String]) -> ConductStats {
    let mut s = ConductStats::default();
    let mut constrained = 0usize;
    for (t, a) in tasks.iter().zip(answers) {
        let j = t.judge(a);
        s.correctness += j.correctness;
        s.filler += f64::from(u8::from(j.filler));
        s.sign_off += f64::from(u8::from(j.sign_off));
        if t.constraint.is_some() {
            constrained += 1;
            s.broken_constraint += f64::from(u8::from(j.broke_constraint));
        }
    }
    let n = tasks.len().max(1) as f64;
    s.correctness /= n;
    s.filler /= n;
    s.sign_off /= n;
    s.broken_constraint /= constrained.max(1) as f64;
    s
}

/// How often a labeler (drawn at random per prompt) prefers `a` to `b`; identical answers count
/// half (a tie).
pub fn win_rate(
    tasks: &[ToyPrompt],
    a: &[String],
    b: &[String],
    pool: &LabelerPool,
    seed: u64,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut wins = 0.0;
    for ((t, x), y) in tasks.iter().zip(a).zip(b) {
        let labeler = pool.choose(&mut rng);
        wins += if x == y {
            0.5
        } else if labeler.prefers(t, x, y, &mut rng) {
            1.0
        } else {
            0.0
        };
    }
    wins / tasks.len().max(1) as f64
}

/// The expected value of [`win_rate`] over the labelers' draws: per prompt, the mean over the
/// pool's labelers of the probability that one prefers `a` to `b` (identical answers 0.5),
/// averaged over prompts. Free of the labelers' sampling noise (a win rate over 1,000 prompts
/// carries about 0.015 of it), so it shows what a set of answers is worth to these labelers.
pub fn expected_win_rate(
    tasks: &[ToyPrompt],
    a: &[String],
    b: &[String],
    pool: &LabelerPool,
) -> f64 {
    let total: f64 = tasks
        .iter()
        .zip(a.iter().zip(b))
        .map(|(t, (x, y))| {
            if x == y {
                return 0.5;
            }
            let (gx, gy) = (t.gold(x), t.gold(y));
            pool.labelers
                .iter()
                .map(|l| l.preference_probability(gx, gy))
                .sum::<f64>()
                / pool.labelers.len().max(1) as f64
        })
        .sum();
    total / tasks.len().max(1) as f64
}

/// KL(policy || reference) per prompt: the sum over sampled response tokens of
/// `log pi(y_t) - log ref(y_t)` (k1), averaged over prompts; samples from the policy at
/// temperature 1.
pub fn kl_to_reference(
    policy: &dyn Policy,
    reference: &dyn Policy,
    prompts: &[Vec<u32>],
    col: &Collator,
    max_new_tokens: i64,
    seed: u64,
    batch: usize,
) -> anyhow::Result<f64> {
    let _g = tch::no_grad_guard();
    let cfg = col.config();
    let gen = GenerateConfig {
        max_new_tokens,
        seed: Some(seed),
        eos_token_id: Some(cfg.eos_id as i64),
        pad_token_id: cfg.pad_id as i64,
        ..Default::default()
    };
    let (mut total, mut n) = (0.0, 0usize);
    for (i, chunk) in prompts.chunks(batch.max(1)).enumerate() {
        let gen = GenerateConfig {
            seed: Some(seed + i as u64),
            ..gen.clone()
        };
        let (seq, seq_mask, toks, mask) = answer(policy, chunk, cfg, &gen)?;
        let r = toks.size()[1];
        let t = seq.size()[1];
        let lp = policy
            .token_log_probs(&seq, &seq_mask, 1.0, false)?
            .narrow(1, t - 1 - r, r);
        let lr = reference
            .token_log_probs(
                &seq.to_device(reference.device()),
                &seq_mask.to_device(reference.device()),
                1.0,
                false,
            )?
            .to_device(lp.device())
            .narrow(1, t - 1 - r, r);
        let kl: Tensor = ((lp - lr) * mask).sum(Kind::Double);
        total += kl.double_value(&[]);
        n += chunk.len();
    }
    Ok(total / n.max(1) as f64)
}

/// The gold score as a rule-based reward model (lives in `rlhf-reward`; re-exported here for
/// the pipeline's diagnostics).
pub use crate::rm::GoldReward;
