//! The trainer takes any `Policy + Checkpointable + TrainingSwitches`: a model of another
//! architecture (a bigram table, defined here) trains, and resumes exactly from its own
//! checkpoint format.

mod common;
use common::*;
use rlhf_model::train::{AdamWConfig, MemoryMetrics};
use rlhf_model::{CheckpointMeta, Checkpointable, HeadKind, Policy, SaveDir, TrainingSwitches};
use rlhf_sft::{ResidualDropout, SftConfig, SftTrainer};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

const VOCAB: i64 = 40;

/// Next-token logits from the current token alone: one `[V, V]` table.
struct Bigram {
    vs: nn::VarStore,
    table: Tensor,
    meta: CheckpointMeta,
}

impl Bigram {
    fn new(seed: i64) -> Bigram {
        let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let table = vs.root().var(
            "table",
            &[VOCAB, VOCAB],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 0.1,
            },
        );
        Bigram {
            vs,
            table,
            meta: CheckpointMeta::new(HeadKind::Lm),
        }
    }

    fn weights(&self) -> Vec<f32> {
        Vec::<f32>::try_from(self.table.flatten(0, -1)).unwrap()
    }
}

impl Policy for Bigram {
    fn logits(&self, ids: &Tensor, _mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        Ok(self.table.index_select(0, &ids.flatten(0, -1)).view([
            ids.size()[0],
            ids.size()[1],
            VOCAB,
        ]))
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl SaveDir for Bigram {
    fn save_dir(&self, dir: &Path) -> rlhf_model::Result<()> {
        self.save_with_extras(dir, vec![])
    }
}

impl Checkpointable for Bigram {
    fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut CheckpointMeta {
        &mut self.meta
    }

    fn save_with_extras(&self, dir: &Path, extras: Vec<(&str, Vec<u8>)>) -> rlhf_model::Result<()> {
        // Not atomic: enough for a test (the library's models write through rlhf-io).
        std::fs::create_dir_all(dir).unwrap();
        self.vs.save(dir.join("bigram.safetensors")).unwrap();
        std::fs::write(dir.join("step"), self.meta.step.to_string()).unwrap();
        for (name, bytes) in extras {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        Ok(())
    }

    fn restore_from(&mut self, dir: &Path) -> rlhf_model::Result<()> {
        self.vs.load(dir.join("bigram.safetensors")).unwrap();
        self.meta.step = std::fs::read_to_string(dir.join("step"))
            .unwrap()
            .parse()
            .unwrap();
        Ok(())
    }
}

/// No dropout and no autocast: the trait's defaults.
impl TrainingSwitches for Bigram {}

fn cfg() -> SftConfig {
    SftConfig {
        epochs: 3,
        batch_size: 8,
        grad_accum_steps: 2,
        optimizer: AdamWConfig {
            lr: 0.05,
            ..Default::default()
        },
        warmup_steps: 2,
        save_every_steps: Some(2),
        seed: 3,
        ..Default::default()
    }
}

#[test]
fn a_custom_architecture_trains_and_resumes_exactly() {
    // 40 demonstrations, batches of 8, 2 micro-batches per step: 3 steps per epoch, 9 in all.
    let train = reverse_demos(40, 5);
    let valid = reverse_demos(16, 6);
    let dir = tempfile::tempdir().unwrap();

    let mut full = Bigram::new(1);
    let mut m = MemoryMetrics::default();
    let report = SftTrainer::new(cfg(), &mut m)
        .unwrap()
        .output_dir(dir.path().join("full"))
        .train(&mut full, &train, Some(&valid))
        .unwrap();
    let first = report.epochs[0].valid_loss.unwrap();
    let last = report.epochs.last().unwrap().valid_loss.unwrap();
    assert!(last < first - 0.1, "validation loss {first} -> {last}");
    assert!(dir.path().join("full/best/bigram.safetensors").exists());

    // Stop after step 5 (state saved at step 4), resume into a model of another
    // initialization: the same weights as the uninterrupted run, bit for bit.
    let run = dir.path().join("interrupted");
    let mut a = Bigram::new(1);
    let mut m1 = MemoryMetrics::default();
    SftTrainer::new(cfg(), &mut m1)
        .unwrap()
        .output_dir(&run)
        .stop_after(5)
        .train(&mut a, &train, Some(&valid))
        .unwrap();
    let mut b = Bigram::new(77);
    let mut m2 = MemoryMetrics::default();
    let resumed = SftTrainer::new(cfg(), &mut m2)
        .unwrap()
        .output_dir(&run)
        .train(&mut b, &train, Some(&valid))
        .unwrap();
    assert_eq!(resumed, report);
    assert!(b.weights() == full.weights(), "resumed weights differ");
    assert_eq!(b.meta.step, 9);
    assert_eq!(b.table.kind(), Kind::Float);
}

#[test]
fn switches_a_custom_model_lacks_are_errors() {
    let train = reverse_demos(8, 5);
    for (c, want) in [
        (
            SftConfig {
                residual_dropout: ResidualDropout::Rate(0.2),
                ..cfg()
            },
            "no residual dropout",
        ),
        (
            SftConfig {
                bf16_autocast: true,
                ..cfg()
            },
            "autocast",
        ),
    ] {
        let mut m = MemoryMetrics::default();
        let err = SftTrainer::new(c, &mut m)
            .unwrap()
            .train(&mut Bigram::new(1), &train, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}
