//! The Llama family against Hugging Face `transformers`: a tiny random Llama (grouped-query
//! attention, untied head, Llama 3 rope_scaling), Qwen2 (q/k/v bias, tied head), Qwen3
//! (per-head q/k RMSNorm, a head_dim wider than hidden / heads), Mistral (a sliding window
//! shorter than the sequences), Gemma 3 (its own block, local and global layers), Gemma 2
//! (soft caps on the scores and the logits), SmolLM3 (a layer without RoPE, which slides) and
//! OLMo 2 (norms after the attention and the MLP, q/k norms over all heads), all made by
//! tests/fixtures/make_llama_fixture.py. Logits, greedy generation (alone and left-padded),
//! the scalar head, KV cache == full forward, and checkpoint round trips.

mod common;
use common::{incremental_logits, left_pad, max_abs_diff, rows, worst_logit_diff};
use rlhf_model::checkpoint::read_safetensors;
use rlhf_model::{
    CausalLm, GenerateConfig, HeadKind, LlamaConfig, ModelConfig, Policy, ScalarModel,
    ValueFunction,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const KINDS: [&str; 8] = [
    "llama", "qwen2", "qwen3", "mistral", "gemma3", "smollm3", "gemma2", "olmo2",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn hf_dir(kind: &str) -> PathBuf {
    fixtures().join(format!("hf-tiny-{kind}"))
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
    parameter_shapes: BTreeMap<String, Vec<i64>>,
}

fn expected(kind: &str) -> Expected {
    let text = std::fs::read_to_string(hf_dir(kind).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of the `kind` fixture's weights and tokenizer in `tmp/kind`, with its `config.json`
/// changed by `edit`.
fn edited_copy(
    tmp: &std::path::Path,
    kind: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let dir = tmp.join(kind);
    std::fs::create_dir(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(hf_dir(kind).join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf_dir(kind).join("config.json")).unwrap())
            .unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

fn load(kind: &str) -> CausalLm {
    CausalLm::load(hf_dir(kind), Device::Cpu).unwrap()
}

fn row(ids: &[i64]) -> (Tensor, Tensor) {
    let t = Tensor::from_slice(ids).unsqueeze(0);
    let m = t.ones_like();
    (t, m)
}

#[test]
fn configs_parse_as_their_architecture() {
    let lm = load("llama");
    let c = lm.config().as_llama().expect("a Llama config");
    assert_eq!(
        (c.model_type.as_str(), c.kv_heads(), c.head_dim()),
        ("llama", 2, 8)
    );
    assert!(!c.tie_word_embeddings && !c.qkv_bias());
    assert!(matches!(
        c.rope_scaling().unwrap(),
        rlhf_model::RopeScaling::Llama3 { factor, .. } if factor == 8.0
    ));
    assert!(lm.var_store().variables().contains_key("lm_head.weight"));
    let qwen = load("qwen2");
    let c = qwen.config().as_llama().unwrap();
    assert_eq!((c.model_type.as_str(), c.kv_heads()), ("qwen2", 1));
    assert!(c.qkv_bias() && !c.o_bias() && c.tie_word_embeddings);
    assert_eq!(c.rope_base(), 1e6);
    let vars = qwen.var_store().variables();
    assert!(vars.contains_key("model.layers.0.self_attn.q_proj.bias"));
    assert!(!vars.contains_key("model.layers.0.self_attn.o_proj.bias"));
    assert!(!vars.contains_key("lm_head.weight"));
    let qwen3 = load("qwen3");
    let c = qwen3.config().as_llama().unwrap();
    assert_eq!((c.head_dim(), c.hidden_size, c.kv_heads()), (16, 32, 2));
    assert!(c.qk_norm() && !c.qkv_bias() && !c.o_bias() && c.tie_word_embeddings);
    let vars = qwen3.var_store().variables();
    assert_eq!(vars["model.layers.1.self_attn.k_norm.weight"].size(), [16]);
    assert_eq!(
        vars["model.layers.0.self_attn.q_proj.weight"].size(),
        [64, 32]
    );
    let mistral = load("mistral");
    let c = mistral.config().as_llama().unwrap();
    assert_eq!((c.kv_heads(), c.context_len()), (1, 64));
    assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(6), Some(6)));
    assert!(!c.qk_norm() && !c.qkv_bias() && !c.tie_word_embeddings);
    assert!(mistral
        .var_store()
        .variables()
        .contains_key("lm_head.weight"));
    let gemma = load("gemma3");
    let c = gemma.config().as_llama().unwrap();
    assert!(c.is_gemma3() && c.qk_norm() && c.tie_word_embeddings);
    assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(4), None));
    assert_eq!(c.attention_scale(), Some(24f64.powf(-0.5)));
    assert_eq!(c.final_logit_softcapping(), Some(3.0));
    assert_eq!(c.rope(true).unwrap(), (1e4, rlhf_model::RopeScaling::None));
    assert_eq!(
        c.rope(false).unwrap(),
        (1e6, rlhf_model::RopeScaling::Linear { factor: 2.0 })
    );
    let gemma2 = load("gemma2");
    let c = gemma2.config().as_llama().unwrap();
    assert!(c.is_gemma() && !c.is_gemma3() && !c.qk_norm());
    assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(4), None));
    assert_eq!(
        (c.attention_softcapping(), c.final_logit_softcapping()),
        (Some(3.0), Some(3.0))
    );
    // Gemma 2's defaults: both caps on, every second layer local.
    let c = ModelConfig::from_json(
        r#"{"model_type": "gemma2", "num_hidden_layers": 4, "hidden_size": 32,
            "num_attention_heads": 4, "vocab_size": 10, "bos_token_id": 2, "eos_token_id": 1}"#,
    )
    .unwrap();
    let c = c.as_llama().unwrap();
    assert_eq!(
        (c.attention_softcapping(), c.final_logit_softcapping()),
        (Some(50.0), Some(30.0))
    );
    let windows: Vec<_> = (0..4).map(|i| c.layer_window(i)).collect();
    assert_eq!(windows, [Some(4096), None, Some(4096), None]);
    assert!(!gemma2
        .var_store()
        .variables()
        .contains_key("model.layers.0.self_attn.q_norm.weight"));
    let olmo = load("olmo2");
    let c = olmo.config().as_llama().unwrap();
    assert!(c.qk_norm() && c.qk_norm_wide() && !c.tie_word_embeddings);
    let vars = olmo.var_store().variables();
    assert_eq!(vars["model.layers.0.self_attn.q_norm.weight"].size(), [32]);
    assert_eq!(vars["model.layers.0.self_attn.k_norm.weight"].size(), [16]);
    assert!(!vars.contains_key("model.layers.0.input_layernorm.weight"));
    let smol = load("smollm3");
    let c = smol.config().as_llama().unwrap();
    assert_eq!((c.layer_rope(0), c.layer_rope(1)), (true, false));
    assert_eq!((c.layer_window(0), c.layer_window(1)), (None, Some(5)));
    assert!(c.o_bias() && c.qkv_bias() && !c.tie_word_embeddings);
    assert_eq!(c.rope_base(), 2e6);
    let vars = gemma.var_store().variables();
    for name in [
        "model.layers.1.pre_feedforward_layernorm.weight",
        "model.layers.1.post_feedforward_layernorm.weight",
        "model.layers.0.self_attn.q_norm.weight",
    ] {
        assert!(vars.contains_key(name), "{name}");
    }
}

#[test]
fn logits_match_transformers() {
    for kind in KINDS {
        let (lm, exp) = (load(kind), expected(kind));
        let worst = worst_logit_diff(&lm, &exp.sequences, &exp.logits);
        println!("{kind}: max |logit diff| vs transformers = {worst:e}");
        assert!(worst <= 1e-4, "{kind}: max |logit diff| = {worst}");
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for kind in KINDS {
        let (lm, exp) = (load(kind), expected(kind));
        let cfg = GenerateConfig::greedy(exp.greedy_max_new_tokens);
        for (p, want) in exp.prompts.iter().zip(&exp.greedy_alone) {
            let (ids, mask) = row(p);
            let out = lm.generate(&ids, &mask, &cfg).unwrap();
            assert_eq!(rows(&out.tokens)[0], *want, "{kind} cached");
            let out = lm.generate_uncached(&ids, &mask, &cfg).unwrap();
            assert_eq!(rows(&out.tokens)[0], *want, "{kind} uncached");
        }
    }
}

#[test]
fn left_padded_batch_greedy_matches_transformers() {
    for kind in KINDS {
        let (lm, exp) = (load(kind), expected(kind));
        let (ids, mask) = left_pad(&exp.prompts, lm.config().pad_id());
        let cfg = GenerateConfig::greedy(exp.greedy_max_new_tokens);
        let got = rows(&lm.generate(&ids, &mask, &cfg).unwrap().tokens);
        assert_eq!(got, exp.greedy_left_padded_batch, "{kind}");
        assert_eq!(got, exp.greedy_alone, "{kind}: padded decodes as alone");
        let got = rows(&lm.generate_uncached(&ids, &mask, &cfg).unwrap().tokens);
        assert_eq!(got, exp.greedy_alone, "{kind}: uncached");
    }
}

#[test]
fn scalar_head_matches_transformers_sequence_classification() {
    for kind in KINDS {
        let exp = expected(kind);
        let rm = ScalarModel::reward_from_lm(hf_dir(kind), Device::Cpu).unwrap();
        tch::no_grad(|| {
            let mut w = rm.var_store().variables()["score.weight"].shallow_clone();
            w.copy_(&Tensor::from_slice(&exp.score_weight).unsqueeze(0));
        });
        let (ids, mask) = common::right_pad(&exp.sequences, rm.config().pad_id());
        let got = tch::no_grad(|| rm.score_raw(&ids, &mask, false)).unwrap();
        let d = max_abs_diff(&got, &Tensor::from_slice(&exp.scores_right_padded));
        println!("{kind}: max |score diff| vs transformers = {d:e}");
        assert!(d <= 1e-4, "{kind}: max |score diff| = {d}");
    }
}

#[test]
fn incremental_logits_equal_full_forward_with_left_padding() {
    for kind in KINDS {
        let lm = load(kind);
        let pad = lm.config().pad_id();
        let (ids, mask) = left_pad(
            &[
                vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
                vec![1, 2, 3, 4],
                vec![40, 41, 42, 43, 44, 45, 46],
            ],
            pad,
        );
        let full = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
        let got = incremental_logits(&lm, (&ids, &mask), 6, 10, Kind::Float);
        let pad_rows = mask.to_kind(Kind::Bool).logical_not().unsqueeze(-1);
        let d = max_abs_diff(
            &got.masked_fill(&pad_rows, 0.0),
            &full.masked_fill(&pad_rows, 0.0),
        );
        // Logits here are of order 10: 1e-4 is float rounding.
        assert!(d <= 1e-4, "{kind}: cached vs full {d}");
        // Left padding changes nothing for a row: its logits alone equal its padded ones.
        let alone = tch::no_grad(|| {
            let (i, m) = row(&[1, 2, 3, 4]);
            lm.logits(&i, &m, false)
        })
        .unwrap();
        let d = max_abs_diff(&full.get(1).narrow(0, 6, 4), &alone.get(0));
        assert!(d <= 1e-4, "{kind}: padded vs alone {d}");
    }
}

#[test]
fn save_load_is_exact_and_keeps_hf_names_and_shapes() {
    for kind in KINDS {
        let lm = load(kind);
        let exp = expected(kind);
        let tmp = tempfile::tempdir().unwrap();
        lm.save(tmp.path().join("ckpt")).unwrap();
        let saved = read_safetensors(&tmp.path().join("ckpt/model.safetensors")).unwrap();
        let shapes = |m: &BTreeMap<String, Tensor>| -> BTreeMap<String, Vec<i64>> {
            m.iter().map(|(k, v)| (k.clone(), v.size())).collect()
        };
        // The same names and shapes as the file transformers wrote (a tied lm_head is not
        // stored), each a parameter of transformers' model.
        let hf = read_safetensors(&hf_dir(kind).join("model.safetensors")).unwrap();
        assert_eq!(
            shapes(&saved),
            shapes(&hf),
            "{kind}: names and shapes as transformers"
        );
        for (name, shape) in shapes(&saved) {
            assert_eq!(
                exp.parameter_shapes.get(&name),
                Some(&shape),
                "{kind}: {name}"
            );
        }
        for (name, t) in &hf {
            assert!(
                t.equal(&saved[name]),
                "{kind}: {name} changed in the round trip"
            );
        }
        let back = CausalLm::load(tmp.path().join("ckpt"), Device::Cpu).unwrap();
        assert_eq!(
            back.config().as_llama(),
            lm.config()
                .as_llama()
                .map(|c| {
                    let mut c = c.clone();
                    c.architectures = Some(vec![lm.config().hf_architecture(true).into()]);
                    c
                })
                .as_ref()
        );
        let ids = Tensor::from_slice(&exp.sequences[1]).unsqueeze(0);
        let a = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
        let b = tch::no_grad(|| back.logits(&ids, &ids.ones_like(), false)).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        // The reward model made from it saves as a sequence classifier of the same family.
        let rm = ScalarModel::reward_from_lm(tmp.path().join("ckpt"), Device::Cpu).unwrap();
        rm.save(tmp.path().join("rm")).unwrap();
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("rm/config.json")).unwrap(),
        )
        .unwrap();
        let want = match kind {
            "llama" => "LlamaForSequenceClassification",
            "qwen2" => "Qwen2ForSequenceClassification",
            "qwen3" => "Qwen3ForSequenceClassification",
            "gemma3" => "Gemma3TextForSequenceClassification",
            "smollm3" => "SmolLM3ForSequenceClassification",
            "gemma2" => "Gemma2ForSequenceClassification",
            "olmo2" => "Olmo2ForSequenceClassification",
            _ => "MistralForSequenceClassification",
        };
        assert_eq!(cfg["architectures"][0], want);
        let rm = ScalarModel::load(tmp.path().join("rm"), Device::Cpu).unwrap();
        assert_eq!(rm.head_kind(), HeadKind::Reward);
        let v = ScalarModel::value_from_reward(tmp.path().join("rm"), Device::Cpu).unwrap();
        let vals = tch::no_grad(|| v.values(&ids, &ids.ones_like(), false)).unwrap();
        assert_eq!(vals.size(), ids.size());
    }
}

/// A file without `lm_head.weight` is a tied model, even when its config says untied.
#[test]
fn missing_lm_head_means_tied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_copy(tmp.path(), "qwen2", |cfg| {
        cfg["tie_word_embeddings"] = false.into()
    });
    let lm = CausalLm::load(&dir, Device::Cpu).unwrap();
    assert!(lm.config().tie_word_embeddings());
    let exp = expected("qwen2");
    let (ids, mask) = row(&exp.sequences[0]);
    let a = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
    let b = tch::no_grad(|| load("qwen2").logits(&ids, &mask, false)).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[derive(Deserialize)]
struct TransformersCheck {
    max_abs_logit_diff: f64,
}

/// Checkpoints saved by our code load in `transformers` with the same logits:
/// make_llama_fixture.py `check-rust` recorded the difference; the committed files are what the
/// current code writes, byte for byte.
#[test]
fn our_checkpoints_load_in_transformers() {
    for kind in KINDS {
        let dir = fixtures().join(format!("rust-saved-{kind}"));
        let check: TransformersCheck = serde_json::from_str(
            &std::fs::read_to_string(dir.join("transformers_check.json")).unwrap(),
        )
        .unwrap();
        println!(
            "{kind}: transformers on our checkpoint: {:e}",
            check.max_abs_logit_diff
        );
        assert!(check.max_abs_logit_diff < 1e-4, "{kind}");
        let lm = CausalLm::load(&dir, Device::Cpu).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        lm.save(tmp.path().join("lm")).unwrap();
        for file in ["model.safetensors", "config.json"] {
            let a = std::fs::read(tmp.path().join("lm").join(file)).unwrap();
            let b = std::fs::read(dir.join(file)).unwrap();
            assert!(
                a == b,
                "{kind}: {file} differs from what transformers checked"
            );
        }
    }
}

#[test]
fn random_llama_gets_gradients_and_generates() {
    let mut cfg = LlamaConfig::sized(2, 4, 2, 32, 48, 50, 32);
    cfg.initializer_range = 0.2;
    let lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let ids = Tensor::randint(50, [2, 9], (Kind::Int64, Device::Cpu));
    // Gradients reach every variable.
    let logits = lm.logits(&ids, &ids.ones_like(), true).unwrap();
    logits.square().mean(Kind::Float).backward();
    for (name, v) in lm.var_store().variables() {
        assert!(v.grad().defined(), "{name} has no gradient");
    }
    let out = lm
        .generate(&ids, &ids.ones_like(), &GenerateConfig::greedy(4))
        .unwrap();
    assert_eq!(out.tokens.size(), [2, 4]);
    let unc = lm
        .generate_uncached(&ids, &ids.ones_like(), &GenerateConfig::greedy(4))
        .unwrap();
    assert_eq!(rows(&out.tokens), rows(&unc.tokens));
}

#[test]
fn unknown_model_type_is_a_clear_error() {
    let err = ModelConfig::from_json(r#"{"model_type": "mamba"}"#).unwrap_err();
    assert!(
        err.contains("\"mamba\"") && err.contains("gpt2, llama, qwen2, qwen3, mistral"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gemma"}"#).unwrap();
    let err = CausalLm::load(&dir, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("\"gemma\"")
            && err.contains("llama, qwen2, qwen3, mistral, gemma2, gemma3_text, smollm3, olmo2"),
        "{err}"
    );
    // Llama 3 lists several EOS ids: the first is used.
    let c = ModelConfig::from_json(r#"{"model_type": "llama", "eos_token_id": [7, 9]}"#).unwrap();
    assert_eq!(c.eos_token_id(), Some(7));
    let err = ModelConfig::from_json(r#"{"model_type": "llama", "num_attention_heads": 6, "num_key_value_heads": 4, "hidden_size": 48}"#).unwrap_err();
    assert!(err.contains("num_key_value_heads"), "{err}");
    // Attention this crate does not compute is refused, not approximated.
    let err = ModelConfig::from_json(
        r#"{"model_type": "qwen3", "layer_types": ["full_attention", "sliding_attention"]}"#,
    )
    .unwrap_err();
    assert!(err.contains("sliding_attention"), "{err}");
    let err =
        ModelConfig::from_json(r#"{"model_type": "mistral", "sliding_window": 0}"#).unwrap_err();
    assert!(err.contains("sliding_window"), "{err}");
    // Gemma 3: what its block cannot be is refused by name.
    let gemma = |extra: &str| {
        ModelConfig::from_json(&format!(
            r#"{{"model_type": "gemma3_text", "num_hidden_layers": 2, "hidden_size": 32,
                "num_attention_heads": 4, "head_dim": 8, "vocab_size": 10, "bos_token_id": 2,
                "eos_token_id": 1, "pad_token_id": 0 {extra}}}"#
        ))
    };
    let c = gemma("").unwrap();
    let c = c.as_llama().unwrap();
    // Five of every six layers are local by default, with a window of 4096.
    assert_eq!(
        (c.layer_window(0), c.layer_window(1)),
        (Some(4096), Some(4096))
    );
    for (extra, want) in [
        (r#", "layer_types": ["full_attention"]"#, "lists 1 layers"),
        (
            r#", "layer_types": ["full_attention", "chunked_attention"]"#,
            "chunked_attention",
        ),
        (r#", "sliding_window": null"#, "sliding_window"),
        (r#", "use_bidirectional_attention": true"#, "EmbeddingGemma"),
        (r#", "hidden_activation": "silu""#, "hidden_activation"),
        (
            r#", "final_logit_softcapping": -1"#,
            "final_logit_softcapping",
        ),
        (
            r#", "rope_parameters": {"full_attention": {"rope_type": "yarn"}}"#,
            "yarn",
        ),
    ] {
        let err = gemma(extra).unwrap_err();
        assert!(err.contains(want), "{extra}: {err}");
    }
    // Qwen3's default head width is 128, not hidden_size / heads.
    let c = ModelConfig::from_json(
        r#"{"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4}"#,
    )
    .unwrap();
    assert_eq!(c.as_llama().unwrap().head_dim(), 128);
}

/// Mistral's sliding window: within it, attention is full; beyond it, a position no longer
/// sees the keys `sliding_window` or more tokens back (the fixture's window, 6, is checked
/// against `transformers` in the tests above).
#[test]
fn a_mistral_window_hides_only_keys_beyond_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wide = |w: i64| {
        let dir = edited_copy(&tmp.path().join(w.to_string()), "mistral", |cfg| {
            cfg["sliding_window"] = w.into()
        });
        CausalLm::load(&dir, Device::Cpu).unwrap()
    };
    std::fs::create_dir_all(tmp.path().join("8")).unwrap();
    std::fs::create_dir_all(tmp.path().join("64")).unwrap();
    let (window, full) = (wide(8), wide(64));
    assert_eq!(
        window.config().n_positions(),
        64,
        "the window is no context bound"
    );
    let ids: Vec<i64> = (5..17).collect();
    let (ids, mask) = row(&ids);
    let a = tch::no_grad(|| window.logits(&ids, &mask, false)).unwrap();
    let b = tch::no_grad(|| full.logits(&ids, &mask, false)).unwrap();
    assert_eq!(
        max_abs_diff(&a.narrow(1, 0, 8), &b.narrow(1, 0, 8)),
        0.0,
        "within the window: full attention"
    );
    for t in 8..12 {
        assert!(
            max_abs_diff(&a.narrow(1, t, 1), &b.narrow(1, t, 1)) > 1e-3,
            "position {t} sees beyond the window"
        );
    }
}

/// SmolLM3's defaults: without `rope_parameters`, RoPE's base is 2e6; without
/// `no_rope_layers` and `layer_types`, every `no_rope_layer_interval`-th layer has no RoPE and,
/// with `use_sliding_window`, slides. The fixture written out in full reads the same.
#[test]
fn smollm3_defaults_read_as_transformers_fills_them() {
    assert_edit_keeps_logits("smollm3", |cfg| {
        let map = cfg.as_object_mut().unwrap();
        for key in ["rope_parameters", "no_rope_layers", "layer_types"] {
            map.remove(key).unwrap();
        }
    });
    let bad = |extra: &str| {
        ModelConfig::from_json(&format!(
            r#"{{"model_type": "smollm3", "num_hidden_layers": 2, "hidden_size": 32,
                "num_attention_heads": 4, "vocab_size": 10, "bos_token_id": 1,
                "eos_token_id": 1 {extra}}}"#
        ))
        .unwrap_err()
    };
    for (extra, want) in [
        (r#", "no_rope_layers": [1]"#, "one entry per layer"),
        (r#", "no_rope_layers": [1, 2]"#, "1 (RoPE) or 0"),
        (
            r#", "use_sliding_window": true, "sliding_window": null,
               "layer_types": ["full_attention", "sliding_attention"]"#,
            "sliding_window",
        ),
    ] {
        let err = bad(extra);
        assert!(err.contains(want), "{extra}: {err}");
    }
}

/// Gemma 3's config as the hub's checkpoints still write it (`rope_theta`, `rope_scaling`,
/// `rope_local_base_freq`, the layer pattern as `sliding_window_pattern`) reads as the
/// transformers 5 form the fixture was saved in: the same logits, bit for bit.
#[test]
fn gemma3_legacy_config_reads_as_the_current_one() {
    assert_edit_keeps_logits("gemma3", |cfg| {
        let map = cfg.as_object_mut().unwrap();
        map.remove("rope_parameters");
        map.remove("layer_types");
        map.insert("rope_theta".into(), 1e6.into());
        map.insert("rope_local_base_freq".into(), 1e4.into());
        map.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "linear", "factor": 2.0}),
        );
        map.insert("sliding_window_pattern".into(), 2.into());
    });
}

/// The `kind` fixture with its `config.json` changed by `edit` computes the fixture's logits,
/// bit for bit (on its second sequence).
fn assert_edit_keeps_logits(kind: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_copy(tmp.path(), kind, edit);
    let (ids, mask) = row(&expected(kind).sequences[1]);
    let logits = |lm: CausalLm| tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
    let a = logits(CausalLm::load(&dir, Device::Cpu).unwrap());
    assert_eq!(max_abs_diff(&a, &logits(load(kind))), 0.0, "{kind}");
}

/// Llama 3 Instruct lists several EOS ids (`[128001, 128008, 128009]`): the list is kept, written
/// back as a list (so `transformers` still stops at each), and generation stops at any of them.
#[test]
fn a_list_of_eos_ids_is_kept_and_stops_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = expected("llama");
    let greedy = &exp.greedy_alone[0];
    // The third greedy token as a second EOS id: the row must stop at its first occurrence.
    let stop = greedy[2];
    let first = greedy.iter().position(|&t| t == stop).unwrap();
    let unused = (0..320).find(|t| !greedy.contains(t)).unwrap();
    let dir = edited_copy(tmp.path(), "llama", |cfg| {
        cfg["eos_token_id"] = serde_json::json!([unused, stop])
    });

    let lm = CausalLm::load(&dir, Device::Cpu).unwrap();
    assert_eq!(lm.config().eos_token_id(), Some(unused));
    assert_eq!(lm.config().eos_token_ids(), [unused, stop]);
    let (ids, mask) = row(&exp.prompts[0]);
    let mut gen = GenerateConfig::greedy(exp.greedy_max_new_tokens);
    gen.eos_token_id = lm.config().eos_token_id();
    gen.pad_token_id = 0;
    // With the first id alone, nothing stops the row.
    assert_eq!(
        rows(&lm.generate(&ids, &mask, &gen).unwrap().tokens)[0],
        *greedy
    );
    gen.stop_token_ids = lm.config().eos_token_ids();
    for out in [
        lm.generate(&ids, &mask, &gen).unwrap(),
        lm.generate_uncached(&ids, &mask, &gen).unwrap(),
    ] {
        let got = &rows(&out.tokens)[0];
        assert_eq!(got[..=first], greedy[..=first], "up to the stop token");
        assert!(
            got[first + 1..].iter().all(|&t| t == 0),
            "padded after it: {got:?}"
        );
    }

    // Saved and loaded: the list survives, in config.json as a list.
    lm.save(tmp.path().join("saved")).unwrap();
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("saved/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["eos_token_id"], serde_json::json!([unused, stop]));
    let back = CausalLm::load(tmp.path().join("saved"), Device::Cpu).unwrap();
    assert_eq!(back.config().eos_token_ids(), [unused, stop]);
    // A single id stays a single id; a bad list is a clear error.
    assert_eq!(load("llama").config().eos_token_ids(), [0]);
    let err = ModelConfig::from_json(r#"{"model_type": "llama", "eos_token_id": [1, 99999]}"#)
        .unwrap_err();
    assert!(err.contains("eos_token_id 99999"), "{err}");
    let err =
        ModelConfig::from_json(r#"{"model_type": "llama", "eos_token_id": [1, "x"]}"#).unwrap_err();
    assert!(err.contains("not a token id"), "{err}");
}
