//! A small toy-world reward model (random-init body) learns the labelers' preferences: held-out
//! accuracy clearly above chance and below the noise ceiling. The full-size run that gets
//! within 5 points of the ceiling is `examples/toy_rm.rs`.

use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_model::train::{AdamWConfig, MemoryMetrics};
use rlhf_model::{Gpt2Config, HeadKind, ScalarModel};
use rlhf_reward::{RewardTrainConfig, RewardTrainer};
use rlhf_toy::rm::ToyRankings;
use rlhf_toy::{
    toy_tokenizer, LabelerConfig, LabelerPool, ToyConfig, ToyWorld, TOY_EOS_ID,
    TOY_MAX_PROMPT_TOKENS, TOY_MAX_RESPONSE_TOKENS,
};

#[test]
fn toy_rm_beats_chance_on_heldout_users() {
    // Small matmuls: one thread is as fast and does not oversubscribe a busy CI machine.
    tch::set_num_threads(1);
    let world = ToyWorld::generate(&ToyConfig {
        seed: 1,
        num_users: 200,
        heldout_users: 60,
        pretrain_docs: 10,
        heldout_pretrain_docs: 2,
        ..ToyConfig::default()
    })
    .unwrap();
    let pool = LabelerPool::calibrated(&LabelerConfig::default(), 1).unwrap();
    let data = ToyRankings::simulate(&world, &pool, 4, 9, 2).unwrap();
    assert!(
        data.ceiling > 0.7 && data.ceiling < 0.85,
        "{}",
        data.ceiling
    );
    assert!((data.ceiling - data.ceiling_realized).abs() < 0.03);

    let collate = CollateConfig::new(TOY_EOS_ID, TOY_EOS_ID)
        .with_limits(TOY_MAX_PROMPT_TOKENS, TOY_MAX_RESPONSE_TOKENS + 1);
    let collator = Collator::new(toy_tokenizer(), collate.clone()).unwrap();
    let train = data.train_tokens(&collator).unwrap();
    let valid = data.heldout_data(&collator).unwrap();
    let vocab = collator.tokenizer().get_vocab_size(true) as i64;
    let cfg = Gpt2Config::sized(2, 4, 64, vocab, 80).with_dropout(0.0);
    tch::manual_seed(0); // the only test of this file: no lock needed
    let model = ScalarModel::new(&cfg, HeadKind::Reward, tch::Device::Cpu).unwrap();
    let tcfg = RewardTrainConfig {
        epochs: 3,
        optimizer: AdamWConfig {
            lr: 2e-3,
            ..AdamWConfig::default()
        },
        batch_prompts: 16,
        ..Default::default()
    };
    let mut t = RewardTrainer::new(model, tcfg, collate, train.len()).unwrap();
    let before = t.evaluate(&valid).unwrap();
    let mut sink = MemoryMetrics::default();
    let reports = t
        .fit(&train, Some(&valid), &mut sink, None, &mut |_, _, _| {})
        .unwrap();
    let after = reports.last().unwrap();
    let acc = after.stats.accuracy();
    eprintln!(
        "toy RM: {} train / {} held-out rankings; accuracy {:.3} -> {acc:.3} (gold order {:.3}), \
         ceiling {:.3}",
        train.len(),
        valid.groups.len(),
        before.stats.accuracy(),
        after.gold_accuracy.unwrap(),
        data.ceiling
    );
    assert!(
        acc > 0.6,
        "held-out accuracy {acc} is not clearly above chance"
    );
    assert!(acc > before.stats.accuracy() + 0.05);
    assert!(acc < data.ceiling + 0.03, "above the ceiling: {acc}");
    assert!(
        after.gold_accuracy.unwrap() > acc,
        "the gold order should be easier to match"
    );
}

#[test]
fn gold_reward_scores_the_response_after_its_prompt() {
    use rlhf_model::RewardModel;
    use rlhf_toy::rm::GoldReward;
    let world = ToyWorld::generate(&ToyConfig {
        num_users: 20,
        heldout_users: 2,
        ..ToyConfig::default()
    })
    .unwrap();
    let col = Collator::new(toy_tokenizer(), CollateConfig::new(TOY_EOS_ID, TOY_EOS_ID)).unwrap();
    let prompts = &world.prompts[..6];
    let reward = GoldReward::new(prompts, &col).unwrap();
    // Left-padded rows: pad, prompt, the canonical answer, EOS, then padding after it.
    let width = 80;
    let (mut ids, mut mask, mut want) = (vec![], vec![], vec![]);
    for p in prompts {
        let task = rlhf_toy::ToyTask::from_prompt(&p.prompt).unwrap();
        let answer = task.canonical_response();
        let (pi, ai) = (col.encode(&p.prompt).unwrap(), col.encode(&answer).unwrap());
        let real: Vec<i64> = pi
            .iter()
            .chain(&ai)
            .chain([&TOY_EOS_ID])
            .map(|&t| t as i64)
            .collect();
        let (lead, tail) = (3, width - 3 - real.len());
        ids.extend(
            std::iter::repeat_n(0, lead)
                .chain(real.iter().copied())
                .chain(std::iter::repeat_n(0, tail)),
        );
        mask.extend(
            std::iter::repeat_n(0i64, lead)
                .chain(std::iter::repeat_n(1, real.len()))
                .chain(std::iter::repeat_n(0, tail)),
        );
        want.push(rlhf_toy::gold_score(&task, &answer) as f32);
    }
    let n = prompts.len() as i64;
    let ids = tch::Tensor::from_slice(&ids).view([n, width as i64]);
    let mask = tch::Tensor::from_slice(&mask).view([n, width as i64]);
    let got = Vec::<f32>::try_from(reward.score(&ids, &mask, false).unwrap()).unwrap();
    assert_eq!(got, want);
    assert!(
        got.iter().all(|&g| g == 1.0),
        "canonical answers score 1: {got:?}"
    );
    // A sequence that starts with none of the registered prompts is an error, not a 0.
    let other = tch::Tensor::from_slice(&[5i64, 6, 7, 8]).view([1, 4]);
    assert!(reward.score(&other, &other.ones_like(), false).is_err());
}
