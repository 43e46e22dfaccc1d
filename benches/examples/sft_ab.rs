//! Interleaved A/B timings of the W-SFT step's pieces (benches/WORKLOAD.md), for a shared, noisy
//! machine: each round runs every variant once, in turn, and the report gives per-variant
//! medians and the median over rounds of each variant's time divided by the baseline's in the
//! same round.
//!
//! `cargo run --release -p rlhf-benches --example sft_ab -- <mode> <tiny|gpt2-small> [rounds]`
//! (`THREADS=n` sets libtorch's thread count; default all cores)
//!
//! - `head`: unembedding + loss, forward and backward, from a fixed hidden state.
//! - `adamw`: one optimizer step over the model's variables (gradients from one backward).
//! - `step`: the whole W-SFT step before this work (full logits, `logsumexp` loss, tensor-op
//!   AdamW, zero_grad + backward) and now.
//! - `grads`: zero_grad + backward vs fresh gradients (`AdamW::zero_grad_backward`).
//! - `malloc`: page faults and CPU time per step, default allocator vs `retain_freed_memory`.
//! - `profile`: only the current step (for `perf record`).
//! - `fraction`: the step's model FLOP rate over the matmul peak, both measured every round.
//! - `rows`: W-PPO's minibatch (16 rows of 64 prompt + 64 response tokens), the policy's
//!   forward and backward through the response logits, with the last block on every position
//!   (then narrowed) against the last block on the response positions only
//!   (`Body::forward_rows`); and the same for a last-token score (W-RM's rows).

use rlhf_model::train::{AdamW, AdamWConfig};
use rlhf_model::{CausalLm, Gpt2Config, Policy};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The loss before this work: every logit, `picked - logsumexp` (several passes in backward).
fn old_loss(logits: &Tensor, ids: &Tensor, loss_mask: &Tensor) -> Tensor {
    let t = ids.size()[1];
    let lg = logits.narrow(1, 0, t - 1).to_kind(Kind::Float);
    let targets = ids.narrow(1, 1, t - 1).unsqueeze(-1);
    let lp = lg.gather(-1, &targets, false).squeeze_dim(-1) - lg.logsumexp([-1], false);
    let m = loss_mask.narrow(1, 1, t - 1).to_kind(Kind::Float);
    let n = m.sum(Kind::Float).clamp_min(1.0);
    -(lp * &m).sum(Kind::Float) / n
}

/// (minor faults, user s, system s) of this process, from /proc/self/stat.
fn proc_stat() -> (u64, f64, f64) {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields after the name start at 3 (state): minflt is field 10, utime 14, stime 15.
    let n = |i: usize| f[i - 3].parse::<u64>().unwrap();
    (n(10), n(14) as f64 / 100.0, n(15) as f64 / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

type Variant<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn interleave(rounds: usize, variants: &mut [Variant<'_>]) {
    for (_, f) in variants.iter_mut() {
        f(); // warm-up
    }
    let mut times = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for (i, (name, f)) in variants.iter_mut().enumerate() {
            let t = Instant::now();
            f();
            let s = t.elapsed().as_secs_f64();
            eprintln!("round {r} {name}: {s:.4}s");
            times[i].push(s);
        }
    }
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratios: Vec<f64> = times[i].iter().zip(&times[0]).map(|(a, b)| a / b).collect();
        println!(
            "{name:>28}: median {:.4}s  ratio to {} (median of per-round ratios) {:.3}  min {:.4}s",
            median(times[i].clone()),
            variants[0].0,
            median(ratios),
            times[i].iter().cloned().fold(f64::MAX, f64::min),
        );
    }
}

fn main() {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = std::env::var("THREADS").map_or(cores, |t| t.parse().expect("THREADS"));
    tch::set_num_threads(threads as i32);
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("step", String::as_str).to_string();
    let size = args.get(2).map_or("tiny", String::as_str);
    let rounds: usize = args.get(3).map_or(5, |r| r.parse().expect("rounds"));
    let cfg = match size {
        "tiny" => Gpt2Config::tiny(),
        "gpt2-small" => Gpt2Config::gpt2_small(),
        other => panic!("unknown size {other}"),
    }
    .with_dropout(0.0);
    tch::manual_seed(0);
    let dev = Device::Cpu;
    let lm = CausalLm::new(&cfg, dev).unwrap();
    let (b, t) = (8i64, 256i64);
    let ids = Tensor::randint(cfg.vocab_size, [b, t], (Kind::Int64, dev));
    let mask = ids.ones_like();
    let loss_mask = Tensor::cat(
        &[
            Tensor::zeros([b, t / 2], (Kind::Float, dev)),
            Tensor::ones([b, t / 2], (Kind::Float, dev)),
        ],
        1,
    );
    println!(
        "{what} {size} threads {} rounds {rounds}",
        tch::get_num_threads()
    );
    match what.as_str() {
        "head" => {
            let hidden = tch::no_grad(|| lm.body().forward(&ids, None, None, false).unwrap())
                .detach()
                .set_requires_grad(true);
            let w = lm.body().token_embedding().shallow_clone();
            let (rows, targets) = rlhf_model::ops::selected_positions(&loss_mask, &ids);
            let zero = |h: &Tensor| {
                let mut h = h.shallow_clone();
                h.zero_grad();
                let mut w = w.shallow_clone();
                w.zero_grad();
            };
            let mut v: Vec<Variant> = vec![
                (
                    "full logits, logsumexp (old)",
                    Box::new(|| {
                        zero(&hidden);
                        old_loss(&lm.lm_logits(&hidden), &ids, &loss_mask).backward();
                    }),
                ),
                (
                    "full logits, log_softmax",
                    Box::new(|| {
                        zero(&hidden);
                        rlhf_sft::masked_lm_loss_from_logits(
                            &lm.lm_logits(&hidden),
                            &ids,
                            &loss_mask,
                        )
                        .backward();
                    }),
                ),
                (
                    "masked rows, log_softmax",
                    Box::new(|| {
                        zero(&hidden);
                        let h = hidden.reshape([-1, cfg.n_embd]).index_select(0, &rows);
                        let lp = rlhf_model::ops::log_probs_of(&lm.lm_logits(&h), &targets, 1.0);
                        (-lp.mean(Kind::Float)).backward();
                    }),
                ),
                (
                    "masked rows, logsumexp",
                    Box::new(|| {
                        zero(&hidden);
                        let h = hidden.reshape([-1, cfg.n_embd]).index_select(0, &rows);
                        let lg = lm.lm_logits(&h);
                        let lp = lg.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1)
                            - lg.logsumexp([-1], false);
                        (-lp.mean(Kind::Float)).backward();
                    }),
                ),
                (
                    "masked rows, cross_entropy",
                    Box::new(|| {
                        zero(&hidden);
                        let h = hidden.reshape([-1, cfg.n_embd]).index_select(0, &rows);
                        lm.lm_logits(&h)
                            .cross_entropy_loss::<Tensor>(
                                &targets,
                                None,
                                tch::Reduction::Mean,
                                -100,
                                0.0,
                            )
                            .backward();
                    }),
                ),
            ];
            interleave(rounds, &mut v);
        }
        "adamw" => {
            let loss = rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).unwrap();
            loss.backward();
            let cfg = AdamWConfig {
                lr: 1e-5,
                ..Default::default()
            };
            let mut a = AdamW::new(lm.var_store(), &cfg).unwrap();
            let mut b2 = AdamW::new(lm.var_store(), &cfg).unwrap();
            let mut v: Vec<Variant> = vec![
                ("tensor ops (old)", Box::new(|| a.step_tensor_ops())),
                ("fused", Box::new(|| b2.step())),
            ];
            interleave(rounds, &mut v);
        }
        "step" => {
            let ocfg = AdamWConfig {
                lr: 1e-5,
                ..Default::default()
            };
            let mut a = AdamW::new(lm.var_store(), &ocfg).unwrap();
            let mut b2 = AdamW::new(lm.var_store(), &ocfg).unwrap();
            let mut v: Vec<Variant> = vec![
                (
                    "old step",
                    Box::new(|| {
                        a.zero_grad();
                        let logits = lm.logits(&ids, &mask, true).unwrap();
                        old_loss(&logits, &ids, &loss_mask).backward();
                        a.step_tensor_ops();
                    }),
                ),
                (
                    "new step",
                    Box::new(|| {
                        let loss =
                            rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).unwrap();
                        b2.zero_grad_backward(&loss).unwrap();
                        b2.step();
                    }),
                ),
            ];
            interleave(rounds, &mut v);
        }
        "grads" => {
            // How much do zero_grad + accumulation into `.grad` cost, against autograd handing
            // the gradients back fresh (torch.autograd.grad)? With the allocator keeping freed
            // memory, as the trainer runs.
            rlhf_model::train::retain_freed_memory();
            let vars = lm.var_store().trainable_variables();
            let ocfg = AdamWConfig::default();
            let mut a = AdamW::new(lm.var_store(), &ocfg).unwrap();
            let mut b2 = AdamW::new(lm.var_store(), &ocfg).unwrap();
            let mut v: Vec<Variant> = vec![
                (
                    "zero_grad + backward",
                    Box::new(|| {
                        a.zero_grad();
                        rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true)
                            .unwrap()
                            .backward();
                    }),
                ),
                (
                    "run_backward (fresh grads)",
                    Box::new(|| {
                        let loss =
                            rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).unwrap();
                        let g = Tensor::run_backward(&[loss], &vars, false, false);
                        assert_eq!(g.len(), vars.len());
                    }),
                ),
                (
                    "AdamW::zero_grad_backward",
                    Box::new(|| {
                        let loss =
                            rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).unwrap();
                        b2.zero_grad_backward(&loss).unwrap();
                    }),
                ),
            ];
            interleave(rounds, &mut v);
        }
        "malloc" => {
            // Page faults and CPU time per step, default allocator settings then
            // `retain_freed_memory` (not interleavable: the setting stays for the process).
            let mut opt = AdamW::new(lm.var_store(), &AdamWConfig::default()).unwrap();
            let mut step = || {
                opt.zero_grad();
                rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true)
                    .unwrap()
                    .backward();
                opt.step();
            };
            step();
            for phase in ["default", "retain_freed_memory"] {
                if phase != "default" {
                    assert!(rlhf_model::train::retain_freed_memory());
                    step(); // the heap grows once
                }
                for _ in 0..rounds {
                    let (f0, u0, s0) = proc_stat();
                    let t = Instant::now();
                    step();
                    let wall = t.elapsed().as_secs_f64();
                    let (f1, u1, s1) = proc_stat();
                    println!(
                        "{phase:>20}: wall {wall:.3}s user {:.2}s sys {:.2}s minor faults {}",
                        u1 - u0,
                        s1 - s0,
                        f1 - f0
                    );
                }
            }
        }
        "profile" => {
            // Only the current step, `rounds` times (for `perf record`).
            rlhf_model::train::retain_freed_memory();
            let mut opt = AdamW::new(lm.var_store(), &AdamWConfig::default()).unwrap();
            for r in 0..=rounds {
                let t = Instant::now();
                let loss = rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).unwrap();
                opt.zero_grad_backward(&loss).unwrap();
                opt.step();
                println!("step {r}: {:.3}s", t.elapsed().as_secs_f64());
            }
        }
        "fraction" => {
            // The step's model FLOP rate over the matmul peak, each round measuring both
            // (2048^3 matmuls, as `bench --workload matmul`), so that the load of the moment
            // hits both alike. FLOPs: body + causal attention + the LM head on the loss rows,
            // as `bench --workload sft` counts them (`required`).
            rlhf_model::train::retain_freed_memory();
            let mut opt = AdamW::new(lm.var_store(), &AdamWConfig::default()).unwrap();
            let rows = f64::try_from(loss_mask.narrow(1, 1, t - 1).ne(0).sum(Kind::Float)).unwrap();
            let flops = 3.0
                * rlhf_model::flops::forward_flops(
                    &cfg,
                    (b * t) as f64,
                    (t as f64 + 1.0) / 2.0,
                    rows,
                );
            let a = Tensor::randn([2048, 2048], (Kind::Float, dev));
            let mut fr = vec![];
            for r in 0..=rounds {
                let t0 = Instant::now();
                tch::no_grad(|| {
                    for _ in 0..5 {
                        let _ = a.matmul(&a);
                    }
                });
                let peak = 5.0 * 2.0 * 2048f64.powi(3) / t0.elapsed().as_secs_f64() / 1e9;
                let t1 = Instant::now();
                let loss = rlhf_sft::masked_lm_loss(&lm, &ids, &mask, &loss_mask, true).unwrap();
                opt.zero_grad_backward(&loss).unwrap();
                opt.step();
                let secs = t1.elapsed().as_secs_f64();
                let achieved = flops / secs / 1e9;
                println!(
                    "round {r}: step {secs:.3}s {achieved:.1} GFLOP/s, peak {peak:.1} GFLOP/s, \
                     fraction {:.3}",
                    achieved / peak
                );
                if r > 0 {
                    fr.push(achieved / peak);
                }
            }
            println!("median fraction of peak {:.3}", median(fr));
        }
        "rows" => {
            let (b, t, n) = (16i64, 128i64, 64i64);
            let ids = Tensor::randint(cfg.vocab_size, [b, t], (Kind::Int64, dev));
            let w = lm.body().token_embedding().shallow_clone();
            // The loss only needs to touch every logit; the head is the same in both.
            let run = |rows: Option<std::ops::Range<i64>>, keep: std::ops::Range<i64>| {
                let h = lm.body().forward_rows(&ids, None, None, false, rows).unwrap();
                let h = if h.size()[1] == t {
                    h.narrow(1, keep.start, keep.end - keep.start)
                } else {
                    h
                };
                h.matmul(&w.tr())
                    .log_softmax(-1, Kind::Float)
                    .mean(Kind::Float)
                    .backward();
            };
            let resp = t - 1 - n..t - 1;
            let last = t - 1..t;
            let (r1, r2, r3) = (resp.clone(), resp.clone(), last.clone());
            interleave(
                rounds,
                &mut [
                    ("response, full last block", Box::new(|| run(None, r1.clone()))),
                    ("response, rows only", Box::new(|| run(Some(r2.clone()), r2.clone()))),
                    ("last token, full last block", Box::new(|| run(None, r3.clone()))),
                    ("last token, rows only", Box::new(|| run(Some(last.clone()), last.clone()))),
                ],
            );
        }
        other => panic!(
            "unknown comparison {other}: head, adamw, step, grads, malloc, profile, fraction or rows"
        ),
    }
}
