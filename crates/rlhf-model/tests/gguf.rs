//! GGUF import on synthetic files: the tiny Hugging Face Llama fixture written as llama.cpp
//! would (Q/K rows permuted, llama.cpp names, tokenizer metadata) imports back to the same
//! logits; the permutation is inverted exactly; bad files get clear errors.

use rlhf_model::checkpoint::read_safetensors;
use rlhf_model::gguf::import::{permute_qk, unpermute_qk};
use rlhf_model::gguf::{import_gguf, GgufFile};
use rlhf_model::{CausalLm, Policy};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Metadata values of the tiny writer.
enum V {
    Bool(bool),
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A GGUF v3 file: metadata, then tensors `(name, torch shape, ggml type, raw bytes)`.
fn write_gguf<K: AsRef<str>>(
    path: &Path,
    meta: &[(K, V)],
    tensors: &[(String, Vec<i64>, u32, Vec<u8>)],
) {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        string(&mut out, k.as_ref());
        match v {
            V::Bool(b) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*b));
            }
            V::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            V::Strs(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                for s in a {
                    string(&mut out, s);
                }
            }
            V::I32s(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                for x in a {
                    out.extend(x.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, shape, ty, raw) in tensors {
        string(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset += (raw.len() as u64).div_ceil(32) * 32;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    for (_, _, _, raw) in tensors {
        out.extend(raw);
        while out.len() % 32 != 0 {
            out.push(0);
        }
    }
    std::fs::write(path, out).unwrap();
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    let v = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bytes(t: &Tensor) -> Vec<u8> {
    let h = t.to_kind(Kind::Half).flatten(0, -1);
    let mut out = vec![0u8; h.numel() * 2];
    h.copy_data_u8(&mut out, h.numel());
    out
}

fn llama_cpp_name(hf: &str) -> String {
    let map = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, n)) = map.iter().find(|(h, _)| *h == hf) {
        return n.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (i, part) = rest.split_once('.').unwrap();
    let parts = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let (_, n) = parts.iter().find(|(h, _)| *h == module).unwrap();
    format!("blk.{i}.{n}.{suffix}")
}

/// The tiny HF Llama fixture (the Qwen2 or Qwen3 fixture for `arch` "qwen2" or "qwen3") as
/// llama.cpp's convert_hf_to_gguf.py would write it (f16 for the matrices when `f16`; Q/K rows
/// permuted for "llama" only, as llama.cpp runs Qwen2 and Qwen3 with non-interleaved RoPE).
fn fixture_as_gguf(path: &Path, f16: bool, arch: &str) {
    let qwen = arch != "llama";
    let dir = fixtures().join(match arch {
        "qwen2" | "qwen3" => format!("hf-tiny-{arch}"),
        _ => "hf-tiny-llama".into(),
    });
    let (kv, theta) = match arch {
        "qwen2" => (1, 1e6),
        "qwen3" => (2, 1e6),
        _ => (2, 1e4),
    };
    let tensors = read_safetensors(&dir.join("model.safetensors")).unwrap();
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let vocab = tok["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let merges: Vec<String> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            pair => format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            ),
        })
        .collect();
    let types: Vec<i32> = tokens
        .iter()
        .map(|t| if t == "<|endoftext|>" { 3 } else { 1 })
        .collect();
    let key = |k: &str| format!("{arch}.{k}");
    let k = |k: &str| k.to_string();
    let meta = vec![
        (k("general.architecture"), V::Str(arch.into())),
        (key("block_count"), V::U32(2)),
        (key("context_length"), V::U32(64)),
        (key("embedding_length"), V::U32(32)),
        (key("feed_forward_length"), V::U32(64)),
        (key("attention.head_count"), V::U32(4)),
        (key("attention.head_count_kv"), V::U32(kv)),
        (key("rope.freq_base"), V::F32(theta)),
        // Qwen3's head width (16) is not hidden / heads (8); llama.cpp writes it as here.
        (
            key("attention.key_length"),
            V::U32(if arch == "qwen3" { 16 } else { 8 }),
        ),
        (key("attention.layer_norm_rms_epsilon"), V::F32(1e-5)),
        (k("tokenizer.ggml.model"), V::Str("gpt2".into())),
        (k("tokenizer.ggml.pre"), V::Str("gpt2".into())),
        (k("tokenizer.ggml.tokens"), V::Strs(tokens)),
        (k("tokenizer.ggml.token_type"), V::I32s(types)),
        (k("tokenizer.ggml.merges"), V::Strs(merges)),
        (k("tokenizer.ggml.bos_token_id"), V::U32(0)),
        // Llama 3's GGUFs ask for a BOS before every text; Qwen's do not.
        (k("tokenizer.ggml.add_bos_token"), V::Bool(arch == "llama")),
        (k("tokenizer.ggml.eos_token_id"), V::U32(0)),
        // As Llama 3 GGUFs name `<|eot_id|>`: a second id that ends generation.
        (k("tokenizer.ggml.eot_token_id"), V::U32(7)),
        (
            k("tokenizer.chat_template"),
            V::Str("{{ messages }}".into()),
        ),
    ];
    let mut out = vec![];
    for (name, t) in &tensors {
        let mut t = t.shallow_clone();
        if !qwen && name.contains("q_proj") {
            t = permute_qk(&t, 4);
        } else if !qwen && name.contains("k_proj") {
            t = permute_qk(&t, kv as i64);
        }
        let (ty, raw) = if f16 && t.dim() == 2 {
            (1, f16_bytes(&t))
        } else {
            (0, f32_bytes(&t))
        };
        out.push((llama_cpp_name(name), t.size(), ty, raw));
    }
    write_gguf(path, &meta, &out);
}

#[test]
fn permutation_is_inverted() {
    for (rows, heads) in [(32, 4), (16, 2), (24, 3)] {
        let w = Tensor::randn([rows, 5], (Kind::Float, Device::Cpu));
        let p = permute_qk(&w, heads);
        assert!(!p.equal(&w));
        assert!(unpermute_qk(&p, heads).equal(&w));
        // Row i of head h's first half pairs with row i of its second half: llama.cpp puts
        // them next to each other.
        let d = rows / heads;
        assert!(p.get(1).equal(&w.get(d / 2)));
        let b = Tensor::randn([rows], (Kind::Float, Device::Cpu));
        assert!(unpermute_qk(&permute_qk(&b, heads), heads).equal(&b));
    }
}

#[test]
fn llama_fixture_round_trips_through_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("hf-tiny-llama/expected.json")).unwrap(),
    )
    .unwrap();
    let seq: Vec<i64> = serde_json::from_value(exp["sequences"][0].clone()).unwrap();
    let ids = Tensor::from_slice(&seq).unsqueeze(0);
    let hf = CausalLm::load(fixtures().join("hf-tiny-llama"), Device::Cpu).unwrap();
    let hf_cfg = hf.config().as_llama().unwrap();
    let mut logits = vec![];
    for f16 in [false, true] {
        let path = tmp.path().join(format!("tiny-{f16}.gguf"));
        fixture_as_gguf(&path, f16, "llama");
        let out = tmp.path().join(format!("ckpt-{f16}"));
        let report = import_gguf(&path, &out).unwrap();
        assert!(report.chat_template);
        assert_eq!(report.n_tensors, 2 * 9 + 3);
        let lm = CausalLm::load(&out, Device::Cpu).unwrap();
        let c = lm.config().as_llama().unwrap();
        // The shape is the fixture's (the synthetic GGUF has no Llama 3 rope scaling).
        assert_eq!(
            (
                c.vocab_size,
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers
            ),
            (
                hf_cfg.vocab_size,
                hf_cfg.hidden_size,
                hf_cfg.intermediate_size,
                2
            )
        );
        assert_eq!(
            (c.num_attention_heads, c.kv_heads(), c.head_dim()),
            (4, 2, 8)
        );
        assert!(!c.tie_word_embeddings);
        // The EOS and the end-of-turn id, as a Hugging Face config lists them.
        assert_eq!(lm.config().eos_token_ids(), [0, 7]);
        // The tokenizer built from the metadata encodes as the fixture's.
        assert_eq!(
            lm.tokenizer()
                .unwrap()
                .encode("the quick brown fox")
                .unwrap(),
            seq
        );
        // `add_bos_token`: with special tokens, a text starts with the BOS (id 0 here), as
        // Hugging Face's Llama 3 tokenizer.json adds it.
        let with_specials = lm
            .tokenizer()
            .unwrap()
            .inner()
            .encode("the quick brown fox", true)
            .unwrap();
        let with_specials: Vec<i64> = with_specials
            .get_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect();
        assert_eq!(with_specials, [vec![0], seq.clone()].concat());
        if !f16 {
            // f32 tensors come back bit for bit: names mapped, Q/K permutation undone.
            let ours = read_safetensors(&out.join("model.safetensors")).unwrap();
            let theirs =
                read_safetensors(&fixtures().join("hf-tiny-llama/model.safetensors")).unwrap();
            assert_eq!(ours.len(), theirs.len());
            for (k, v) in &theirs {
                assert!(v.equal(&ours[k]), "{k}");
            }
        }
        logits.push(tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap());
        let tc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(tc["chat_template"], "{{ messages }}");
        assert_eq!(tc["eos_token"], "<|endoftext|>");
        assert_eq!(
            lm.tokenizer().unwrap().chat_template(),
            Some("{{ messages }}")
        );
        // The template travels with the tokenizer through a later save.
        let again = out.with_extension("resaved");
        lm.save(&again).unwrap();
        let back = CausalLm::load(&again, Device::Cpu).unwrap();
        assert_eq!(
            back.tokenizer().unwrap().chat_template(),
            Some("{{ messages }}")
        );
    }
    // f16 weights: close to the f32 import, not equal.
    let d = f64::try_from((&logits[0] - &logits[1]).abs().max()).unwrap();
    assert!(d > 0.0 && d < 0.1, "f16 vs f32: {d}");
}

#[test]
fn qwen_fixtures_round_trip_through_gguf() {
    for arch in ["qwen2", "qwen3"] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qwen.gguf");
        fixture_as_gguf(&path, false, arch);
        let out = tmp.path().join("ckpt");
        import_gguf(&path, &out).unwrap();
        let lm = CausalLm::load(&out, Device::Cpu).unwrap();
        let c = lm.config().as_llama().unwrap();
        assert_eq!(c.model_type, arch);
        assert!(c.tie_word_embeddings);
        if arch == "qwen2" {
            assert!(c.kv_heads() == 1 && c.qkv_bias());
        } else {
            assert!(c.kv_heads() == 2 && c.qk_norm() && c.head_dim() == 16);
        }
        let ours = read_safetensors(&out.join("model.safetensors")).unwrap();
        let dir = fixtures().join(match arch {
            "qwen2" | "qwen3" => format!("hf-tiny-{arch}"),
            _ => "hf-tiny-llama".into(),
        });
        let theirs = read_safetensors(&dir.join("model.safetensors")).unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (k, v) in &theirs {
            assert!(v.equal(&ours[k]), "{arch}: {k}");
        }
        // transformers' logits on the same weights.
        let exp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let seq: Vec<i64> = serde_json::from_value(exp["sequences"][0].clone()).unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(exp["logits"][0].clone()).unwrap();
        let ids = Tensor::from_slice(&seq).unsqueeze(0);
        let got = tch::no_grad(|| lm.logits(&ids, &ids.ones_like(), false)).unwrap();
        let want = Tensor::from_slice(&want.concat()).view_as(&got);
        let d = f64::try_from((&got - &want).abs().max()).unwrap();
        assert!(d < 1e-4, "{arch}: {d}");
        // No `add_bos_token`: special tokens add nothing before a text.
        let tok = lm.tokenizer().unwrap();
        let text = "the quick brown fox";
        let with_specials = tok.inner().encode(text, true).unwrap();
        let plain: Vec<u32> = tok
            .encode(text)
            .unwrap()
            .iter()
            .map(|&i| i as u32)
            .collect();
        assert_eq!(with_specials.get_ids(), plain);
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.gguf");
    std::fs::write(&p, b"GGML....").unwrap();
    let e = GgufFile::read(&p).unwrap_err().to_string();
    assert!(e.contains("magic"), "{e}");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00\x01").unwrap();
    let e = GgufFile::read(&p).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    // An architecture we do not import.
    fixture_as_gguf(&p, false, "mamba");
    let e = import_gguf(&p, tmp.path().join("o"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"mamba\"") && e.contains("llama, qwen2"), "{e}");
    assert!(!tmp.path().join("o").exists());
    // A tensor type we do not dequantize (Q6_K = 14).
    let meta = [("general.architecture", V::Str("llama".into()))];
    write_gguf(
        &p,
        &meta,
        &[("token_embd.weight".into(), vec![1, 256], 14, vec![0; 210])],
    );
    let g = GgufFile::read(&p).unwrap();
    let e = g.tensor_f32(&g.tensors[0]).unwrap_err().to_string();
    assert!(e.contains("Q6_K") && e.contains("Q4_1"), "{e}");
}
