//! Resuming from the output directory continues exactly (own test binary: dropout draws from
//! libtorch's global generator).

mod common;
use common::*;
use rlhf_model::train::{AdamWConfig, MemoryMetrics};
use rlhf_model::{CausalLm, Policy};
use rlhf_sft::{ResidualDropout, SftConfig, SftTrainer};

fn cfg() -> SftConfig {
    SftConfig {
        epochs: 3,
        batch_size: 8,
        grad_accum_steps: 2,
        residual_dropout: ResidualDropout::Rate(0.2),
        optimizer: AdamWConfig {
            lr: 2e-3,
            weight_decay: 0.1,
            ..Default::default()
        },
        warmup_steps: 2,
        save_every_steps: Some(2),
        seed: 9,
        ..Default::default()
    }
}

fn weights(lm: &CausalLm) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<_> = lm
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn interrupted_and_resumed_training_equals_uninterrupted() {
    // 40 demonstrations, batches of 8, 2 micro-batches per step: 3 steps per epoch, 9 in all.
    let train = reverse_demos(40, 5);
    let valid = reverse_demos(16, 6);
    let dir = tempfile::tempdir().unwrap();

    let mut full = tiny_lm(1);
    let mut m = MemoryMetrics::default();
    let full_report = SftTrainer::new(cfg(), &mut m)
        .unwrap()
        .output_dir(dir.path().join("full"))
        .train(&mut full, &train, Some(&valid))
        .unwrap();
    assert_eq!(full_report.epochs.last().unwrap().step, 9);

    // Stop at step 5 (state saved at step 4, mid epoch 2), then at step 7 (saved at epoch 2's
    // end, step 6), then finish; every restart uses a fresh model of another initialization.
    let run = dir.path().join("interrupted");
    let mut first = tiny_lm(1);
    let mut m1 = MemoryMetrics::default();
    let partial = SftTrainer::new(cfg(), &mut m1)
        .unwrap()
        .output_dir(&run)
        .stop_after(5)
        .train(&mut first, &train, Some(&valid))
        .unwrap();
    assert_eq!(partial.epochs.len(), 1);
    for stop in [Some(7), None] {
        let mut again = tiny_lm(1234);
        let mut m2 = MemoryMetrics::default();
        let mut t = SftTrainer::new(cfg(), &mut m2).unwrap().output_dir(&run);
        if let Some(s) = stop {
            t = t.stop_after(s);
        }
        let report = t.train(&mut again, &train, Some(&valid)).unwrap();
        if stop.is_none() {
            assert_eq!(report, full_report);
            assert!(
                weights(&again) == weights(&full),
                "resumed weights differ from uninterrupted"
            );
            assert_eq!(again.meta().step, 9);
        }
    }

    // A different config cannot resume this run.
    let mut other = tiny_lm(1);
    let mut m3 = MemoryMetrics::default();
    let err = SftTrainer::new(SftConfig { seed: 10, ..cfg() }, &mut m3)
        .unwrap()
        .output_dir(&run)
        .train(&mut other, &train, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another config"), "{err}");
}
