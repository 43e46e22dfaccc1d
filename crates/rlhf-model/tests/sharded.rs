//! Sharded checkpoints (`model.safetensors.index.json` + `model-0000N-of-0000M.safetensors`),
//! as `transformers`' `save_pretrained` writes them above `max_shard_size` and as hub models of
//! a few billion parameters come. The fixture `hf-tiny-llama-sharded/` is the Llama of
//! `hf-tiny-llama/` in bfloat16, in three shards, with the logits `transformers` computes from
//! it (tests/fixtures/make_llama_fixture.py, step `sharded`).

mod common;
use common::worst_logit_diff;
use rlhf_model::checkpoint::{WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use rlhf_model::{CausalLm, Policy, ScalarModel, ValueFunction};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[derive(Deserialize)]
struct Expected {
    sequences: Vec<Vec<i64>>,
    logits: Vec<Vec<Vec<f32>>>,
    shards: Vec<String>,
}

fn expected() -> Expected {
    let text =
        std::fs::read_to_string(fixture("hf-tiny-llama-sharded").join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of the sharded fixture that a test may break.
fn copy_fixture(tmp: &Path) -> PathBuf {
    let dir = tmp.join("sharded");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("hf-tiny-llama-sharded")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    match CausalLm::load(dir, Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_sharded_bf16_checkpoint_gives_transformers_logits() {
    let exp = expected();
    let dir = fixture("hf-tiny-llama-sharded");
    assert!(exp.shards.len() >= 3 && !dir.join(WEIGHTS_FILE).exists());
    let lm = CausalLm::load(&dir, Device::Cpu).unwrap();
    let worst = worst_logit_diff(&lm, &exp.sequences, &exp.logits);
    println!("max |logit diff| vs transformers = {worst:e}");
    assert!(worst <= 1e-4, "max |logit diff| = {worst}");
}

#[test]
fn shards_hold_exactly_the_unsharded_weights_rounded_to_bf16() {
    let sharded = CausalLm::load(fixture("hf-tiny-llama-sharded"), Device::Cpu).unwrap();
    let whole = CausalLm::load(fixture("hf-tiny-llama"), Device::Cpu).unwrap();
    let (a, b) = (
        sharded.var_store().variables(),
        whole.var_store().variables(),
    );
    let names = |m: &std::collections::HashMap<String, Tensor>| {
        let mut v: Vec<String> = m.keys().cloned().collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), names(&b), "the same variables");
    for (name, t) in &a {
        assert_eq!(t.kind(), Kind::Float, "{name} is loaded in f32");
        let rounded = b[name].to_kind(Kind::BFloat16).to_kind(Kind::Float);
        assert!(t.equal(&rounded), "{name} differs from the bf16 rounding");
    }
    // And a saved copy is one model.safetensors that loads back to the same weights.
    let tmp = tempfile::tempdir().unwrap();
    sharded.save(tmp.path().join("saved")).unwrap();
    assert!(tmp.path().join("saved").join(WEIGHTS_FILE).exists());
    assert!(!tmp.path().join("saved").join(WEIGHTS_INDEX_FILE).exists());
    // The file holds f32 now: the config says so, or transformers would load it in bf16.
    let config = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(
        config(&fixture("hf-tiny-llama-sharded"))["dtype"],
        "bfloat16"
    );
    assert_eq!(config(&tmp.path().join("saved"))["dtype"], "float32");
    let mut bf = CausalLm::load(fixture("hf-tiny-llama-sharded"), Device::Cpu).unwrap();
    bf.set_kind(Kind::BFloat16);
    bf.save(tmp.path().join("saved-bf16")).unwrap();
    assert_eq!(config(&tmp.path().join("saved-bf16"))["dtype"], "bfloat16");
    let back = CausalLm::load(tmp.path().join("saved"), Device::Cpu).unwrap();
    for (name, t) in back.var_store().variables() {
        assert!(t.equal(&a[&name]), "{name} changed in a save/load");
    }
}

#[test]
fn a_reward_model_is_built_from_a_sharded_lm() {
    let rm = ScalarModel::reward_from_lm(fixture("hf-tiny-llama-sharded"), Device::Cpu).unwrap();
    let lm = CausalLm::load(fixture("hf-tiny-llama-sharded"), Device::Cpu).unwrap();
    let (rm_vars, lm_vars) = (rm.var_store().variables(), lm.var_store().variables());
    for (name, t) in &rm_vars {
        if name != "score.weight" {
            assert!(t.equal(&lm_vars[name]), "{name} is the LM's");
        }
    }
    assert!(rm_vars.contains_key("score.weight") && !rm_vars.contains_key("lm_head.weight"));
}

#[test]
fn a_missing_shard_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture(tmp.path());
    let shard = &expected().shards[1];
    std::fs::remove_file(dir.join(shard)).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains(WEIGHTS_INDEX_FILE) && e.contains(shard.as_str()) && e.contains("incomplete"),
        "{e}"
    );
}

#[test]
fn an_index_that_disagrees_with_its_shards_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture(tmp.path());
    let index_path = dir.join(WEIGHTS_INDEX_FILE);
    let original = std::fs::read_to_string(&index_path).unwrap();
    let mut index: serde_json::Value = serde_json::from_str(&original).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    let shards = expected().shards;

    // A tensor put in a shard that does not hold it.
    let holder = map["lm_head.weight"].as_str().unwrap().to_string();
    let other = shards.iter().find(|s| **s != holder).unwrap();
    map.insert("lm_head.weight".into(), other.as_str().into());
    std::fs::write(&index_path, index.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("lm_head.weight") && e.contains(other.as_str()) && e.contains("does not hold"),
        "{e}"
    );

    // A shard path outside the folder.
    let mut index: serde_json::Value = serde_json::from_str(&original).unwrap();
    index["weight_map"]["lm_head.weight"] = "../model-00001-of-00003.safetensors".into();
    std::fs::write(&index_path, index.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("not a file name in the checkpoint's folder"),
        "{e}"
    );

    // Not JSON of the index's form.
    std::fs::write(&index_path, "{\"metadata\": {}}").unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains(WEIGHTS_INDEX_FILE) && e.contains("weight_map"),
        "{e}"
    );

    // A shard that is not a safetensors file.
    std::fs::write(&index_path, &original).unwrap();
    std::fs::write(dir.join(&shards[0]), b"not safetensors").unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains(shards[0].as_str()) && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn a_tensor_in_two_shards_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture(tmp.path());
    let shards = expected().shards;
    // The first shard's contents also under the second shard's name: every tensor of it twice.
    std::fs::copy(dir.join(&shards[0]), dir.join(&shards[1])).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("must be in one shard only"), "{e}");
}

#[test]
fn a_folder_without_safetensors_weights_says_what_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture(tmp.path());
    for shard in expected().shards {
        std::fs::remove_file(dir.join(shard)).unwrap();
    }
    std::fs::remove_file(dir.join(WEIGHTS_INDEX_FILE)).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains(WEIGHTS_FILE) && e.contains(WEIGHTS_INDEX_FILE) && !e.contains("pickle"),
        "{e}"
    );
    std::fs::write(dir.join("pytorch_model.bin"), b"").unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("pytorch_model.bin") && e.contains("save_pretrained"),
        "{e}"
    );
}
