//! Checkpoint directories: round trips, atomic writes, and the errors a user meets.

mod common;
use common::*;
use rlhf_model::checkpoint::{
    normalize_hf_name, read_safetensors, safetensors_bytes, write_atomic,
};
use rlhf_model::{
    CausalLm, HeadKind, LoadOptions, Policy, RewardModel, ScalarModel, Tokenizer, ValueFunction,
};
use tch::{Device, Kind, Tensor};

fn logits(lm: &CausalLm, ids: &Tensor) -> Tensor {
    tch::no_grad(|| lm.logits(ids, &ids.ones_like(), false)).unwrap()
}

#[test]
fn lm_round_trip_keeps_weights_tokenizer_and_meta() {
    let mut lm = small_lm(0);
    lm.set_tokenizer(Tokenizer::from_inner(
        Tokenizer::byte_level().inner().clone(),
    ))
    .unwrap_err(); // 257 tokens do not fit a 97-token model
    let dir = tempfile::tempdir().unwrap();
    lm.meta_mut().step = 42;
    lm.meta_mut().extra.insert("stage".into(), "sft".into());
    lm.save(dir.path().join("ckpt")).unwrap();
    let back = CausalLm::load(dir.path().join("ckpt"), Device::Cpu).unwrap();
    let ids = Tensor::randint(97, [2, 9], (Kind::Int64, Device::Cpu));
    assert_eq!(max_abs_diff(&logits(&lm, &ids), &logits(&back, &ids)), 0.0);
    assert_eq!(back.meta().step, 42);
    assert_eq!(back.meta().extra["stage"], "sft");
    let mut saved_cfg = back.config().as_gpt2().unwrap().clone();
    assert_eq!(
        saved_cfg.architectures.take(),
        Some(vec!["GPT2LMHeadModel".to_string()])
    );
    assert_eq!(Some(&saved_cfg), lm.config().as_gpt2());
    // Nothing but the checkpoint is left in the parent folder.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ckpt")]);
}

#[test]
fn saving_over_a_checkpoint_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    small_lm(1).save(&path).unwrap();
    let second = small_lm(2);
    second.save(&path).unwrap();
    let back = CausalLm::load(&path, Device::Cpu).unwrap();
    let ids = Tensor::randint(97, [1, 5], (Kind::Int64, Device::Cpu));
    assert_eq!(
        max_abs_diff(&logits(&second, &ids), &logits(&back, &ids)),
        0.0
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bf16_save_and_f32_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut lm = small_lm(3);
    lm.var_store_mut().set_kind(Kind::BFloat16); // storage only; no bf16 compute here
    lm.save(dir.path().join("bf")).unwrap();
    let tensors = read_safetensors(&dir.path().join("bf/model.safetensors")).unwrap();
    assert!(tensors.values().all(|t| t.kind() == Kind::BFloat16));
    let back = CausalLm::load(dir.path().join("bf"), LoadOptions::default()).unwrap();
    assert_eq!(back.kind(), Kind::Float);
}

#[test]
fn reward_model_from_lm_and_value_from_reward() {
    let dir = tempfile::tempdir().unwrap();
    let lm = small_lm(4);
    lm.save(dir.path().join("sft")).unwrap();
    let mut rm = ScalarModel::reward_from_lm(dir.path().join("sft"), Device::Cpu).unwrap();
    assert_eq!(rm.head_kind(), HeadKind::Reward);
    // The body is the LM's: same hidden states.
    let ids = Tensor::randint(97, [2, 6], (Kind::Int64, Device::Cpu));
    let h_lm = tch::no_grad(|| lm.body().forward(&ids, None, None, false)).unwrap();
    let vars = rm.var_store().variables();
    assert!(!vars.contains_key("lm_head.weight"));
    assert_eq!(vars["score.weight"].size(), [1, 64]);
    let score_w = vars["score.weight"].shallow_clone();
    let want_last = h_lm.select(1, 5).matmul(&score_w.tr()).squeeze_dim(-1);
    let got = tch::no_grad(|| rm.score(&ids, &ids.ones_like(), false)).unwrap();
    assert!(max_abs_diff(&got, &want_last) < 1e-5);

    rm.meta_mut().reward_bias = -1.5;
    rm.save(dir.path().join("rm")).unwrap();
    let rm2 = ScalarModel::load(dir.path().join("rm"), Device::Cpu).unwrap();
    let got2 = tch::no_grad(|| rm2.score(&ids, &ids.ones_like(), false)).unwrap();
    assert!(
        max_abs_diff(&got2, &(&want_last - 1.5)) < 1e-5,
        "the bias is stored and applied"
    );

    let vf = ScalarModel::value_from_reward(dir.path().join("rm"), Device::Cpu).unwrap();
    assert_eq!(vf.head_kind(), HeadKind::Value);
    let values = tch::no_grad(|| vf.values(&ids, &ids.ones_like(), false)).unwrap();
    assert_eq!(values.size(), [2, 6]);
    assert!(
        max_abs_diff(&values.select(1, 5), &got2) < 1e-5,
        "value at the last token = the normalized reward"
    );

    // A gain scales the raw reward before the bias; the value function folds it into its head
    // and stays on the reward's scale.
    rm.meta_mut().reward_gain = 2.5;
    rm.save(dir.path().join("rm_gain")).unwrap();
    let rm3 = ScalarModel::load(dir.path().join("rm_gain"), Device::Cpu).unwrap();
    assert_eq!(rm3.meta().reward_gain, 2.5);
    let got3 = tch::no_grad(|| rm3.score(&ids, &ids.ones_like(), false)).unwrap();
    assert!(max_abs_diff(&got3, &(&want_last * 2.5 - 1.5)) < 1e-5);
    let vf3 = ScalarModel::value_from_reward(dir.path().join("rm_gain"), Device::Cpu).unwrap();
    assert_eq!(vf3.meta().reward_gain, 1.0);
    let v3 = tch::no_grad(|| vf3.values(&ids, &ids.ones_like(), false)).unwrap();
    assert!(max_abs_diff(&v3.select(1, 5), &got3) < 1e-5);
    // Saved and loaded again (as PPO checkpoints do), the value function is unchanged.
    vf3.save(dir.path().join("vf")).unwrap();
    let vf4 = ScalarModel::load(dir.path().join("vf"), Device::Cpu).unwrap();
    let v4 = tch::no_grad(|| vf4.values(&ids, &ids.ones_like(), false)).unwrap();
    assert!(max_abs_diff(&v4, &v3) < 1e-6);
}

#[test]
fn checkpoints_without_a_gain_load_with_gain_one() {
    let meta: rlhf_model::CheckpointMeta =
        serde_json::from_str(r#"{"head": "reward", "reward_bias": 0.5}"#).unwrap();
    assert_eq!(meta.reward_gain, 1.0);
    assert_eq!(meta.reward_bias, 0.5);
}

#[test]
fn scalar_score_reads_the_last_non_pad_token_for_either_padding() {
    let mut cfg = rlhf_model::Gpt2Config::sized(2, 4, 64, 97, 64).with_dropout(0.0);
    cfg.initializer_range = 0.2;
    let rm = {
        let _rng = TORCH_RNG.lock().unwrap();
        tch::manual_seed(5);
        ScalarModel::new(&cfg, HeadKind::Reward, Device::Cpu).unwrap()
    };
    let seqs = vec![vec![5, 9, 13, 2, 7, 1, 8], vec![3, 4], vec![60, 61, 62, 63]];
    let alone: Vec<f64> = seqs
        .iter()
        .map(|s| {
            let t = Tensor::from_slice(s).unsqueeze(0);
            tch::no_grad(|| rm.score(&t, &t.ones_like(), false))
                .unwrap()
                .double_value(&[0])
        })
        .collect();
    for (ids, mask) in [right_pad(&seqs, 0), left_pad(&seqs, 0)] {
        let got = tch::no_grad(|| rm.score(&ids, &mask, false)).unwrap();
        for (i, want) in alone.iter().enumerate() {
            assert!(
                (got.double_value(&[i as i64]) - want).abs() < 1e-5,
                "row {i}"
            );
        }
    }
    // The rows differ: reading a pad position would give another number.
    assert!((alone[0] - alone[1]).abs() > 1e-3);
}

#[test]
fn last_token_index_matches_a_loop() {
    let masks = [
        vec![1, 1, 1, 0, 0],
        vec![0, 0, 1, 1, 1],
        vec![1, 1, 1, 1, 1],
        vec![0, 1, 0, 0, 0],
    ];
    let flat: Vec<i64> = masks.iter().flatten().copied().collect();
    let got = rlhf_model::ops::last_token_index(&Tensor::from_slice(&flat).view([4, 5]));
    let want: Vec<i64> = masks
        .iter()
        .map(|m| m.iter().rposition(|&x| x == 1).unwrap() as i64)
        .collect();
    assert_eq!(Vec::<i64>::try_from(got).unwrap(), want);
}

#[test]
fn wrong_kind_of_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    small_lm(6).save(dir.path().join("lm")).unwrap();
    let err = ScalarModel::load(dir.path().join("lm"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("language-model checkpoint") && err.contains("reward_from_lm"),
        "{err}"
    );
    let rm = ScalarModel::reward_from_lm(dir.path().join("lm"), Device::Cpu).unwrap();
    rm.save(dir.path().join("rm")).unwrap();
    let err = CausalLm::load(dir.path().join("rm"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Reward checkpoint") && err.contains("language model was expected"),
        "{err}"
    );
    let err = ScalarModel::reward_from_lm(dir.path().join("rm"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("built from a language-model checkpoint"),
        "{err}"
    );
}

#[test]
fn missing_directory_files_and_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = CausalLm::load(dir.path().join("nope"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("no such directory"),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let err = CausalLm::load(dir.path().join("empty"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no config.json"), "{err}");

    let path = dir.path().join("ckpt");
    small_lm(7).save(&path).unwrap();
    // Drop one tensor and change the shape of another.
    let mut t = read_safetensors(&path.join("model.safetensors")).unwrap();
    t.remove("transformer.h.1.mlp.c_fc.bias");
    let bytes = safetensors_bytes(&t.into_iter().collect::<Vec<_>>()).unwrap();
    write_atomic(&path.join("model.safetensors"), &bytes).unwrap();
    let err = CausalLm::load(&path, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("missing tensors: transformer.h.1.mlp.c_fc.bias"),
        "{err}"
    );

    let mut t = read_safetensors(&path.join("model.safetensors")).unwrap();
    t.insert(
        "transformer.h.1.mlp.c_fc.bias".into(),
        Tensor::zeros([3], (Kind::Float, Device::Cpu)),
    );
    let bytes = safetensors_bytes(&t.into_iter().collect::<Vec<_>>()).unwrap();
    write_atomic(&path.join("model.safetensors"), &bytes).unwrap();
    let err = CausalLm::load(&path, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("transformer.h.1.mlp.c_fc.bias has shape [3], the config expects [256]"),
        "{err}"
    );

    std::fs::write(path.join("model.safetensors"), b"garbage").unwrap();
    let err = CausalLm::load(&path, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn bad_config_and_mismatched_tokenizer_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    small_lm(8).save(&path).unwrap();
    std::fs::write(
        path.join("tokenizer.json"),
        Tokenizer::byte_level().to_json().unwrap(),
    )
    .unwrap();
    let err = CausalLm::load(&path, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json has 257 tokens but the model's vocab_size is 97"),
        "{err}"
    );
    std::fs::remove_file(path.join("tokenizer.json")).unwrap();

    let cfg = std::fs::read_to_string(path.join("config.json")).unwrap();
    std::fs::write(
        path.join("config.json"),
        cfg.replace("\"n_head\": 4", "\"n_head\": 5"),
    )
    .unwrap();
    let err = CausalLm::load(&path, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("n_embd (64) must be divisible by n_head (5)"),
        "{err}"
    );
    std::fs::write(
        path.join("config.json"),
        cfg.replace("\"n_layer\": 2", "\"n_layer\": \"two\""),
    )
    .unwrap();
    let err = CausalLm::load(&path, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn hf_names_are_normalized() {
    assert_eq!(
        normalize_hf_name("h.0.attn.c_attn.weight").unwrap(),
        "transformer.h.0.attn.c_attn.weight"
    );
    assert_eq!(
        normalize_hf_name("transformer.wte.weight").unwrap(),
        "transformer.wte.weight"
    );
    assert_eq!(
        normalize_hf_name("h.3.attn.c_attn.bias").unwrap(),
        "transformer.h.3.attn.c_attn.bias"
    );
    assert!(normalize_hf_name("h.3.attn.bias").is_none());
    assert!(normalize_hf_name("transformer.h.3.attn.masked_bias").is_none());
    assert_eq!(
        normalize_hf_name("lm_head.weight").unwrap(),
        "lm_head.weight"
    );
    assert_eq!(normalize_hf_name("score.weight").unwrap(), "score.weight");
}

#[test]
fn byte_level_tokenizer_round_trips_any_text() {
    let tok = Tokenizer::byte_level();
    assert_eq!(tok.vocab_size(), 257);
    assert_eq!(tok.token_id("<|endoftext|>"), Some(256));
    for text in [
        "hello world",
        "  leading spaces",
        "ünïcödé ✓ 漢字",
        "tabs\tand\nnewlines",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), text.len(), "one token per byte");
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
}

/// `generation_config.json` (Hugging Face's generation defaults) is kept with a language model:
/// read, saved again (also merged from LoRA), and its EOS ids join the config's.
#[test]
fn generation_config_is_kept_with_the_model() {
    let fixture =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-tiny-llama");
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let want = read(&fixture.join("generation_config.json"));
    let mut lm = CausalLm::load(&fixture, Device::Cpu).unwrap();
    assert_eq!(lm.generation_config(), Some(&want));
    assert_eq!(lm.eos_token_ids(), [0]);
    let tmp = tempfile::tempdir().unwrap();
    lm.save(tmp.path().join("a")).unwrap();
    assert_eq!(read(&tmp.path().join("a/generation_config.json")), want);
    // A list in generation_config.json (Qwen2.5 Instruct's form) adds its ids, each once.
    let mut g = want.clone();
    g["eos_token_id"] = serde_json::json!([0, 5, 5, 99999]);
    lm.set_generation_config(Some(g.clone()));
    assert_eq!(
        lm.eos_token_ids(),
        [0, 5],
        "the config's first, then the new in-vocab ones"
    );
    lm.attach_lora(&rlhf_model::LoraConfig::default()).unwrap();
    lm.save_merged(tmp.path().join("merged")).unwrap();
    assert_eq!(read(&tmp.path().join("merged/generation_config.json")), g);
    let back = CausalLm::load(tmp.path().join("merged"), Device::Cpu).unwrap();
    assert_eq!(back.generation_config(), Some(&g));
    // None: no file.
    lm.set_generation_config(None);
    lm.save(tmp.path().join("none")).unwrap();
    assert!(!tmp.path().join("none/generation_config.json").exists());
    // Not a JSON object: a clear error naming the file.
    std::fs::write(tmp.path().join("a/generation_config.json"), "[1]").unwrap();
    let e = CausalLm::load(tmp.path().join("a"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("JSON object"),
        "{e}"
    );
}

/// Owned bytes as `safetensors::serialize` takes them: the reference for our streamed writer.
struct Owned(safetensors::Dtype, Vec<usize>, Vec<u8>);

impl safetensors::View for &Owned {
    fn dtype(&self) -> safetensors::Dtype {
        self.0
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.2)
    }
    fn data_len(&self) -> usize {
        self.2.len()
    }
}

/// What a save streams into `model.safetensors` (header made by `safetensors`, each tensor's
/// bytes read from the tensor) is byte for byte what `safetensors::serialize` writes from
/// copies of the tensors: mixed dtypes (which it orders by alignment before names), an empty
/// tensor, a transposed (non-contiguous) one, a scalar.
#[test]
fn streamed_safetensors_equal_the_crates_serialization() {
    use safetensors::Dtype;
    let tensors: Vec<(String, Tensor)> = vec![
        (
            "b.f32".into(),
            Tensor::randn([3, 5], (Kind::Float, Device::Cpu)),
        ),
        (
            "a.bf16".into(),
            Tensor::randn([4], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16),
        ),
        (
            "c.i64".into(),
            Tensor::from_slice(&[1i64, -2, 3]).view([3, 1]),
        ),
        (
            "d.empty".into(),
            Tensor::zeros([0, 7], (Kind::Float, Device::Cpu)),
        ),
        (
            "e.transposed".into(),
            Tensor::randn([2, 3], (Kind::Float, Device::Cpu)).tr(),
        ),
        ("f.scalar".into(), Tensor::from(2.5f32)),
    ];
    let owned: Vec<(String, Owned)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = t.contiguous();
            let dtype = match t.kind() {
                Kind::Float => Dtype::F32,
                Kind::BFloat16 => Dtype::BF16,
                _ => Dtype::I64,
            };
            let len = t.numel() * t.kind().elt_size_in_bytes();
            let mut bytes = vec![0u8; len];
            t.copy_data_u8(&mut bytes, t.numel());
            let shape = t.size().iter().map(|&d| d as usize).collect();
            (n.clone(), Owned(dtype, shape, bytes))
        })
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let want =
        safetensors::serialize(owned.iter().map(|(n, o)| (n.as_str(), o)), Some(meta)).unwrap();
    assert_eq!(safetensors_bytes(&tensors).unwrap(), want);
    let dir = tempfile::tempdir().unwrap();
    let back = {
        let path = dir.path().join("w.safetensors");
        write_atomic(&path, &want).unwrap();
        read_safetensors(&path).unwrap()
    };
    assert!(back["e.transposed"].equal(&tensors[4].1));
}
