//! Where W-GEN's time goes (benches/WORKLOAD.md): prefill vs decode, and the decode step's GEMMs
//! alone at the same shapes.
//!
//! `cargo run --release -p rlhf-benches --example gen_ab -- [rounds]`

use rlhf_model::generate::{sample_next, SamplerRng};
use rlhf_model::{CausalLm, GenerateConfig, Gpt2Config, KvCache, Policy};
use std::time::Instant;
use tch::{Kind, Tensor};

fn time<F: FnMut()>(mut f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(5, |s| s.parse().unwrap());
    let _guard = tch::no_grad_guard();
    let cfg = Gpt2Config::tiny().with_dropout(0.0);
    tch::manual_seed(0);
    let lm = CausalLm::new(&cfg, tch::Device::Cpu).unwrap();
    let (b, p, n) = (64i64, 64i64, 64i64);
    let prompts = Tensor::randint(8192, [b, p], (Kind::Int64, tch::Device::Cpu));
    let mask = prompts.ones_like();
    let gen = |n| GenerateConfig {
        max_new_tokens: n,
        seed: Some(0),
        ..Default::default()
    };
    let e = 256i64;
    let x = Tensor::randn([b, e], (Kind::Float, tch::Device::Cpu));
    let xi = Tensor::randn([b, 4 * e], (Kind::Float, tch::Device::Cpu));
    let w = |i, o| Tensor::randn([i, o], (Kind::Float, tch::Device::Cpu));
    let (wqkv, wo, wfc, wp) = (w(e, 3 * e), w(e, e), w(e, 4 * e), w(4 * e, e));
    let wte = Tensor::randn([8192, e], (Kind::Float, tch::Device::Cpu));
    for r in 0..rounds {
        let full = time(|| {
            lm.generate(&prompts, &mask, &gen(n)).unwrap();
        });
        let one = time(|| {
            lm.generate(&prompts, &mask, &gen(1)).unwrap();
        });
        let gemms = time(|| {
            let _g = tch::no_grad_guard();
            for _ in 0..n {
                for _ in 0..4 {
                    let _ = x.matmul(&wqkv);
                    let _ = x.matmul(&wo);
                    let _ = x.matmul(&wfc);
                    let _ = xi.matmul(&wp);
                }
                let _ = x.matmul(&wte.tr());
            }
        });
        let head = time(|| {
            for _ in 0..n {
                let _ = x.matmul(&wte.tr());
            }
        });
        // The same rollout by hand, each phase timed.
        let (mut t_pre, mut t_body, mut t_head, mut t_samp) = (0.0, 0.0, 0.0, 0.0);
        {
            let _g = tch::no_grad_guard();
            let mut cache = KvCache::new(lm.config(), b, p + n, Kind::Float, tch::Device::Cpu);
            let mut rng = SamplerRng::new(0);
            let g = gen(n);
            let t0 = Instant::now();
            let hs = lm
                .body()
                .forward(&prompts, None, Some(&mut cache), false)
                .unwrap();
            let mut h = hs.select(1, p - 1);
            t_pre += t0.elapsed().as_secs_f64();
            for _ in 0..n {
                let t0 = Instant::now();
                let logits = lm.lm_logits(&h);
                t_head += t0.elapsed().as_secs_f64();
                let t0 = Instant::now();
                let (tok, _lp) = sample_next(&logits, &g, &mut rng);
                t_samp += t0.elapsed().as_secs_f64();
                let t0 = Instant::now();
                h = lm
                    .body()
                    .forward(&tok.unsqueeze(1), None, Some(&mut cache), false)
                    .unwrap()
                    .select(1, 0);
                t_body += t0.elapsed().as_secs_f64();
            }
        }
        println!("  by hand: prefill {t_pre:.3}, body {t_body:.3}, head {t_head:.3}, sampling {t_samp:.3} = {:.3}", t_pre + t_body + t_head + t_samp);
        println!(
            "round {r}: full {full:.3} s, prefill+1 {one:.3} s, decode {:.3} s ({:.2} ms/step); decode GEMMs alone {gemms:.3} s (LM head {head:.3})",
            full - one,
            (full - one) / (n - 1) as f64 * 1e3
        );
    }
}
