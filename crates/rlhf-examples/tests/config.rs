//! Configs survive `--set`: an override changes its key and nothing else (the resolved config
//! goes through TOML, where options that default to on must keep an explicit "off").

use rlhf_examples::pipeline::PipelineConfig;
use rlhf_examples::run::load_config;
use rlhf_sft::ResidualDropout;

#[test]
fn an_override_changes_only_its_key() {
    let cfg: PipelineConfig = load_config(None, &["rounds=3".to_string()]).unwrap();
    let want = PipelineConfig {
        rounds: 3,
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

/// The rows `(key, default)` of the README table under the heading that starts with `heading`,
/// for rows naming one key.
fn readme_rows(heading: &str) -> Vec<(String, String)> {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find(&format!("\n### {heading}"))
        .unwrap_or_else(|| panic!("README has no heading {heading}"));
    let section = &readme[start + 1..];
    let end = section[4..].find("\n#").map_or(section.len(), |e| e + 4);
    section[..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            if cells.len() < 4 || !cells[1].starts_with('`') {
                return None;
            }
            let key = cells[1].trim_matches('`');
            if key.contains('`') || key.contains(',') || key.ends_with('*') {
                return None;
            }
            Some((key.to_string(), cells[2].to_string()))
        })
        .collect()
}

/// Checks each README default that is a plain value (number, bool, string, list, `off` for
/// none) against the code's `Default`; returns how many were checked.
fn check_defaults(heading: &str, strip: &str, default: serde_json::Value) -> usize {
    let flat = rlhf_examples::pipeline::flatten_json(&default);
    let mut checked = 0;
    for (key, cell) in readme_rows(heading) {
        let Some(key) = key.strip_prefix(strip) else {
            continue;
        };
        let want: Option<serde_json::Value> = match cell.as_str() {
            "off" => Some(serde_json::Value::Null),
            c => {
                let c = c.trim_matches('`');
                serde_json::from_str(c).ok()
            }
        };
        let Some(want) = want else { continue };
        let have = flat
            .get(key)
            .unwrap_or_else(|| panic!("README {heading}: `{strip}{key}` is not a key of the code"));
        let same = match (have, &want) {
            (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
                a.as_f64() == b.as_f64()
            }
            (serde_json::Value::Null, serde_json::Value::Null) => true,
            (a, b) => a == b,
        };
        assert!(
            same,
            "README {heading}: `{strip}{key}` says {cell}, the code's default is {have}"
        );
        checked += 1;
    }
    checked
}

/// The README's config tables state the code's defaults (each plain value is checked).
#[test]
fn readme_config_tables_match_the_defaults() {
    let n = check_defaults(
        "`ppo`",
        "ppo.",
        serde_json::to_value(rlhf_ppo::PpoConfig::default()).unwrap(),
    );
    assert!(n >= 15, "only {n} ppo rows checked");
    let n = check_defaults(
        "`pipeline`",
        "",
        serde_json::to_value(PipelineConfig::default()).unwrap(),
    );
    assert!(n >= 15, "only {n} pipeline rows checked");
    let n = check_defaults(
        "`reward`",
        "train.",
        serde_json::to_value(rlhf_reward::RewardTrainConfig::default()).unwrap(),
    );
    assert!(n >= 5, "only {n} reward rows checked");
    let n = check_defaults(
        "`[train]` of `pretrain` and `sft`",
        "",
        serde_json::to_value(rlhf_sft::SftConfig::default()).unwrap(),
    );
    assert!(n >= 5, "only {n} sft rows checked");
}
