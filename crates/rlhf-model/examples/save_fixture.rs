//! Writes the Rust-saved checkpoints of the parity fixture (see tests/fixtures/make_fixture.py):
//! the Hugging Face tiny model, perturbed, saved by us as an LM and as a reward model, with the
//! logits and scores we compute on it, for `transformers` to check.
//!
//! Run from the repository root: `cargo run -p rlhf-model --example save_fixture`.

use rlhf_model::{CausalLm, HeadKind, Policy, ScalarModel};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures = Path::new("crates/rlhf-model/tests/fixtures");
    tch::manual_seed(7);
    let mut lm = CausalLm::load(fixtures.join("hf-tiny-gpt2"), Device::Cpu)?;
    tch::no_grad(|| {
        for (_, mut v) in lm.var_store().variables() {
            let noise = v.randn_like() * 0.05;
            v += noise;
        }
    });
    lm.meta_mut().step = 3;
    let lm_dir = fixtures.join("rust-saved-lm");
    lm.save(&lm_dir)?;
    let rm = ScalarModel::reward_from_lm(&lm_dir, Device::Cpu)?;
    assert_eq!(rm.head_kind(), HeadKind::Reward);
    rm.save(fixtures.join("rust-saved-rm"))?;

    let tok = lm.tokenizer().expect("fixture has a tokenizer");
    let rows = ["the lazy dog jumps", "apple banana cherry"];
    let enc: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| tok.encode(r))
        .collect::<Result<_, _>>()?;
    let width = enc.iter().map(Vec::len).min().unwrap();
    let ids: Vec<Vec<i64>> = enc
        .into_iter()
        .map(|mut v| {
            v.truncate(width);
            v
        })
        .collect();
    let flat: Vec<i64> = ids.iter().flatten().copied().collect();
    let input = Tensor::from_slice(&flat).view([2, width as i64]);
    let mask = input.ones_like();
    let logits = tch::no_grad(|| lm.logits(&input, &mask, false))?;
    let scores = tch::no_grad(|| rm.score_raw(&input, &mask, false))?;
    let logits: Vec<Vec<Vec<f32>>> = (0..2)
        .map(|b| {
            let l = logits.get(b).to_kind(Kind::Float);
            (0..width as i64)
                .map(|t| Vec::<f32>::try_from(l.get(t)).unwrap())
                .collect()
        })
        .collect();
    let scores = Vec::<f32>::try_from(scores)?;
    let out = serde_json::json!({"input_ids": ids, "logits": logits, "scores": scores});
    std::fs::write(lm_dir.join("rust_outputs.json"), out.to_string())?;
    println!("wrote {}", lm_dir.display());
    Ok(())
}
