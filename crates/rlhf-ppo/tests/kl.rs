//! KL controllers: fixed never moves; adaptive follows Ziegler et al.'s rule by hand.

use approx::assert_abs_diff_eq;
use proptest::prelude::*;
use rlhf_ppo::{
    AdaptiveKlConfig, AdaptiveKlController, FixedKlController, KlController, PpoConfig,
};

#[test]
fn fixed_controller_never_moves() {
    let mut c = FixedKlController { value: 0.02 };
    for kl in [0.0, 1.0, 100.0, f64::NAN] {
        c.update(kl, 512);
        assert_eq!(c.value(), 0.02);
    }
    c.set_value(0.5);
    assert_eq!(c.value(), 0.5);
}

#[test]
fn adaptive_controller_by_hand() {
    let cfg = AdaptiveKlConfig {
        target: 6.0,
        horizon: 10000.0,
    };
    let mut c = AdaptiveKlController::new(0.1, cfg);
    // KL 6.6: error 0.1 -> beta *= 1 + 0.1 * 64 / 10000.
    c.update(6.6, 64);
    let mut want = 0.1 * (1.0 + 0.1 * 64.0 / 10000.0);
    assert_abs_diff_eq!(c.value(), want, epsilon = 1e-15);
    // KL 30: error clipped to +0.2.
    c.update(30.0, 64);
    want *= 1.0 + 0.2 * 64.0 / 10000.0;
    assert_abs_diff_eq!(c.value(), want, epsilon = 1e-15);
    // KL 0: error clipped to -0.2, with a larger step count.
    c.update(0.0, 1000);
    want *= 1.0 - 0.2 * 1000.0 / 10000.0;
    assert_abs_diff_eq!(c.value(), want, epsilon = 1e-15);
    // KL 4.5: error -0.25 -> clipped -0.2.
    c.update(4.5, 500);
    want *= 1.0 - 0.2 * 500.0 / 10000.0;
    assert_abs_diff_eq!(c.value(), want, epsilon = 1e-15);
    // At the target: unchanged.
    c.update(6.0, 500);
    assert_abs_diff_eq!(c.value(), want, epsilon = 1e-15);
}

#[test]
fn config_picks_the_controller() {
    let mut c = PpoConfig::default().kl_controller();
    c.update(100.0, 512);
    assert_eq!(c.value(), 0.02, "the paper's fixed beta by default");
    let cfg = PpoConfig {
        kl_coef: 0.2,
        adaptive_kl: Some(AdaptiveKlConfig::default()),
        ..PpoConfig::default()
    };
    let mut c = cfg.kl_controller();
    c.update(100.0, 512);
    assert!(c.value() > 0.2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// beta moves towards the target (up when KL is above it, down when below), by a factor
    /// within 1 +- 0.2 * n / horizon.
    #[test]
    fn adaptive_moves_towards_target_within_bounds(
        init in 0.001f64..1.0, kl in 0.0f64..50.0, target in 0.5f64..20.0, n in 1u64..2000,
    ) {
        let horizon = 10000.0;
        let mut c = AdaptiveKlController::new(init, AdaptiveKlConfig { target, horizon });
        c.update(kl, n);
        let ratio = c.value() / init;
        let bound = 0.2 * n as f64 / horizon;
        prop_assert!(ratio <= 1.0 + bound + 1e-12 && ratio >= 1.0 - bound - 1e-12);
        if kl > target * 1.0001 {
            prop_assert!(ratio > 1.0);
        } else if kl < target * 0.9999 {
            prop_assert!(ratio < 1.0);
        }
    }
}
