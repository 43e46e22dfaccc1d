//! The supervised trainer and its loss.

mod common;
use common::*;
use proptest::prelude::*;
use rlhf_data::collate::pack_documents;
use rlhf_model::train::MemoryMetrics;
use rlhf_model::{CausalLm, Policy};
use rlhf_sft::{
    evaluate_loss, masked_lm_loss_from_logits, LmData, ResidualDropout, SftConfig, SftTrainer,
};
use tch::{Device, Kind, Tensor};

fn loop_loss(logits: &[f32], ids: &[i64], mask: &[f32], b: usize, t: usize, v: usize) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0.0f64);
    for i in 0..b {
        for j in 1..t {
            let m = mask[i * t + j] as f64;
            if m == 0.0 {
                continue;
            }
            let row = &logits[(i * t + j - 1) * v..(i * t + j) * v];
            let mx = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = mx + row.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln();
            sum += m * (lse - row[ids[i * t + j] as usize] as f64);
            n += m;
        }
    }
    if n == 0.0 {
        0.0
    } else {
        sum / n
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn masked_loss_matches_a_plain_loop(
        b in 1usize..4, t in 2usize..7, v in 2usize..9, seed in 0u64..1000,
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let logits: Vec<f32> = (0..b * t * v).map(|_| rng.gen_range(-4.0..4.0)).collect();
        let ids: Vec<i64> = (0..b * t).map(|_| rng.gen_range(0..v as i64)).collect();
        let mask: Vec<f32> = (0..b * t).map(|_| if rng.gen_bool(0.6) { 1.0 } else { 0.0 }).collect();
        let got = masked_lm_loss_from_logits(
            &Tensor::from_slice(&logits).view([b as i64, t as i64, v as i64]),
            &Tensor::from_slice(&ids).view([b as i64, t as i64]),
            &Tensor::from_slice(&mask).view([b as i64, t as i64]),
        ).double_value(&[]);
        let want = loop_loss(&logits, &ids, &mask, b, t, v);
        prop_assert!((got - want).abs() < 1e-4, "{} vs {}", got, want);
    }
}

#[test]
fn prompt_positions_get_no_gradient() {
    let logits = Tensor::randn([2, 6, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let ids = Tensor::randint(5, [2, 6], (Kind::Int64, Device::Cpu));
    // Tokens 1..=2 are prompt (masked), 3..=5 response.
    let mask = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 1., 0., 0., 0., 1., 1., 0.]).view([2, 6]);
    masked_lm_loss_from_logits(&logits, &ids, &mask).backward();
    let g = logits.grad().abs().sum_dim_intlist(-1, false, Kind::Float);
    // logits[:, t-1] predicts token t: positions 0 and 1 predict prompt tokens 1 and 2.
    for r in 0..2 {
        assert_eq!(g.double_value(&[r, 0]), 0.0);
        assert_eq!(g.double_value(&[r, 1]), 0.0);
        assert!(
            g.double_value(&[r, 2]) > 0.0,
            "position 2 predicts response token 3"
        );
    }
    assert_eq!(
        g.double_value(&[1, 5]),
        0.0,
        "a pad position predicts nothing"
    );
}

#[test]
fn sft_learns_the_task_and_changes_the_weights() {
    let mut lm = tiny_lm(0);
    let before = lm.var_store().variables()["transformer.h.0.attn.c_attn.weight"].copy();
    let train = reverse_demos(64, 1);
    let valid = reverse_demos(32, 2);
    let loss0 = evaluate_loss(&lm, &valid, 16).unwrap();
    let cfg = SftConfig {
        epochs: 15,
        batch_size: 16,
        residual_dropout: ResidualDropout::Rate(0.0),
        optimizer: rlhf_model::train::AdamWConfig {
            lr: 5e-3,
            ..Default::default()
        },
        warmup_steps: 2,
        ..Default::default()
    };
    let mut metrics = MemoryMetrics::default();
    let report = {
        let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        SftTrainer::new(cfg, &mut metrics)
            .unwrap()
            .train(&mut lm, &train, Some(&valid))
            .unwrap()
    };
    let loss1 = evaluate_loss(&lm, &valid, 16).unwrap();
    assert!(loss1 < 0.5 * loss0, "validation loss {loss0} -> {loss1}");
    assert_eq!(report.epochs.len(), 15);
    assert_eq!(report.selected_by, "valid_loss");
    let best = report
        .epochs
        .iter()
        .map(|e| e.valid_loss.unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        report.epochs[report.best_epoch - 1].valid_loss.unwrap(),
        best
    );
    let after = &lm.var_store().variables()["transformer.h.0.attn.c_attn.weight"];
    assert!(f64::try_from((after - before).abs().max()).unwrap() > 1e-3);
    assert_eq!(metrics.series("loss/train").len(), 15 * 4);
    assert_eq!(metrics.series("loss/valid").len(), 15);
}

#[test]
fn selector_picks_the_epoch_with_the_best_score() {
    let mut lm = tiny_lm(3);
    let train = reverse_demos(16, 3);
    let mut scores = vec![0.1, 0.9, 0.4].into_iter();
    let mut metrics = MemoryMetrics::default();
    let cfg = SftConfig {
        epochs: 3,
        batch_size: 8,
        ..Default::default()
    };
    let report = {
        let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        SftTrainer::new(cfg, &mut metrics)
            .unwrap()
            .selector(Box::new(move |_| Ok(scores.next().unwrap())))
            .train(&mut lm, &train, None)
            .unwrap()
    };
    assert_eq!(
        (report.best_epoch, report.selected_by.as_str()),
        (2, "rm_score")
    );
}

#[test]
fn pretraining_blocks_train_on_every_real_token() {
    let docs: Vec<Vec<u32>> = (0..20)
        .map(|i| {
            (0..(5 + i % 7))
                .map(|j| 3 + ((i + j) % 30) as u32)
                .collect()
        })
        .collect();
    let blocks = pack_documents(&docs, 16, 39, 39).unwrap();
    let data = LmData::Blocks(blocks.clone());
    let b = data.batch(&[0, blocks.num_blocks - 1]).unwrap();
    for r in 0..2 {
        let m = &b.attention_mask[r * 16..(r + 1) * 16];
        let l = &b.loss_mask[r * 16..(r + 1) * 16];
        assert_eq!(l[0], 0.0);
        for j in 1..16 {
            assert_eq!(l[j], m[j] as f32);
        }
    }
    let mut lm = tiny_lm(4);
    let loss0 = evaluate_loss(&lm, &data, 8).unwrap();
    let mut metrics = MemoryMetrics::default();
    let cfg = SftConfig {
        epochs: 4,
        batch_size: 4,
        residual_dropout: ResidualDropout::Off,
        optimizer: rlhf_model::train::AdamWConfig {
            lr: 3e-3,
            ..Default::default()
        },
        ..Default::default()
    };
    {
        let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        SftTrainer::new(cfg, &mut metrics)
            .unwrap()
            .train(&mut lm, &data, None)
            .unwrap();
    }
    assert!(evaluate_loss(&lm, &data, 8).unwrap() < loss0);
}

#[test]
fn bad_settings_are_errors_that_name_the_key() {
    let mut m = MemoryMetrics::default();
    for (cfg, needle) in [
        (
            SftConfig {
                epochs: 0,
                ..Default::default()
            },
            "epochs",
        ),
        (
            SftConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch_size",
        ),
        (
            SftConfig {
                grad_accum_steps: 0,
                ..Default::default()
            },
            "grad_accum_steps",
        ),
        (
            SftConfig {
                residual_dropout: ResidualDropout::Rate(1.5),
                ..Default::default()
            },
            "residual_dropout",
        ),
        (
            SftConfig {
                max_grad_norm: Some(-1.0),
                ..Default::default()
            },
            "max_grad_norm",
        ),
        (
            SftConfig {
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: -1.0,
                    ..Default::default()
                },
                ..Default::default()
            },
            "lr must be positive",
        ),
    ] {
        let err = SftTrainer::<CausalLm>::new(cfg, &mut m)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// `masked_lm_loss` (unembedding at the loss positions only) equals the loss of the full
/// logits, in value and in every gradient, with padding and fractional loss weights.
#[test]
fn masked_loss_of_a_policy_equals_the_full_logits_loss() {
    use rlhf_sft::masked_lm_loss;
    let lm = tiny_lm(5);
    let ids = Tensor::from_slice(&[
        1i64, 5, 7, 2, 9, 9, 39, 0, // right-padded
        1, 3, 4, 6, 2, 6, 4, 3, // full
    ])
    .view([2, 8]);
    let mask =
        Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]).view([2, 8]);
    let loss_mask = Tensor::from_slice(&[
        0f32, 0., 0., 0., 1., 1., 1., 0., 0., 0., 0., 0., 0., 0.5, 1., 1.,
    ])
    .view([2, 8]);
    let grads = |lm: &rlhf_model::CausalLm| -> std::collections::BTreeMap<String, Tensor> {
        lm.var_store()
            .variables()
            .into_iter()
            .map(|(n, v)| (n, v.grad().copy()))
            .collect()
    };
    let zero = |lm: &rlhf_model::CausalLm| {
        for mut v in lm.var_store().trainable_variables() {
            v.zero_grad();
        }
    };
    zero(&lm);
    let full =
        masked_lm_loss_from_logits(&lm.logits(&ids, &mask, false).unwrap(), &ids, &loss_mask);
    full.backward();
    let g_full = grads(&lm);
    zero(&lm);
    let masked = masked_lm_loss(&lm, &ids, &mask, &loss_mask, false).unwrap();
    masked.backward();
    let g_masked = grads(&lm);
    let (a, b) = (full.double_value(&[]), masked.double_value(&[]));
    assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    for ((name, x), (_, y)) in g_full.iter().zip(&g_masked) {
        let scale = f64::try_from(x.abs().max()).unwrap().max(1e-6);
        let d = f64::try_from((x - y).abs().max()).unwrap() / scale;
        assert!(d < 1e-4, "grad of {name} differs by {d} (relative)");
    }
    // Nothing selected: zero loss, as from the logits.
    let none = masked_lm_loss(&lm, &ids, &mask, &loss_mask.zeros_like(), false).unwrap();
    assert_eq!(none.double_value(&[]), 0.0);
}
