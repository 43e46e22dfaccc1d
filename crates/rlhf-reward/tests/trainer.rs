//! The trainer: forwards per prompt, accumulation, learning, normalization, checkpoints and
//! exact resumption.

mod common;
use common::*;
use rlhf_model::train::{AdamWConfig, MemoryMetrics, NoMetrics};
use rlhf_model::{
    CausalLm, CheckpointMeta, Checkpointable, RewardModel, SaveDir, ScalarModel, ValueFunction,
};
use rlhf_reward::model::TrainableRewardModel;
use rlhf_reward::trainer::{epoch_order, read_state, RankingData, RewardTrainConfig};
use rlhf_reward::{latest_checkpoint, RewardTrainer, SharedPromptBatch};
use std::cell::Cell;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Wraps a model and counts the sequences it is asked to forward.
struct Counting {
    inner: ScalarModel,
    full_rows: Cell<usize>,
    prompt_rows: Cell<usize>,
    response_rows: Cell<usize>,
    calls: Cell<usize>,
}

impl Counting {
    fn new(inner: ScalarModel) -> Self {
        Counting {
            inner,
            full_rows: Cell::new(0),
            prompt_rows: Cell::new(0),
            response_rows: Cell::new(0),
            calls: Cell::new(0),
        }
    }
}

impl TrainableRewardModel for Counting {
    fn forward_scores(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        train: bool,
    ) -> rlhf_reward::Result<Tensor> {
        self.calls.set(self.calls.get() + 1);
        self.full_rows
            .set(self.full_rows.get() + ids.size()[0] as usize);
        self.inner.forward_scores(ids, mask, train)
    }
    fn forward_shared_prompt(
        &self,
        b: &SharedPromptBatch,
        train: bool,
    ) -> Option<rlhf_reward::Result<Tensor>> {
        self.calls.set(self.calls.get() + 1);
        self.prompt_rows
            .set(self.prompt_rows.get() + b.num_prompts() as usize);
        self.response_rows
            .set(self.response_rows.get() + b.num_responses() as usize);
        self.inner.forward_shared_prompt(b, train)
    }
    fn var_store(&self) -> &nn::VarStore {
        ValueFunction::var_store(&self.inner)
    }
    fn uses_dropout(&self) -> bool {
        false
    }
}

impl SaveDir for Counting {
    fn save_dir(&self, dir: &Path) -> rlhf_model::Result<()> {
        self.inner.save_dir(dir)
    }
}

impl Checkpointable for Counting {
    fn meta(&self) -> &CheckpointMeta {
        self.inner.meta()
    }
    fn meta_mut(&mut self) -> &mut CheckpointMeta {
        self.inner.meta_mut()
    }
    fn save_with_extras(&self, dir: &Path, extras: Vec<(&str, Vec<u8>)>) -> rlhf_model::Result<()> {
        self.inner.save_with_extras(dir, extras)
    }
    fn restore_from(&mut self, dir: &Path) -> rlhf_model::Result<()> {
        self.inner.restore_from(dir)
    }
}

fn cfg(epochs: usize) -> RewardTrainConfig {
    RewardTrainConfig {
        epochs,
        batch_prompts: 4,
        optimizer: AdamWConfig {
            lr: 3e-3,
            ..AdamWConfig::default()
        },
        warmup_ratio: 0.0,
        ..Default::default()
    }
}

fn weights(m: &impl TrainableRewardModel) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = m.var_store().variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn max_weight_diff(a: &impl TrainableRewardModel, b: &impl TrainableRewardModel) -> f64 {
    weights(a)
        .iter()
        .zip(weights(b))
        .map(|((n1, x), (n2, y))| {
            assert_eq!(n1, &n2);
            max_abs_diff(x, &y)
        })
        .fold(0.0, f64::max)
}

#[test]
fn each_response_is_forwarded_once_per_epoch() {
    let groups = random_groups(10, &[4, 9, 2, 6], 1);
    let total_k: usize = groups.iter().map(|g| g.responses.len()).sum();
    for shared in [false, true] {
        let model = {
            let _g = lock();
            Counting::new(tiny_rm(0, 0.0))
        };
        let c = RewardTrainConfig {
            shared_prompt: shared,
            micro_batch_prompts: 3,
            ..cfg(1)
        };
        let mut t = RewardTrainer::new(model, c, collate(), groups.len()).unwrap();
        let mut sink = MemoryMetrics::default();
        t.fit(&groups, None, &mut sink, None, &mut |_, _, _| {})
            .unwrap();
        let m = t.model();
        if shared {
            // K responses per prompt, and each prompt once.
            assert_eq!(m.response_rows.get(), total_k);
            assert_eq!(m.prompt_rows.get(), groups.len());
            assert_eq!(m.full_rows.get(), 0);
        } else {
            assert_eq!(m.full_rows.get(), total_k);
            assert_eq!(m.response_rows.get(), 0);
        }
        // 3 steps of 4 + 4 + 2 prompts, micro-batches of at most 3 prompts: 2 + 2 + 1 calls.
        assert_eq!(m.calls.get(), 5);
        assert_eq!(t.state().step, 3);
        let logged: f64 = sink.series("rm/sequences").iter().sum();
        let per_prompt = if shared { 1 } else { 0 };
        assert_eq!(logged as usize, total_k + per_prompt * groups.len());
    }
}

#[test]
fn gradient_accumulation_matches_one_big_batch() {
    let groups = random_groups(8, &[3, 5, 2], 2);
    let run = |micro: usize| {
        let model = {
            let _g = lock();
            tiny_rm(1, 0.0)
        };
        let c = RewardTrainConfig {
            micro_batch_prompts: micro,
            batch_prompts: 8,
            max_grad_norm: 0.0,
            ..cfg(1)
        };
        let mut t = RewardTrainer::new(model, c, collate(), groups.len()).unwrap();
        let rep = t.train_step(&groups).unwrap();
        // The gradients of the step are still there after the update.
        let grads: Vec<Tensor> = weights(t.model())
            .iter()
            .map(|(_, v)| v.grad().copy())
            .collect();
        (rep, grads)
    };
    let (whole, g_whole) = run(0);
    let (micro, g_micro) = run(3);
    assert!((whole.stats.loss() - micro.stats.loss()).abs() < 1e-6);
    assert_eq!(whole.stats.total.pairs, micro.stats.total.pairs);
    assert!((whole.grad_norm - micro.grad_norm).abs() < 1e-5 * whole.grad_norm);
    assert!(whole.grad_norm > 1e-3);
    for (a, b) in g_whole.iter().zip(&g_micro) {
        let d = max_abs_diff(a, b);
        assert!(
            d < 1e-5 * whole.grad_norm.max(1.0),
            "accumulated gradient differs by {d}"
        );
    }
    // The batch loss weighs each prompt equally whatever the micro-batching: with only the
    // first micro-batch the gradient would be a different one.
    let (_, g_part) = {
        let model = {
            let _g = lock();
            tiny_rm(1, 0.0)
        };
        let mut t = RewardTrainer::new(model, cfg(1), collate(), 3).unwrap();
        t.train_step(&groups[..3]).unwrap();
        (
            (),
            weights(t.model())
                .iter()
                .map(|(_, v)| v.grad().copy())
                .collect::<Vec<_>>(),
        )
    };
    let d: f64 = g_whole
        .iter()
        .zip(&g_part)
        .map(|(a, b)| max_abs_diff(a, b))
        .fold(0.0, f64::max);
    assert!(d > 1e-4);
}

#[test]
fn learns_a_learnable_ranking_and_reports_per_k_metrics() {
    let train = learnable_groups(96, 3);
    let valid = RankingData {
        groups: learnable_groups(32, 4),
        gold: None,
    };
    let model = {
        let _g = lock();
        tiny_rm(2, 0.0)
    };
    let c = RewardTrainConfig {
        epochs: 4,
        batch_prompts: 8,
        optimizer: AdamWConfig {
            lr: 3e-3,
            ..AdamWConfig::default()
        },
        ..Default::default()
    };
    let mut t = RewardTrainer::new(model, c, collate(), train.len()).unwrap();
    let before = t.evaluate(&valid).unwrap();
    let mut sink = MemoryMetrics::default();
    let reports = t
        .fit(&train, Some(&valid), &mut sink, None, &mut |_, _, _| {})
        .unwrap();
    assert_eq!(reports.len(), 4);
    let after = reports.last().unwrap();
    assert!(
        after.stats.accuracy() > 0.85 && after.stats.accuracy() > before.stats.accuracy() + 0.2,
        "accuracy {} -> {}",
        before.stats.accuracy(),
        after.stats.accuracy()
    );
    assert!(after.stats.loss() < before.stats.loss());
    let keys: Vec<usize> = after.stats.per_k.keys().copied().collect();
    assert_eq!(keys, [2, 4, 5, 9]);
    assert_eq!(sink.series("val/accuracy").len(), 4);
    assert_eq!(sink.series("val/loss_k9").len(), 4);
    assert_eq!(sink.series("loss/rm").len() as u64, t.state().step);
    // The learning rate warms up, then decays to 10% of the peak.
    let lr = sink.series("rm/lr");
    assert!(
        lr[0] < lr[2] && (lr.last().unwrap() - 3e-4).abs() < 1e-4,
        "{lr:?}"
    );
}

#[test]
fn normalization_makes_demonstrations_score_zero_through_the_checkpoint() {
    let groups = random_groups(8, &[4], 5);
    let demos = demos(20, 6);
    let model = {
        let _g = lock();
        tiny_rm(3, 0.0)
    };
    let mut t = RewardTrainer::new(model, cfg(1), collate(), groups.len()).unwrap();
    t.fit(&groups, None, &mut NoMetrics, None, &mut |_, _, _| {})
        .unwrap();
    let n = t.normalize(&demos).unwrap();
    assert_eq!(n.demonstrations, 20);
    assert!(
        n.raw_mean.abs() > 1e-4,
        "raw mean already 0: {}",
        n.raw_mean
    );
    assert!((n.bias + n.raw_mean * n.gain).abs() < 1e-12);
    assert!((n.gain * n.raw_std - 1.0).abs() < 1e-9, "{n:?}");
    let dir = tempfile::tempdir().unwrap();
    t.model().save(dir.path().join("final")).unwrap();
    let back = ScalarModel::load(dir.path().join("final"), Device::Cpu).unwrap();
    assert!((back.meta().reward_bias - n.bias).abs() < 1e-12);
    assert!((back.meta().reward_gain - n.gain).abs() < 1e-12);
    let b = rlhf_data::collate::collate_sft(&demos, &collate()).unwrap();
    let shape = [b.batch as i64, b.seq_len as i64];
    let ids = Tensor::from_slice(&b.input_ids).view(shape);
    let mask = Tensor::from_slice(&b.attention_mask).view(shape);
    let s = tch::no_grad(|| back.score(&ids, &mask, false)).unwrap();
    let mean = s.mean(tch::Kind::Float).double_value(&[]);
    assert!(
        mean.abs() < 1e-5,
        "normalized demos score {mean} on average"
    );
    let std = s.std(false).double_value(&[]);
    assert!((std - 1.0).abs() < 1e-4, "normalized demos' std {std}");
}

/// With dropout on: an uninterrupted run equals one paused mid-epoch, resumed, paused at an
/// epoch boundary, resumed again — bit for bit.
#[test]
fn resume_continues_exactly() {
    let _g = lock(); // dropout reseeds libtorch's global generator
    let groups = random_groups(12, &[3, 4, 2], 7);
    let c = RewardTrainConfig {
        batch_prompts: 4,
        micro_batch_prompts: 2,
        ..cfg(2)
    };
    let dir = tempfile::tempdir().unwrap();

    let mut a = RewardTrainer::new(tiny_rm(4, 0.1), c.clone(), collate(), 12).unwrap();
    let mut sink_a = MemoryMetrics::default();
    a.fit(
        &groups,
        None,
        &mut sink_a,
        Some(&dir.path().join("a")),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(a.state().step, 6);
    assert!(dir.path().join("a/epoch-1").exists() && dir.path().join("a/epoch-2").exists());

    let run_b = dir.path().join("b");
    let mut b = RewardTrainer::new(tiny_rm(4, 0.1), c.clone(), collate(), 12).unwrap();
    let mut sink_b = MemoryMetrics::default();
    b.pause_at(Some(2));
    b.fit(&groups, None, &mut sink_b, Some(&run_b), &mut |_, _, _| {})
        .unwrap();
    drop(b);
    let ckpt = latest_checkpoint(&run_b).unwrap().unwrap();
    assert!(ckpt.ends_with("latest"), "{ckpt:?}");
    let st = read_state(&ckpt).unwrap();
    assert_eq!((st.epoch, st.batch_in_epoch, st.step), (0, 2, 2));

    let mut b = RewardTrainer::resume(&ckpt, Device::Cpu, c.clone(), collate(), 12).unwrap();
    b.pause_at(Some(3));
    b.fit(&groups, None, &mut sink_b, Some(&run_b), &mut |_, _, _| {})
        .unwrap();
    drop(b);
    let ckpt = latest_checkpoint(&run_b).unwrap().unwrap();
    assert!(ckpt.ends_with("epoch-1"), "{ckpt:?}");
    assert!(!run_b.join("latest").exists(), "stale latest/ kept");

    let mut b = RewardTrainer::resume(&ckpt, Device::Cpu, c.clone(), collate(), 12).unwrap();
    b.fit(&groups, None, &mut sink_b, Some(&run_b), &mut |_, _, _| {})
        .unwrap();
    assert_eq!(b.state().step, 6);
    assert_eq!(max_weight_diff(a.model(), b.model()), 0.0);
    assert_eq!(sink_a.series("loss/rm"), sink_b.series("loss/rm"));

    // Without reseeding, dropout would have made the runs differ: check dropout matters.
    let mut c2 = RewardTrainer::new(
        tiny_rm(4, 0.1),
        RewardTrainConfig {
            seed: 1,
            ..c.clone()
        },
        collate(),
        12,
    )
    .unwrap();
    c2.fit(&groups, None, &mut NoMetrics, None, &mut |_, _, _| {})
        .unwrap();
    assert!(max_weight_diff(a.model(), c2.model()) > 0.0);
}

#[test]
fn restore_rejects_a_changed_config_or_dataset_and_lm_checkpoints() {
    let groups = random_groups(4, &[3], 8);
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let _g = lock();
        tiny_rm(5, 0.0)
    };
    let mut t = RewardTrainer::new(model, cfg(1), collate(), 4).unwrap();
    t.fit(
        &groups,
        None,
        &mut NoMetrics,
        Some(dir.path()),
        &mut |_, _, _| {},
    )
    .unwrap();
    let ckpt = dir.path().join("epoch-1");
    let e = RewardTrainer::resume(
        &ckpt,
        Device::Cpu,
        RewardTrainConfig {
            optimizer: AdamWConfig {
                lr: 1.0,
                ..AdamWConfig::default()
            },
            ..cfg(1)
        },
        collate(),
        4,
    )
    .unwrap_err();
    assert!(e.to_string().contains("optimizer (run: "), "{e}");
    let e = RewardTrainer::resume(&ckpt, Device::Cpu, cfg(1), collate(), 5).unwrap_err();
    assert!(e.to_string().contains("trained on 4 prompts"), "{e}");
    // An LM checkpoint is not a reward checkpoint.
    let lm = {
        let _g = lock();
        tch::manual_seed(0);
        CausalLm::new(&tiny_config(0.0), Device::Cpu).unwrap()
    };
    lm.save(dir.path().join("lm")).unwrap();
    let e = RewardTrainer::resume(&dir.path().join("lm"), Device::Cpu, cfg(1), collate(), 4)
        .unwrap_err();
    assert!(e.to_string().contains("language-model checkpoint"), "{e}");
    // The resumed trainer picks up where the run ended.
    let t = RewardTrainer::resume(&ckpt, Device::Cpu, cfg(1), collate(), 4).unwrap();
    assert!(t.finished());
}

#[test]
fn bad_configs_and_rankings_are_errors() {
    let model = {
        let _g = lock();
        tiny_rm(6, 0.0)
    };
    let bad = RewardTrainConfig {
        micro_batch_prompts: 9,
        batch_prompts: 4,
        ..Default::default()
    };
    let e = RewardTrainer::new(model, bad, collate(), 4).unwrap_err();
    assert!(e.to_string().contains("micro_batch_prompts (9)"), "{e}");
    let model = {
        let _g = lock();
        tiny_rm(6, 0.0)
    };
    let mut groups = random_groups(4, &[3], 9);
    groups[2].responses.truncate(1);
    groups[2].ranking = vec![0];
    let mut t = RewardTrainer::new(model, cfg(1), collate(), 4).unwrap();
    let e = t
        .fit(&groups, None, &mut NoMetrics, None, &mut |_, _, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("training ranking 2"), "{e}");
    assert!(e.to_string().contains("K >= 2"), "{e}");
}

#[test]
fn epoch_orders_are_seeded_permutations() {
    let a = epoch_order(50, 3, 0);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(50, 3, 0));
    assert_ne!(a, epoch_order(50, 3, 1));
    assert_ne!(a, epoch_order(50, 4, 0));
}
