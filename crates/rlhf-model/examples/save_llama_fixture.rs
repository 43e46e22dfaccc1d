//! Writes the Rust-saved Llama-family checkpoints of the parity fixture (see
//! tests/fixtures/make_llama_fixture.py): each Hugging Face tiny model, perturbed, saved by us,
//! with the logits we compute on a left-padded batch, for `transformers` to check.
//!
//! Run from the repository root: `cargo run -p rlhf-model --example save_llama_fixture`.

use rlhf_model::{CausalLm, Policy};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures = Path::new("crates/rlhf-model/tests/fixtures");
    let kinds: Vec<String> = std::env::args().skip(1).collect();
    let all = [
        "llama", "qwen2", "qwen3", "mistral", "gemma3", "smollm3", "gemma2", "olmo2",
    ]
    .map(String::from);
    // Optional kinds as arguments (`-- qwen3 mistral`): only those.
    for kind in if kinds.is_empty() {
        &all[..]
    } else {
        &kinds[..]
    } {
        tch::manual_seed(11);
        let mut lm = CausalLm::load(fixtures.join(format!("hf-tiny-{kind}")), Device::Cpu)?;
        tch::no_grad(|| {
            for (_, mut v) in lm.var_store().variables() {
                let noise = v.randn_like() * 0.05;
                v += noise;
            }
        });
        lm.meta_mut().step = 3;
        let dir = fixtures.join(format!("rust-saved-{kind}"));
        lm.save(&dir)?;

        let tok = lm.tokenizer().expect("fixture has a tokenizer");
        let rows = ["the lazy dog jumps over", "apple banana"];
        let enc: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| tok.encode(r))
            .collect::<Result<_, _>>()?;
        let width = enc.iter().map(Vec::len).max().unwrap();
        let pad = lm.config().pad_id();
        let (mut ids, mut mask) = (vec![], vec![]);
        for e in &enc {
            let n = width - e.len();
            ids.push([vec![pad; n], e.clone()].concat());
            mask.push([vec![0i64; n], vec![1; e.len()]].concat());
        }
        let flat = |v: &Vec<Vec<i64>>| {
            Tensor::from_slice(&v.concat()).view([v.len() as i64, width as i64])
        };
        let logits = tch::no_grad(|| lm.logits(&flat(&ids), &flat(&mask), false))?;
        let logits: Vec<Vec<Vec<f32>>> = (0..2)
            .map(|b| {
                let l = logits.get(b).to_kind(Kind::Float);
                (0..width as i64)
                    .map(|t| Vec::<f32>::try_from(l.get(t)).unwrap())
                    .collect()
            })
            .collect();
        let out = serde_json::json!({"input_ids": ids, "attention_mask": mask, "logits": logits});
        std::fs::write(dir.join("rust_outputs.json"), out.to_string())?;
        println!("wrote {}", dir.display());
    }
    Ok(())
}
