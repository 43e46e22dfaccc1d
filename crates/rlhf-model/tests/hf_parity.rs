//! Parity with Hugging Face `transformers` on a tiny random GPT-2 (fixtures made by
//! tests/fixtures/make_fixture.py).

use rlhf_model::{CausalLm, GenerateConfig, Policy, ScalarModel, ValueFunction};
use serde::Deserialize;
use std::path::PathBuf;
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Expected {
    sequences: Vec<Vec<i64>>,
    logits: Vec<Vec<Vec<f32>>>,
    prompts: Vec<Vec<i64>>,
    greedy_max_new_tokens: i64,
    greedy_alone: Vec<Vec<i64>>,
    greedy_left_padded_batch: Vec<Vec<i64>>,
    score_weight: Vec<f32>,
    scores_right_padded: Vec<f32>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("hf-tiny-gpt2/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hf_model() -> CausalLm {
    CausalLm::load(fixtures().join("hf-tiny-gpt2"), Device::Cpu).unwrap()
}

fn row(ids: &[i64]) -> (Tensor, Tensor) {
    let t = Tensor::from_slice(ids).unsqueeze(0);
    let m = t.ones_like();
    (t, m)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn logits_match_transformers() {
    let (lm, exp) = (hf_model(), expected());
    for (seq, want) in exp.sequences.iter().zip(&exp.logits) {
        let (ids, mask) = row(seq);
        let got = tch::no_grad(|| lm.logits(&ids, &mask, false))
            .unwrap()
            .get(0);
        let flat: Vec<f32> = want.iter().flatten().copied().collect();
        let want = Tensor::from_slice(&flat).view([want.len() as i64, -1]);
        assert_eq!(got.size(), want.size());
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-4, "max |logit diff| = {d}");
        // The logits are far from uniform: a broken model would not match by accident.
        assert!(f64::try_from(want.std(false)).unwrap() > 0.5);
    }
}

#[test]
fn tokenizer_loads_with_the_checkpoint() {
    let lm = hf_model();
    let tok = lm.tokenizer().expect("tokenizer.json is loaded");
    let ids = tok.encode("the quick brown fox").unwrap();
    assert_eq!(ids, expected().sequences[0]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "the quick brown fox");
}

#[test]
fn greedy_generation_matches_transformers() {
    let (lm, exp) = (hf_model(), expected());
    let cfg = GenerateConfig::greedy(exp.greedy_max_new_tokens);
    for (p, want) in exp.prompts.iter().zip(&exp.greedy_alone) {
        let (ids, mask) = row(p);
        let out = lm.generate(&ids, &mask, &cfg).unwrap();
        assert_eq!(Vec::<i64>::try_from(out.tokens.get(0)).unwrap(), *want);
        let out = lm.generate_uncached(&ids, &mask, &cfg).unwrap();
        assert_eq!(Vec::<i64>::try_from(out.tokens.get(0)).unwrap(), *want);
    }
}

#[test]
fn left_padded_batch_greedy_matches_transformers() {
    let (lm, exp) = (hf_model(), expected());
    let pad = lm.config().pad_id();
    let width = exp.prompts.iter().map(Vec::len).max().unwrap();
    let mut ids = vec![];
    let mut mask = vec![];
    for p in &exp.prompts {
        ids.extend(std::iter::repeat_n(pad, width - p.len()).chain(p.iter().copied()));
        mask.extend(
            std::iter::repeat_n(0i64, width - p.len()).chain(std::iter::repeat_n(1, p.len())),
        );
    }
    let b = exp.prompts.len() as i64;
    let ids = Tensor::from_slice(&ids).view([b, width as i64]);
    let mask = Tensor::from_slice(&mask).view([b, width as i64]);
    let out = lm
        .generate(
            &ids,
            &mask,
            &GenerateConfig::greedy(exp.greedy_max_new_tokens),
        )
        .unwrap();
    let got: Vec<Vec<i64>> = (0..b)
        .map(|i| Vec::<i64>::try_from(out.tokens.get(i)).unwrap())
        .collect();
    assert_eq!(got, exp.greedy_left_padded_batch);
    assert_eq!(
        got, exp.greedy_alone,
        "a prompt in a left-padded batch decodes as it does alone"
    );
}

#[test]
fn scalar_head_matches_transformers_sequence_classification() {
    let exp = expected();
    let rm = ScalarModel::reward_from_lm(fixtures().join("hf-tiny-gpt2"), Device::Cpu).unwrap();
    tch::no_grad(|| {
        let mut w = rm.var_store().variables()["score.weight"].shallow_clone();
        w.copy_(&Tensor::from_slice(&exp.score_weight).unsqueeze(0));
    });
    let pad = rm.config().pad_id();
    let width = exp.sequences.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask) = (vec![], vec![]);
    for s in &exp.sequences {
        ids.extend(
            s.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, width - s.len())),
        );
        mask.extend(
            std::iter::repeat_n(1i64, s.len()).chain(std::iter::repeat_n(0, width - s.len())),
        );
    }
    let b = exp.sequences.len() as i64;
    let ids = Tensor::from_slice(&ids).view([b, width as i64]);
    let mask = Tensor::from_slice(&mask).view([b, width as i64]);
    let got = tch::no_grad(|| rm.score_raw(&ids, &mask, false)).unwrap();
    let want = Tensor::from_slice(&exp.scores_right_padded);
    let d = max_abs_diff(&got, &want);
    assert!(d <= 1e-4, "max |score diff| = {d}");
}

#[derive(Deserialize)]
struct RustOutputs {
    input_ids: Vec<Vec<i64>>,
    logits: Vec<Vec<Vec<f32>>>,
    scores: Vec<f32>,
}

#[derive(Deserialize)]
struct TransformersCheck {
    lm_max_abs_logit_diff: f64,
    rm_max_abs_score_diff: f64,
}

/// Our saved checkpoints load in `transformers` with the same logits: make_fixture.py
/// `check-rust` recorded the difference. This test proves the committed files are what the
/// current code writes (byte for byte) and still give the recorded numbers here.
#[test]
fn our_checkpoints_load_in_transformers() {
    let dir = fixtures().join("rust-saved-lm");
    let check: TransformersCheck = serde_json::from_str(
        &std::fs::read_to_string(dir.join("transformers_check.json")).unwrap(),
    )
    .unwrap();
    assert!(
        check.lm_max_abs_logit_diff < 1e-4,
        "{}",
        check.lm_max_abs_logit_diff
    );
    assert!(
        check.rm_max_abs_score_diff < 1e-4,
        "{}",
        check.rm_max_abs_score_diff
    );
    let rec: RustOutputs =
        serde_json::from_str(&std::fs::read_to_string(dir.join("rust_outputs.json")).unwrap())
            .unwrap();

    let lm = CausalLm::load(&dir, Device::Cpu).unwrap();
    let rm = ScalarModel::load(fixtures().join("rust-saved-rm"), Device::Cpu).unwrap();
    let flat: Vec<i64> = rec.input_ids.iter().flatten().copied().collect();
    let ids = Tensor::from_slice(&flat).view([rec.input_ids.len() as i64, -1]);
    let mask = ids.ones_like();
    let logits = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
    let flat: Vec<f32> = rec.logits.iter().flatten().flatten().copied().collect();
    assert!(max_abs_diff(&logits, &Tensor::from_slice(&flat).view_as(&logits)) < 1e-5);
    let scores = tch::no_grad(|| rm.score_raw(&ids, &mask, false)).unwrap();
    assert!(max_abs_diff(&scores, &Tensor::from_slice(&rec.scores)) < 1e-5);

    // What we write now is what transformers checked.
    let tmp = tempfile::tempdir().unwrap();
    lm.save(tmp.path().join("lm")).unwrap();
    rm.save(tmp.path().join("rm")).unwrap();
    for (ours, committed) in [
        (tmp.path().join("lm"), dir.clone()),
        (tmp.path().join("rm"), fixtures().join("rust-saved-rm")),
    ] {
        let a = std::fs::read(ours.join("model.safetensors")).unwrap();
        let b = std::fs::read(committed.join("model.safetensors")).unwrap();
        assert!(
            a == b,
            "model.safetensors differs from the fixture transformers checked"
        );
        let ca: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ours.join("config.json")).unwrap())
                .unwrap();
        let cb: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(committed.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(ca, cb);
    }
}
