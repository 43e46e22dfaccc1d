//! PPO and PPO-ptx on the toy world.
//!
//! Without checkpoints it makes its own starting point: a tiny GPT-2 pretrained briefly on the
//! toy pretraining corpus and fine-tuned on the demonstrations (SFT), and a rule-based reward
//! model that decodes each response with the toy tokenizer and scores it with the gold score
//! (the traits let any scorer stand in for a learned RM). With `--sft DIR --rm DIR` it uses the
//! checkpoints of the previous stages instead (value function from the RM).
//!
//! It then trains plain PPO and PPO-ptx from the same SFT model with the same seeds and prints,
//! on held-out users' prompts: the gold score of greedy and sampled answers, the KL to the SFT
//! model, and the LM loss on held-out pretraining text.
//!
//! `cargo run --release -p rlhf-toy --example toy_ppo -- [--iterations 60] [--lr 1e-4]
//! [--kl 0.02] [--ptx 1.0] [--threads N] [--users 800] [--pretrain-steps 1500]
//! [--sft-steps 400] [--sft-mix true|false] [--cache DIR] [--sft DIR --rm DIR]`
//! (`--cache DIR` keeps the self-made SFT model there and reuses it; `--help` lists the options).

use rlhf_data::collate::{collate_sft, pack_documents, CollateConfig, Collator, TokenizedPair};
use rlhf_model::train::{AdamWConfig, MemoryMetrics};
use rlhf_model::{
    CausalLm, GenerateConfig, Gpt2Config, LoadOptions, Policy, RewardModel, ScalarModel, Tokenizer,
};
use rlhf_ppo::data::{left_pad, prompt_indices};
use rlhf_ppo::{LmBatch, PackedPtx, PpoConfig, PpoModels, PpoTrainer, PtxSource, SpecialTokens};
use rlhf_toy::rm::GoldReward;
use rlhf_toy::{gold_score, toy_tokenizer, toy_vocab, ToyConfig, ToyTask, ToyWorld, TOY_EOS_ID};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const EOS: i64 = TOY_EOS_ID as i64;
const MAX_NEW: i64 = 24;

#[derive(clap::Parser, Debug)]
#[command(about = "PPO and PPO-ptx on the toy world, compared on held-out users' prompts")]
struct Args {
    /// PPO iterations of each run (PPO and PPO-ptx).
    #[arg(long, default_value_t = 60)]
    iterations: u64,
    /// Learning rate of the policy and of the value function.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// KL penalty coefficient (beta) against the SFT model.
    #[arg(long, default_value_t = 0.02)]
    kl: f64,
    /// Pretraining-loss coefficient (gamma) of the PPO-ptx run.
    #[arg(long, default_value_t = 1.0)]
    ptx: f64,
    /// Torch intra-op threads (default: libtorch's own choice).
    #[arg(long)]
    threads: Option<i32>,
    /// SFT checkpoint of the previous stage (with --rm; default: train a tiny one here).
    #[arg(long, value_name = "DIR", requires = "rm")]
    sft: Option<PathBuf>,
    /// Reward-model checkpoint of the previous stage (with --sft; default: the gold score).
    #[arg(long, value_name = "DIR", requires = "sft")]
    rm: Option<PathBuf>,
    /// Directory that keeps the self-made SFT model and reuses it on the next run.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Pretraining steps of the self-made model on the toy corpus.
    #[arg(long, default_value_t = 1500)]
    pretrain_steps: usize,
    /// SFT steps of the self-made model on the demonstrations.
    #[arg(long, default_value_t = 400)]
    sft_steps: usize,
    /// Training users of the toy world (the prompts and demonstrations come from them).
    #[arg(long, default_value_t = 800)]
    users: usize,
    /// Interleave a pretraining batch after every SFT batch of the self-made model.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sft_mix: bool,
}

fn lm_steps(
    model: &CausalLm,
    batches: &mut dyn FnMut(usize) -> LmBatch,
    steps: usize,
    lr: f64,
    label: &str,
) -> Res<()> {
    let mut opt = AdamWConfig {
        lr,
        weight_decay: 0.01,
        ..AdamWConfig::default()
    }
    .build(model.var_store())?;
    let t = Instant::now();
    let mut avg = 0.0;
    for s in 0..steps {
        let b = batches(s);
        let loss =
            rlhf_sft::masked_lm_loss(model, &b.input_ids, &b.attention_mask, &b.loss_mask, true)?;
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        avg = 0.98 * avg + 0.02 * loss.double_value(&[]);
        if (s + 1) % 500 == 0 || s + 1 == steps {
            eprintln!(
                "[{label}] step {}/{steps} loss {:.3} ({:.0}s)",
                s + 1,
                avg / (1.0 - 0.98f64.powi(s as i32 + 1)),
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// A tiny model pretrained on the toy corpus, then fine-tuned on the demonstrations.
fn make_sft(world: &ToyWorld, tok: &Tokenizer, dir: &Path, args: &Args) -> Res<()> {
    tch::manual_seed(0);
    let mut cfg = Gpt2Config::sized(3, 4, 128, toy_vocab().len() as i64, 128).with_dropout(0.1);
    cfg.eos_token_id = Some(EOS);
    cfg.bos_token_id = Some(EOS);
    cfg.pad_token_id = Some(EOS);
    let mut lm = CausalLm::new(&cfg, Device::Cpu)?;
    lm.set_tokenizer(tok.clone())?;
    let enc =
        |s: &str| -> Res<Vec<u32>> { Ok(tok.encode(s)?.into_iter().map(|x| x as u32).collect()) };
    let docs: Vec<Vec<u32>> = world
        .pretrain
        .iter()
        .map(|d| enc(&d.text))
        .collect::<Res<_>>()?;
    let blocks = pack_documents(&docs, 64, TOY_EOS_ID, TOY_EOS_ID)?;
    let mut src = PackedPtx::new(blocks, 32, 1)?;
    lm_steps(
        &lm,
        &mut |_| src.next_batch().expect("packed"),
        args.pretrain_steps,
        1e-3,
        "pretrain",
    )?;
    let pairs: Vec<TokenizedPair> = world
        .demonstrations
        .iter()
        .map(|d| {
            Ok(TokenizedPair {
                prompt: enc(&d.prompt)?,
                response: enc(&d.response)?,
            })
        })
        .collect::<Res<_>>()?;
    let ccfg = CollateConfig::new(TOY_EOS_ID, TOY_EOS_ID).with_limits(64, 32);
    let n = pairs.len();
    // With sft_mix, every other step is a pretraining batch: a tiny model forgets its
    // pretraining far faster than GPT-3 does during SFT.
    let every = if args.sft_mix { 2 } else { 1 };
    lm_steps(
        &lm,
        &mut |s| {
            if s % every == 1 {
                return src.next_batch().expect("packed");
            }
            let idx = prompt_indices(n, 32, (s / every) as u64, 2);
            let batch: Vec<TokenizedPair> = idx.iter().map(|&i| pairs[i].clone()).collect();
            LmBatch::from_sft(&collate_sft(&batch, &ccfg).expect("collate"))
        },
        args.sft_steps * every,
        3e-4,
        "sft",
    )?;
    lm.save(dir)?;
    Ok(())
}

/// Held-out evaluation of a policy.
struct Eval {
    gold_greedy: f64,
    gold_sampled: f64,
    kl_to_sft: f64,
    pretrain_loss: f64,
}

fn evaluate(
    policy: &CausalLm,
    sft: &CausalLm,
    prompts: &[(Vec<i64>, ToyTask)],
    heldout_text: &LmBatch,
    tok: &Tokenizer,
) -> Res<Eval> {
    let _g = tch::no_grad_guard();
    let rows: Vec<&[i64]> = prompts.iter().map(|(p, _)| p.as_slice()).collect();
    let (ids, mask) = left_pad(&rows, EOS)?;
    let gold = |do_sample: bool| -> Res<(f64, Tensor, Tensor)> {
        let gen = GenerateConfig {
            max_new_tokens: MAX_NEW,
            do_sample,
            eos_token_id: Some(EOS),
            pad_token_id: EOS,
            seed: Some(123),
            ..GenerateConfig::default()
        };
        let out = policy.generate(&ids, &mask, &gen)?;
        let mut total = 0.0;
        for (r, (_, task)) in prompts.iter().enumerate() {
            let toks: Vec<i64> = Vec::<i64>::try_from(out.tokens.get(r as i64))?
                .into_iter()
                .take_while(|&t| t != EOS)
                .collect();
            total += gold_score(task, &tok.decode(&toks, true)?);
        }
        Ok((total / prompts.len() as f64, out.tokens, out.mask))
    };
    let (gold_greedy, _, _) = gold(false)?;
    let (gold_sampled, toks, rmask) = gold(true)?;
    // KL(policy || SFT) per response (k1 summed over sampled tokens), averaged.
    let full = Tensor::cat(&[&ids, &toks], 1);
    let fmask = Tensor::cat(&[&mask, &rmask.to_kind(Kind::Int64)], 1);
    let p = ids.size()[1];
    let lp =
        rlhf_ppo::ops::response_log_probs(&policy.logits(&full, &fmask, false)?, &full, p, 1.0);
    let lq = rlhf_ppo::ops::response_log_probs(&sft.logits(&full, &fmask, false)?, &full, p, 1.0);
    let kl = rlhf_ppo::ops::masked_sum_rows(&(lp - lq), &rmask)
        .mean(Kind::Float)
        .double_value(&[]);
    let pretrain_loss = rlhf_sft::masked_lm_loss(
        policy,
        &heldout_text.input_ids,
        &heldout_text.attention_mask,
        &heldout_text.loss_mask,
        false,
    )?
    .double_value(&[]);
    Ok(Eval {
        gold_greedy,
        gold_sampled,
        kl_to_sft: kl,
        pretrain_loss,
    })
}

fn main() -> Res<()> {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let args = <Args as clap::Parser>::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let t0 = Instant::now();
    let world = ToyWorld::generate(&ToyConfig {
        num_users: args.users,
        heldout_users: 60,
        pretrain_docs: 3000,
        heldout_pretrain_docs: 200,
        ..ToyConfig::default()
    })?;
    let tok = Tokenizer::from_inner(toy_tokenizer());
    let collator = Collator::new(toy_tokenizer(), CollateConfig::new(TOY_EOS_ID, TOY_EOS_ID))?;
    let enc = |s: &str| -> Res<Vec<i64>> { Ok(tok.encode(s)?) };
    let train_prompts: Vec<(Vec<i64>, ToyTask)> = world
        .prompts
        .iter()
        .map(|p| Ok((enc(&p.prompt)?, ToyTask::from_prompt(&p.prompt)?)))
        .collect::<Res<_>>()?;
    let heldout: Vec<(Vec<i64>, ToyTask)> = world
        .heldout_prompts
        .iter()
        .take(256)
        .map(|p| Ok((enc(&p.prompt)?, ToyTask::from_prompt(&p.prompt)?)))
        .collect::<Res<_>>()?;
    let docs = |texts: &[rlhf_data::records::PretrainText]| -> Res<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|d| Ok(tok.encode(&d.text)?.into_iter().map(|x| x as u32).collect()))
            .collect()
    };
    let heldout_blocks =
        pack_documents(&docs(&world.heldout_pretrain)?, 64, TOY_EOS_ID, TOY_EOS_ID)?;
    let heldout_text = LmBatch::from_sft(&heldout_blocks.to_lm_batch());
    let ptx_blocks = pack_documents(&docs(&world.pretrain)?, 64, TOY_EOS_ID, TOY_EOS_ID)?;
    eprintln!(
        "[toy] {} training prompts, {} held-out prompts (other users), {} pretraining blocks",
        train_prompts.len(),
        heldout.len(),
        ptx_blocks.num_blocks
    );

    let (sft_dir, rm_dir) = match (&args.sft, &args.rm) {
        (Some(s), Some(r)) => (s.clone(), Some(r.clone())),
        _ => {
            let dir = args.cache.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("toy_ppo_sft_{}", std::process::id()))
            });
            if dir.join("model.safetensors").exists() {
                eprintln!("[toy] reusing the SFT model in {}", dir.display());
            } else {
                make_sft(&world, &tok, &dir, &args)?;
            }
            (dir, None)
        }
    };
    let sft = CausalLm::load(&sft_dir, Device::Cpu)?;
    let start = evaluate(&sft, &sft, &heldout, &heldout_text, &tok)?;
    eprintln!("[toy] SFT ready after {:.0}s", t0.elapsed().as_secs_f64());

    let mut rows = vec![("SFT".to_string(), start, Vec::new())];
    for (name, ptx_coef) in [("PPO", 0.0), ("PPO-ptx", args.ptx)] {
        let mut cfg = PpoConfig {
            batch_size: 64,
            minibatch_size: 16,
            ppo_epochs: 4,
            max_new_tokens: MAX_NEW,
            kl_coef: args.kl,
            ptx_coef,
            lr_warmup_iterations: 5,
            seed: 1,
            ..PpoConfig::default()
        };
        cfg.policy_optimizer.lr = args.lr;
        cfg.value_optimizer.lr = args.lr;
        // The same value-head initialization for both runs.
        tch::manual_seed(17);
        let policy = CausalLm::load(&sft_dir, LoadOptions::default())?;
        let mut reference = CausalLm::load(&sft_dir, LoadOptions::default())?;
        reference.var_store_mut().freeze();
        let mut metrics = MemoryMetrics::default();
        let mut ptx = PackedPtx::new(ptx_blocks.clone(), 16, 7)?;
        let t = Instant::now();
        let final_policy = match &rm_dir {
            None => {
                let reward = GoldReward::new(&world.prompts, &collator)?;
                let value = ScalarModel::reward_from_lm(&sft_dir, Device::Cpu)?;
                let models = PpoModels {
                    policy,
                    reference,
                    reward,
                    value,
                };
                run(
                    models,
                    &train_prompts,
                    &cfg,
                    args.iterations,
                    &mut ptx,
                    &mut metrics,
                    name,
                )?
            }
            Some(rm) => {
                let mut reward = ScalarModel::load(rm, Device::Cpu)?;
                reward.var_store_mut().freeze();
                let value = ScalarModel::value_from_reward(rm, Device::Cpu)?;
                let models = PpoModels {
                    policy,
                    reference,
                    reward,
                    value,
                };
                run(
                    models,
                    &train_prompts,
                    &cfg,
                    args.iterations,
                    &mut ptx,
                    &mut metrics,
                    name,
                )?
            }
        };
        eprintln!(
            "[toy] {name}: {} iterations in {:.0}s",
            args.iterations,
            t.elapsed().as_secs_f64()
        );
        let e = evaluate(&final_policy, &sft, &heldout, &heldout_text, &tok)?;
        rows.push((name.to_string(), e, metrics.series("objective/scores")));
    }

    println!(
        "held-out users' prompts (n = {}); reward during training = {}",
        heldout.len(),
        if rm_dir.is_some() {
            "the RM checkpoint"
        } else {
            "the gold score (rule-based RewardModel)"
        }
    );
    println!(
        "{:<8} {:>12} {:>13} {:>10} {:>14}",
        "model", "gold greedy", "gold sampled", "KL to SFT", "pretrain loss"
    );
    for (name, e, _) in &rows {
        println!(
            "{:<8} {:>12.3} {:>13.3} {:>10.2} {:>14.3}",
            name, e.gold_greedy, e.gold_sampled, e.kl_to_sft, e.pretrain_loss
        );
    }
    for (name, _, scores) in rows.iter().skip(1) {
        let k = scores.len().div_ceil(6).max(1);
        let pts: Vec<String> = scores
            .iter()
            .step_by(k)
            .map(|s| format!("{s:.3}"))
            .collect();
        println!(
            "{name} training reward every {k} iterations: {}",
            pts.join(" ")
        );
    }
    println!("total {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Trains `models` with PPO for `iterations` and returns the policy.
fn run<M: RewardModel>(
    models: PpoModels<CausalLm, CausalLm, M, ScalarModel>,
    prompts: &[(Vec<i64>, ToyTask)],
    cfg: &PpoConfig,
    iterations: u64,
    ptx: &mut PackedPtx,
    metrics: &mut MemoryMetrics,
    name: &str,
) -> Res<CausalLm> {
    let special = SpecialTokens {
        eos: Some(EOS),
        pad: EOS,
    };
    let mut tr = PpoTrainer::new(cfg.clone(), models, special)?;
    for it in 0..iterations {
        let idx = prompt_indices(prompts.len(), cfg.batch_size, it, cfg.seed);
        let rows: Vec<&[i64]> = idx.iter().map(|&i| prompts[i].0.as_slice()).collect();
        let (ids, mask) = left_pad(&rows, EOS)?;
        let src: Option<&mut dyn PtxSource> = if cfg.ptx_coef > 0.0 { Some(ptx) } else { None };
        let s = tr.step(&ids, &mask, src, metrics)?;
        if it % 10 == 0 || it + 1 == iterations {
            eprintln!(
                "[{name}] it {:>3} score {:.3} kl {:.2} approxkl {:.4} clipfrac {:.3} ev {:.2} ptx {:.3}",
                s.iteration, s.scores, s.kl, s.approx_kl, s.clipfrac, s.explained_variance, s.ptx_loss
            );
        }
    }
    Ok(tr.into_models().policy)
}
