//! The one PPO checkpoint layout (`rlhf_ppo::checkpoint`): save, find the newest, keep the
//! last `keep`, restore into a fresh trainer; and runs written in the pipeline's older layout
//! (`latest.json` + `ckpt-N/` in the run directory) are found and restored too.

mod common;
use common::*;
use rlhf_model::train::NoMetrics;
use rlhf_ppo::{PpoCheckpoints, PpoConfig, PpoModels, PpoTrainer, SpecialTokens};

fn trainer(
    seed: i64,
) -> PpoTrainer<rlhf_model::CausalLm, rlhf_model::CausalLm, CountReward, rlhf_model::ScalarModel> {
    let (policy, reference, _, value) = models(seed);
    let cfg = PpoConfig {
        batch_size: 4,
        minibatch_size: 2,
        ppo_epochs: 1,
        max_new_tokens: 4,
        lr_warmup_iterations: 0,
        ..PpoConfig::default()
    };
    let reward = CountReward {
        target: 3,
        prompt_len: PROMPT_LEN,
    };
    let m = PpoModels {
        policy,
        reference,
        reward,
        value,
    };
    PpoTrainer::new(cfg, m, SpecialTokens { eos: None, pad: 0 }).unwrap()
}

#[test]
fn save_find_prune_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let ck = PpoCheckpoints::new(&run);
    assert!(ck.latest().unwrap().is_none());
    let mut tr = trainer(1);
    let (ids, mask) = prompts(4, 2);
    for it in 1..=3u64 {
        tr.step(&ids, &mask, None, &mut NoMetrics).unwrap();
        let c = ck.save(&tr, 10 * it, 2).unwrap();
        assert_eq!(c.state.iteration, it);
    }
    let latest = ck.latest().unwrap().unwrap();
    assert_eq!(latest.state.iteration, 3);
    assert_eq!(latest.state.ptx_position, 30);
    assert_eq!(latest.state.kl_coef, tr.kl_coef());
    assert!(latest.policy().join("config.json").exists());
    assert!(latest.value().join("config.json").exists());
    // keep = 2: iteration 1 is gone.
    assert!(!ck.root().join("iter-000001").exists());
    assert!(ck.root().join("iter-000002").exists());
    let mut fresh = trainer(1);
    assert!(latest.restore(&mut fresh).unwrap().is_none());
    assert_eq!(fresh.iteration(), 3);

    // The pipeline's older layout: RUN/latest.json naming RUN/ckpt-N/.
    let old = tmp.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::rename(ck.root().join("iter-000003"), old.join("ckpt-000003")).unwrap();
    std::fs::write(
        old.join("latest.json"),
        r#"{"iteration": 3, "dir": "ckpt-000003", "ptx_position": 30}"#,
    )
    .unwrap();
    let legacy = PpoCheckpoints::new(&old).latest().unwrap().unwrap();
    assert_eq!(legacy.state.iteration, 3);
    assert_eq!(legacy.state.ptx_position, 30);
    assert_eq!(legacy.state.kl_coef, tr.kl_coef());
    let mut again = trainer(1);
    legacy.restore(&mut again).unwrap();
    assert_eq!(again.iteration(), 3);
    // Saving in an old run moves it to the new layout and removes the old checkpoint.
    again.step(&ids, &mask, None, &mut NoMetrics).unwrap();
    PpoCheckpoints::new(&old).save(&again, 40, 1).unwrap();
    assert!(!old.join("latest.json").exists());
    assert!(!old.join("ckpt-000003").exists());
    assert_eq!(
        PpoCheckpoints::new(&old)
            .latest()
            .unwrap()
            .unwrap()
            .state
            .iteration,
        4
    );
}

#[test]
fn a_damaged_latest_json_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("latest.json"), "{not json").unwrap();
    let e = PpoCheckpoints::new(tmp.path())
        .latest()
        .unwrap_err()
        .to_string();
    assert!(e.contains("latest.json") && e.contains("damaged"), "{e}");
}
