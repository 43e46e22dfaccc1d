//! Configs survive `--set`: an override changes its key and nothing else (the resolved config
//! goes through TOML, where options that default to on must keep an explicit "off").

use rlhf_examples::pipeline::PipelineConfig;
use rlhf_examples::run::load_config;
use rlhf_sft::ResidualDropout;

#[test]
fn an_override_changes_only_its_key() {
    let cfg: PipelineConfig = load_config(None, &["rounds=2".to_string()]).unwrap();
    let want = PipelineConfig {
        rounds: 2,
        ..PipelineConfig::default()
    };
    assert_eq!(cfg, want);
    // The pipeline pretrains without dropout; the round trip must not turn it on.
    assert_eq!(cfg.pretrain.residual_dropout, ResidualDropout::Off);
}

#[test]
fn options_can_be_switched_off_and_back_on() {
    let sets = |s: &[&str]| -> PipelineConfig {
        load_config(None, &s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
    };
    let cfg = sets(&["sft.residual_dropout=\"off\"", "sft.max_grad_norm=\"off\""]);
    assert_eq!(cfg.sft.residual_dropout, ResidualDropout::Off);
    assert_eq!(cfg.sft.max_grad_norm, None);
    let cfg = sets(&["pretrain.residual_dropout=0.3", "sft.max_grad_norm=2"]);
    assert_eq!(cfg.pretrain.residual_dropout, ResidualDropout::Rate(0.3));
    assert_eq!(cfg.sft.max_grad_norm, Some(2.0));
    let err = load_config::<PipelineConfig>(None, &["sft.max_grad_norm=\"big\"".to_string()])
        .unwrap_err();
    assert!(format!("{err:#}").contains("\"off\""), "{err:#}");
    // A config file written from a resolved config reads back the same.
    let text = toml::to_string(&cfg).unwrap();
    let back: PipelineConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, cfg);
}

/// The README's `build.rs` for downstream crates is the build script our crates use.
#[test]
fn readme_build_script_is_ours() {
    let ours = include_str!("../../../build-support/libtorch_rpath.rs");
    let readme = include_str!("../../../README.md");
    let main = &ours[ours.find("fn main()").unwrap()..];
    assert!(
        readme.contains(main.trim_end()),
        "README.md's build.rs differs from build-support/libtorch_rpath.rs: update one or the other"
    );
}
