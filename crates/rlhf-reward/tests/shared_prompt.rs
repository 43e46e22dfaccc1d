//! Shared-prompt scoring equals scoring the full rows: values and gradients.

mod common;
use common::*;
use rlhf_data::collate::collate_rewards;
use rlhf_model::ValueFunction;
use rlhf_reward::{kwise_ranking_loss, PairIndex, SharedPromptBatch, SharedPromptScorer};
use tch::{Device, Tensor};

fn full_rows(b: &rlhf_data::collate::RewardBatch) -> (Tensor, Tensor) {
    let shape = [b.batch as i64, b.seq_len as i64];
    (
        Tensor::from_slice(&b.input_ids).view(shape),
        Tensor::from_slice(&b.attention_mask).view(shape),
    )
}

#[test]
fn shared_prompt_scores_and_gradients_equal_full_rows() {
    let model = {
        let _g = lock();
        let mut cfg = tiny_config(0.0);
        cfg.initializer_range = 0.2; // large weights: differences would show
        tch::manual_seed(3);
        rlhf_model::ScalarModel::new(&cfg, rlhf_model::HeadKind::Reward, Device::Cpu).unwrap()
    };
    let groups = random_groups(6, &[2, 4, 9, 3], 11);
    let batch = collate_rewards(&groups, &collate()).unwrap();
    let pairs = PairIndex::from_batch(&batch, Device::Cpu).unwrap();
    let (ids, mask) = full_rows(&batch);
    let vs = ValueFunction::var_store(&model);

    let full = model.score_raw(&ids, &mask, false).unwrap();
    kwise_ranking_loss(&full, &pairs).unwrap().loss.backward();
    let mut grads_full = Vec::new();
    for (name, v) in vs.variables() {
        grads_full.push((name, v.grad().copy()));
        let _ = v.grad().zero_();
    }

    let sb = SharedPromptBatch::from_reward_batch(&batch, Device::Cpu).unwrap();
    assert_eq!(sb.num_prompts(), 6);
    assert_eq!(sb.num_responses(), batch.batch as i64);
    let shared = SharedPromptScorer::of(&model)
        .unwrap()
        .scores(&sb, false)
        .unwrap();
    assert_eq!(shared.size(), [batch.batch as i64]);
    let d = max_abs_diff(&full, &shared);
    assert!(d < 1e-4, "scores differ by {d}");
    assert!(
        f64::try_from(full.std(true)).unwrap() > 0.05,
        "scores too uniform to compare"
    );
    kwise_ranking_loss(&shared, &pairs).unwrap().loss.backward();
    let vars = vs.variables();
    for (name, g_full) in grads_full {
        let g = vars[&name].grad();
        let scale = f64::try_from(g_full.abs().max()).unwrap().max(1e-3);
        let d = max_abs_diff(&g, &g_full) / scale;
        assert!(d < 1e-3, "gradient of {name} differs by {d} (relative)");
    }
}

#[test]
fn rows_of_a_group_must_share_the_prompt() {
    let groups = random_groups(2, &[3], 5);
    let mut batch = collate_rewards(&groups, &collate()).unwrap();
    let s = batch.seq_len;
    batch.input_ids[s] = (batch.input_ids[s] + 1) % VOCAB; // row 1, first prompt token
    let e = SharedPromptBatch::from_reward_batch(&batch, Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("do not share their prompt"), "{e}");
}
