//! LoRA parity with Hugging Face `peft` (fixtures by tests/fixtures/make_lora_fixture.py):
//! an adapter made by `peft` on the tiny GPT-2 and Llama bases gives the logits `peft` gives,
//! and adapters saved by us load in `peft` with our logits (`peft_check.json`, recorded by the
//! script's `check-rust` step on the committed `rust-saved-lora-*` adapters).

use rlhf_model::{CausalLm, Policy, ScalarModel};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

const KINDS: [&str; 2] = ["llama", "gpt2"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Expected {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    logits: Vec<Vec<Vec<f32>>>,
    base_logits: Vec<Vec<Vec<f32>>>,
}

fn tensor2(v: &[Vec<i64>]) -> Tensor {
    Tensor::from_slice(&v.concat()).view([v.len() as i64, -1])
}

fn tensor3(v: &[Vec<Vec<f32>>]) -> Tensor {
    let (b, t) = (v.len() as i64, v[0].len() as i64);
    let flat: Vec<f32> = v.iter().flatten().flatten().copied().collect();
    Tensor::from_slice(&flat).view([b, t, -1])
}

/// The largest difference at real (unpadded) positions.
fn diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let real = mask.ne(0).unsqueeze(-1).expand_as(a);
    (a - b).abs().masked_select(&real).max().double_value(&[])
}

#[test]
fn adapters_made_by_peft_give_peft_logits() {
    for kind in KINDS {
        let dir = fixtures().join(format!("peft-lora-{kind}"));
        let exp: Expected =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let (ids, mask) = (tensor2(&exp.input_ids), tensor2(&exp.attention_mask));
        let mut lm =
            CausalLm::load(fixtures().join(format!("hf-tiny-{kind}")), Device::Cpu).unwrap();
        lm.load_adapter(&dir).unwrap();
        let got = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
        let d = diff(&got, &tensor3(&exp.logits), &mask);
        println!("{kind}: max |logit diff| vs peft = {d:e}");
        assert!(d < 1e-4, "{kind}: {d}");
        let base = lm.with_adapters_disabled(|| tch::no_grad(|| lm.logits(&ids, &mask, false)));
        let d = diff(&base.unwrap(), &tensor3(&exp.base_logits), &mask);
        assert!(d < 1e-4, "{kind}: base {d}");
    }
}

#[derive(Deserialize)]
struct PeftCheck {
    max_abs_logit_diff: f64,
}

/// Our adapters load in `peft` with our logits; the committed files are what the current code
/// writes, byte for byte.
#[test]
fn our_adapters_load_in_peft() {
    for kind in KINDS {
        let dir = fixtures().join(format!("rust-saved-lora-{kind}"));
        let check: PeftCheck =
            serde_json::from_str(&std::fs::read_to_string(dir.join("peft_check.json")).unwrap())
                .unwrap();
        println!(
            "{kind}: peft on our adapter: {:e}",
            check.max_abs_logit_diff
        );
        assert!(check.max_abs_logit_diff < 1e-4, "{kind}");
        let mut lm =
            CausalLm::load(fixtures().join(format!("hf-tiny-{kind}")), Device::Cpu).unwrap();
        lm.load_adapter(&dir).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        lm.save_adapter(tmp.path()).unwrap();
        for file in ["adapter_model.safetensors", "adapter_config.json"] {
            let a = std::fs::read(tmp.path().join(file)).unwrap();
            let b = std::fs::read(dir.join(file)).unwrap();
            assert!(a == b, "{kind}: {file} differs from what peft checked");
        }
    }
}

/// Writes `rust-saved-lora-*` (run with `RLHF_WRITE_LORA_FIXTURE=1 ... -- --ignored`, then
/// make_lora_fixture.py check-rust): an adapter attached by us with a random B, saved in PEFT's
/// layout, and our logits on fixed inputs.
#[test]
#[ignore]
fn write_rust_saved_lora() {
    if std::env::var("RLHF_WRITE_LORA_FIXTURE").is_err() {
        println!("set RLHF_WRITE_LORA_FIXTURE=1 to rewrite the fixtures");
        return;
    }
    for kind in KINDS {
        let mut lm =
            CausalLm::load(fixtures().join(format!("hf-tiny-{kind}")), Device::Cpu).unwrap();
        let targets: &[&str] = if kind == "gpt2" {
            &["c_attn", "c_proj"]
        } else {
            &["k_proj", "o_proj", "gate_proj", "up_proj"]
        };
        tch::manual_seed(1);
        lm.attach_lora(&rlhf_model::LoraConfig {
            r: 3,
            lora_alpha: 6.0,
            lora_dropout: 0.0,
            target_modules: targets.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap();
        tch::no_grad(|| {
            for (name, mut v) in lm.var_store().variables() {
                if name.contains("lora_B") {
                    v.copy_(&(Tensor::randn(v.size(), (v.kind(), v.device())) * 0.2));
                }
            }
        });
        let dir = fixtures().join(format!("rust-saved-lora-{kind}"));
        lm.save_adapter(&dir).unwrap();
        let ids = vec![vec![0i64, 0, 5, 6, 7, 8], vec![40, 41, 42, 43, 44, 45]];
        let mask = vec![vec![0i64, 0, 1, 1, 1, 1], vec![1, 1, 1, 1, 1, 1]];
        let logits = tch::no_grad(|| lm.logits(&tensor2(&ids), &tensor2(&mask), false)).unwrap();
        let logits: Vec<Vec<Vec<f32>>> = (0..2)
            .map(|b| {
                (0..6)
                    .map(|t| Vec::<f32>::try_from(logits.get(b).get(t)).unwrap())
                    .collect()
            })
            .collect();
        let rec = serde_json::json!({"input_ids": ids, "attention_mask": mask, "logits": logits});
        std::fs::write(dir.join("rust_outputs.json"), rec.to_string()).unwrap();
        println!("wrote {}", dir.display());
    }
    // A reward model (SEQ_CLS: the head saved whole as `modules_to_save`).
    tch::manual_seed(2);
    let mut rm =
        ScalarModel::reward_from_lm(fixtures().join("hf-tiny-llama"), Device::Cpu).unwrap();
    rm.attach_lora(&rlhf_model::LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        lora_dropout: 0.0,
        target_modules: vec!["q_proj".into(), "down_proj".into()],
    })
    .unwrap();
    tch::no_grad(|| {
        for (name, mut v) in rm.var_store_mut().variables() {
            if name.contains("lora_B") {
                v.copy_(&(Tensor::randn(v.size(), (v.kind(), v.device())) * 0.2));
            }
        }
    });
    let dir = fixtures().join("rust-saved-lora-rm-llama");
    let tmp = tempfile::tempdir().unwrap();
    rm.save(tmp.path()).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        std::fs::copy(tmp.path().join(file), dir.join(file)).unwrap();
    }
    let (ids, mask) = rm_inputs();
    let scores = tch::no_grad(|| rm.score_raw(&tensor2(&ids), &tensor2(&mask), false)).unwrap();
    let rec = serde_json::json!({
        "input_ids": ids, "attention_mask": mask, "scores": Vec::<f32>::try_from(scores).unwrap(),
    });
    std::fs::write(dir.join("rust_outputs.json"), rec.to_string()).unwrap();
    println!("wrote {}", dir.display());
}

fn rm_inputs() -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
    (
        vec![vec![0i64, 0, 5, 6, 7, 8], vec![40, 41, 42, 43, 44, 45]],
        vec![vec![0i64, 0, 1, 1, 1, 1], vec![1, 1, 1, 1, 1, 1]],
    )
}

/// A reward model's adapter (task `SEQ_CLS`, the score head as `modules_to_save`) loads in
/// `peft` on `LlamaForSequenceClassification` with our scores, and reads back here equal.
#[test]
fn our_reward_adapter_loads_in_peft() {
    let dir = fixtures().join("rust-saved-lora-rm-llama");
    let check: PeftCheck =
        serde_json::from_str(&std::fs::read_to_string(dir.join("peft_check.json")).unwrap())
            .unwrap();
    println!("peft on our reward adapter: {:e}", check.max_abs_logit_diff);
    assert!(check.max_abs_logit_diff < 1e-4);
    let mut rm =
        ScalarModel::reward_from_lm(fixtures().join("hf-tiny-llama"), Device::Cpu).unwrap();
    rm.load_adapter(&dir).unwrap();
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("rust_outputs.json")).unwrap())
            .unwrap();
    let (ids, mask) = rm_inputs();
    let got = tch::no_grad(|| rm.score_raw(&tensor2(&ids), &tensor2(&mask), false)).unwrap();
    let want: Vec<f32> = serde_json::from_value(rec["scores"].clone()).unwrap();
    let d = (got - Tensor::from_slice(&want))
        .abs()
        .max()
        .double_value(&[]);
    assert!(d < 1e-5, "{d}");
}
