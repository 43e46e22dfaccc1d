//! LoRA adapters on GPT-2 and the Llama family: a fresh adapter changes nothing, only adapters
//! train, adapters off is the base model, the merged export equals adapters on, and a saved
//! checkpoint (PEFT files beside the base weights) loads back with its adapters.

use rlhf_model::lora::{is_adapter_variable, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use rlhf_model::train::{AdamW, AdamWConfig};
use rlhf_model::{CausalLm, Gpt2Config, LlamaConfig, LoraConfig, ModelConfig, Policy};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

fn models() -> Vec<(&'static str, ModelConfig, Vec<&'static str>)> {
    vec![
        (
            "gpt2",
            Gpt2Config::sized(2, 2, 16, 40, 32).with_dropout(0.0).into(),
            vec!["c_attn", "c_proj", "c_fc"],
        ),
        (
            "llama",
            LlamaConfig::sized(2, 4, 2, 16, 24, 40, 32).into(),
            vec![
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        ),
    ]
}

fn batch() -> (Tensor, Tensor) {
    let ids =
        Tensor::from_slice(&[3i64, 7, 1, 9, 12, 5, 0, 0, 4, 8, 2, 6, 11, 3, 9, 1]).view([2, 8]);
    let mask =
        Tensor::from_slice(&[0i64, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]).view([2, 8]);
    (ids, mask)
}

fn logits(lm: &CausalLm) -> Tensor {
    let (ids, mask) = batch();
    tch::no_grad(|| lm.logits(&ids, &mask, false)).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn snapshot(lm: &CausalLm) -> BTreeMap<String, Tensor> {
    lm.var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

/// A few AdamW steps on next-token loss, so that `B` moves away from zero.
fn train(lm: &CausalLm, steps: usize) {
    let mut opt = AdamW::new(
        lm.var_store(),
        &AdamWConfig {
            lr: 0.05,
            ..Default::default()
        },
    )
    .unwrap();
    let (ids, mask) = batch();
    for _ in 0..steps {
        let lp = lm.token_log_probs(&ids, &mask, 1.0, true).unwrap();
        let loss = -lp.mean(Kind::Float);
        opt.zero_grad_backward(&loss).unwrap();
        opt.step();
    }
}

#[test]
fn adapters_start_at_the_base_train_alone_switch_off_merge_and_round_trip() {
    for (arch, cfg, all) in models() {
        tch::manual_seed(0);
        let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
        let base = logits(&lm);
        let lora = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: all.iter().map(|s| s.to_string()).collect(),
        };
        let n = lm.attach_lora(&lora).unwrap();
        let per_layer = if arch == "gpt2" { 4 } else { 7 };
        assert_eq!(n, 2 * per_layer, "{arch}");
        // B = 0: the adapted model is its base.
        assert!(logits(&lm).equal(&base), "{arch}: step 0");
        // Only adapters are trainable.
        let trainable = lm.var_store().trainable_variables();
        assert_eq!(trainable.len(), 2 * n, "{arch}");
        let before = snapshot(&lm);
        train(&lm, 5);
        let after = snapshot(&lm);
        let mut moved = 0;
        for (name, t) in &before {
            let same = t.equal(&after[name]);
            if is_adapter_variable(name) {
                moved += usize::from(!same);
            } else {
                assert!(same, "{arch}: base weight {name} changed");
            }
        }
        assert!(moved >= n, "{arch}: {moved} adapter tensors moved");
        let on = logits(&lm);
        assert!(
            max_diff(&on, &base) > 1e-3,
            "{arch}: training changed nothing"
        );
        // Off: exactly the base; and back on.
        lm.set_adapters_enabled(false);
        assert!(logits(&lm).equal(&base), "{arch}: adapters off");
        lm.set_adapters_enabled(true);
        assert!(logits(&lm).equal(&on));
        assert!(lm.with_adapters_disabled(|| logits(&lm)).equal(&base));
        assert!(lm.adapters_enabled());

        let tmp = tempfile::tempdir().unwrap();
        // Merged export: an ordinary checkpoint equal to adapters on.
        lm.save_merged(tmp.path().join("merged")).unwrap();
        assert!(!tmp.path().join("merged").join(ADAPTER_CONFIG_FILE).exists());
        let merged = CausalLm::load(tmp.path().join("merged"), Device::Cpu).unwrap();
        assert!(merged.lora().is_none());
        let d = max_diff(&logits(&merged), &on);
        assert!(d < 1e-5, "{arch}: merged vs adapters on: {d}");
        // Save with adapters: base weights + PEFT files; loads back adapted.
        let dir = tmp.path().join("adapted");
        lm.save(&dir).unwrap();
        let names =
            rlhf_model::checkpoint::read_safetensors(&dir.join("model.safetensors")).unwrap();
        assert!(names.keys().all(|n| !is_adapter_variable(n)));
        let peft =
            rlhf_model::checkpoint::read_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE)).unwrap();
        assert_eq!(peft.len(), 2 * n);
        assert!(
            peft.keys().all(|k| k.starts_with("base_model.model.")),
            "{peft:?}"
        );
        let back = CausalLm::load(&dir, Device::Cpu).unwrap();
        assert_eq!(back.lora().unwrap().r, 4);
        assert!(logits(&back).equal(&on), "{arch}: reloaded adapters");
        back.set_adapters_enabled(false);
        assert!(logits(&back).equal(&base), "{arch}: reloaded base");
        // The adapter alone (PEFT's save_pretrained layout) onto a fresh base.
        lm.save_adapter(tmp.path().join("adapter")).unwrap();
        tch::manual_seed(0);
        let mut fresh = CausalLm::new(&cfg, Device::Cpu).unwrap();
        fresh.load_adapter(tmp.path().join("adapter")).unwrap();
        assert!(logits(&fresh).equal(&on), "{arch}: adapter on a fresh base");
    }
}

#[test]
fn lora_settings_are_checked() {
    let cfg: ModelConfig = LlamaConfig::sized(1, 2, 1, 8, 16, 20, 16).into();
    let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let bad = LoraConfig {
        target_modules: vec!["c_attn".into()],
        ..Default::default()
    };
    let err = lm.attach_lora(&bad).unwrap_err().to_string();
    assert!(err.contains("c_attn") && err.contains("q_proj"), "{err}");
    let err = lm
        .attach_lora(&LoraConfig {
            r: 0,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("r is 0"), "{err}");
    // Defaults: PEFT's q_proj and v_proj.
    assert_eq!(lm.attach_lora(&LoraConfig::default()).unwrap(), 2);
    let err = lm
        .attach_lora(&LoraConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already"), "{err}");
    // A GPT-2 adapter does not go onto a Llama.
    let tmp = tempfile::tempdir().unwrap();
    let mut g = CausalLm::new(&Gpt2Config::sized(1, 2, 8, 20, 16), Device::Cpu).unwrap();
    g.attach_lora(&LoraConfig::default()).unwrap();
    g.save_adapter(tmp.path()).unwrap();
    let mut l = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let err = l.load_adapter(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("fan_in_fan_out"), "{err}");
}
