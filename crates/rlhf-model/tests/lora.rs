//! LoRA adapters on GPT-2 and the Llama family: a fresh adapter changes nothing, only adapters
//! train, adapters off is the base model, the merged export equals adapters on, and a saved
//! checkpoint (PEFT files beside the base weights) loads back with its adapters.

use rlhf_model::lora::{is_adapter_variable, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use rlhf_model::train::{AdamW, AdamWConfig};
use rlhf_model::{CausalLm, Gpt2Config, LlamaConfig, LoraConfig, ModelConfig, Policy};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// libtorch's generator is global: the tests that seed it and draw from it take turns.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
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
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
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

/// Reward and value models with adapters: the body's adapters and the whole scalar head train
/// (PEFT's `modules_to_save`), nothing else; fresh adapters change no score; the checkpoint
/// (base + PEFT files with the head) loads back equal; a value function made from it keeps the
/// adapters; the merged export scores the same without them.
#[test]
fn scalar_models_train_adapters_and_their_head() {
    use rlhf_model::{HeadKind, RewardModel, ScalarModel, ValueFunction};
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for (arch, cfg, all) in models() {
        tch::manual_seed(3);
        let mut rm = ScalarModel::new(&cfg, HeadKind::Reward, Device::Cpu).unwrap();
        let (ids, mask) = batch();
        let score = |m: &ScalarModel| tch::no_grad(|| m.score(&ids, &mask, false)).unwrap();
        let before = score(&rm);
        let base = snapshot_vs(rm.var_store_mut());
        let lora = LoraConfig {
            r: 2,
            target_modules: all.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(rm.attach_lora(&lora).unwrap() > 0, "{arch}");
        assert_eq!(max_diff(&before, &score(&rm)), 0.0, "{arch}");
        let dir = tempfile::tempdir().unwrap();
        rm.save(dir.path().join("start")).unwrap();
        let trainable: Vec<String> = {
            let vs = rm.var_store_mut();
            let vars = vs.variables();
            let ptrs: Vec<_> = vs
                .trainable_variables()
                .iter()
                .map(|t| t.data_ptr())
                .collect();
            vars.into_iter()
                .filter(|(_, t)| ptrs.contains(&t.data_ptr()))
                .map(|(n, _)| n)
                .collect()
        };
        assert!(trainable.contains(&"score.weight".to_string()), "{arch}");
        assert!(
            trainable
                .iter()
                .all(|n| n == "score.weight" || is_adapter_variable(n)),
            "{arch}: {trainable:?}"
        );
        // Train toward a high score for row 0.
        let mut opt = AdamW::new(
            rm.var_store_mut(),
            &AdamWConfig {
                lr: 0.05,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..4 {
            let loss = -rm.score(&ids, &mask, true).unwrap().select(0, 0);
            opt.zero_grad_backward(&loss).unwrap();
            opt.step();
        }
        let after = score(&rm);
        assert!(max_diff(&before, &after) > 1e-3, "{arch}: nothing trained");
        for (n, t) in snapshot_vs(rm.var_store_mut()) {
            if let Some(b) = base.get(&n) {
                let moved = max_diff(b, &t) > 0.0;
                assert_eq!(moved, n == "score.weight", "{arch}: {n}");
            }
        }
        rm.set_adapters_enabled(false);
        let off = score(&rm);
        rm.set_adapters_enabled(true);
        assert!(
            max_diff(&off, &after) > 0.0,
            "{arch}: adapters off changed nothing"
        );

        rm.save(dir.path().join("rm")).unwrap();
        // The base weights' file keeps the head as attached (the trained one is the adapter's
        // modules_to_save copy): byte-identical from checkpoint to checkpoint, also after a
        // load, so the checkpoints share it (rlhf_io hard-links equal files).
        let weights =
            |d: &str| std::fs::read(dir.path().join(d).join("model.safetensors")).unwrap();
        assert!(
            weights("start") == weights("rm"),
            "{arch}: the base file changed"
        );
        let peft: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("rm").join(ADAPTER_CONFIG_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(peft["task_type"], "SEQ_CLS");
        assert_eq!(peft["modules_to_save"], serde_json::json!(["score"]));
        let back = ScalarModel::load(dir.path().join("rm"), Device::Cpu).unwrap();
        assert_eq!(back.lora().unwrap().r, 2);
        assert!(max_diff(&after, &score(&back)) < 1e-6, "{arch}: round trip");
        back.save(dir.path().join("again")).unwrap();
        assert!(
            weights("again") == weights("rm"),
            "{arch}: the base file changed on reload"
        );

        let value = ScalarModel::value_from_reward(dir.path().join("rm"), Device::Cpu).unwrap();
        assert!(value.lora().is_some(), "{arch}");
        let v = tch::no_grad(|| value.values(&ids, &mask, false)).unwrap();
        assert_eq!(v.size(), vec![2, 8]);

        rm.save_merged(dir.path().join("merged")).unwrap();
        assert!(!dir
            .path()
            .join("merged")
            .join(ADAPTER_WEIGHTS_FILE)
            .exists());
        let merged = ScalarModel::load(dir.path().join("merged"), Device::Cpu).unwrap();
        assert!(merged.lora().is_none());
        assert!(max_diff(&after, &score(&merged)) < 1e-4, "{arch}: merged");
    }
}

/// A reward model is not built from an LM whose adapters it would silently drop.
#[test]
fn reward_from_an_adapted_lm_asks_for_a_merge() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (_, cfg, _) = models().remove(1);
    let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    lm.attach_lora(&LoraConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    lm.save(dir.path()).unwrap();
    let err = rlhf_model::ScalarModel::reward_from_lm(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("merge"), "{err}");
}

fn snapshot_vs(vs: &mut tch::nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}
