//! Each PPO math function against a plain-loop or hand-computed reference.

use approx::assert_abs_diff_eq;
use proptest::prelude::*;
use rlhf_ppo::ops::*;
use tch::{Kind, Tensor};

type M = Vec<Vec<f64>>;

fn t(m: &M) -> Tensor {
    let b = m.len() as i64;
    let n = m[0].len() as i64;
    let flat: Vec<f32> = m.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_slice(&flat).view([b, n])
}

fn v(x: &Tensor) -> M {
    let x = x.to_kind(Kind::Double);
    (0..x.size()[0])
        .map(|i| Vec::<f64>::try_from(x.get(i)).unwrap())
        .collect()
}

fn s(x: &Tensor) -> f64 {
    x.double_value(&[])
}

/// A prefix mask: row i has lens[i] ones then zeros.
fn prefix_mask(lens: &[usize], n: usize) -> M {
    lens.iter()
        .map(|&l| (0..n).map(|j| if j < l { 1.0 } else { 0.0 }).collect())
        .collect()
}

fn loop_mean(x: &M, m: &M) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (xr, mr) in x.iter().zip(m) {
        for (&a, &w) in xr.iter().zip(mr) {
            if w > 0.0 {
                s += a * w;
                c += w;
            }
        }
    }
    if c == 0.0 {
        0.0
    } else {
        s / c
    }
}

fn loop_var(x: &M, m: &M, unbiased: bool) -> f64 {
    let mean = loop_mean(x, m);
    let (mut s, mut c) = (0.0, 0.0);
    for (xr, mr) in x.iter().zip(m) {
        for (&a, &w) in xr.iter().zip(mr) {
            if w > 0.0 {
                s += (a - mean).powi(2);
                c += 1.0;
            }
        }
    }
    let var = s / c;
    if unbiased && c > 1.0 {
        var * c / (c - 1.0)
    } else {
        var
    }
}

fn matrix(b: usize, n: usize) -> impl Strategy<Value = M> {
    prop::collection::vec(prop::collection::vec(-3.0f64..3.0, n), b)
}

fn lens(b: usize, n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=n, b)
}

fn close(a: &M, b: &M, tol: f64) {
    for (ra, rb) in a.iter().zip(b) {
        for (&x, &y) in ra.iter().zip(rb) {
            assert!((x - y).abs() <= tol, "{a:?}\n!=\n{b:?}");
        }
    }
}

// ---------------------------------------------------------------- KL estimators

#[test]
fn kl_estimators_match_their_formulas() {
    let lp = vec![vec![-1.0, -2.0, -0.5]];
    let rp = vec![vec![-1.5, -1.0, -0.5]];
    let k1 = v(&kl_k1(&t(&lp), &t(&rp)));
    let k3 = v(&kl_k3(&t(&lp), &t(&rp)));
    for j in 0..3 {
        let d: f64 = rp[0][j] - lp[0][j];
        assert_abs_diff_eq!(k1[0][j], lp[0][j] - rp[0][j], epsilon = 1e-6);
        assert_abs_diff_eq!(k3[0][j], d.exp() - 1.0 - d, epsilon = 1e-6);
    }
    // Equal log-probs: both zero.
    assert_abs_diff_eq!(k1[0][2], 0.0, epsilon = 1e-7);
    assert_abs_diff_eq!(k3[0][2], 0.0, epsilon = 1e-7);
    assert_eq!(
        v(&KlEstimator::K3.estimate(&t(&lp), &t(&rp))),
        v(&kl_k3(&t(&lp), &t(&rp)))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Both estimators are unbiased: E_{y~p}[k(y)] = KL(p || q) exactly (weighting every
    /// outcome by p); k3 is never negative.
    #[test]
    fn kl_estimators_are_unbiased_and_k3_non_negative(
        pl in prop::collection::vec(-3.0f64..3.0, 6),
        ql in prop::collection::vec(-3.0f64..3.0, 6),
    ) {
        let lse = |l: &[f64]| l.iter().map(|x| x.exp()).sum::<f64>().ln();
        let (zp, zq) = (lse(&pl), lse(&ql));
        let logp: Vec<f64> = pl.iter().map(|x| x - zp).collect();
        let logq: Vec<f64> = ql.iter().map(|x| x - zq).collect();
        let kl: f64 = logp.iter().zip(&logq).map(|(a, b)| a.exp() * (a - b)).sum();
        let (lp, lq) = (t(&vec![logp.clone()]), t(&vec![logq]));
        for est in [KlEstimator::K1, KlEstimator::K3] {
            let k = v(&est.estimate(&lp, &lq))[0].clone();
            let e: f64 = logp.iter().zip(&k).map(|(a, k)| a.exp() * k).sum();
            prop_assert!((e - kl).abs() < 1e-4 * (1.0 + kl), "{est:?}: {e} vs {kl}");
            if est == KlEstimator::K3 {
                prop_assert!(k.iter().all(|&x| x >= -1e-6));
            }
        }
    }
}

// ---------------------------------------------------------------- masked statistics

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn masked_stats_match_loops(x in matrix(4, 7), l in lens(4, 7)) {
        let m = prefix_mask(&l, 7);
        let (xt, mt) = (t(&x), t(&m));
        prop_assert!((s(&masked_mean(&xt, &mt)) - loop_mean(&x, &m)).abs() < 1e-5);
        for unbiased in [false, true] {
            let got = s(&masked_var(&xt, &mt, unbiased));
            prop_assert!((got - loop_var(&x, &m, unbiased)).abs() < 1e-4, "{got}");
        }
        let sum: f64 = x.iter().zip(&m).map(|(r, mr)| r.iter().zip(mr).map(|(a, w)| a * w).sum::<f64>()).sum();
        prop_assert!((s(&masked_sum(&xt, &mt)) - sum).abs() < 1e-4);
        let rows = v(&masked_mean_rows(&xt, &mt).unsqueeze(0))[0].clone();
        for (i, r) in rows.iter().enumerate() {
            let want = loop_mean(&vec![x[i].clone()], &vec![m[i].clone()]);
            prop_assert!((r - want).abs() < 1e-5);
        }
        // Whitening: masked mean 0 and variance 1; entries outside the mask are 0.
        let w = masked_whiten(&xt, &mt, true);
        let wv = v(&w);
        let var = loop_var(&x, &m, false);
        if var > 1e-3 {
            prop_assert!(loop_mean(&wv, &m).abs() < 1e-4);
            prop_assert!((loop_var(&wv, &m, false) - 1.0).abs() < 1e-3);
        }
        let mean = loop_mean(&x, &m);
        for i in 0..4 {
            for j in 0..7 {
                if m[i][j] == 0.0 {
                    prop_assert_eq!(wv[i][j], 0.0);
                } else {
                    let want = (x[i][j] - mean) / (var + 1e-8).sqrt();
                    prop_assert!((wv[i][j] - want).abs() < 1e-3 * (1.0 + want.abs()));
                }
            }
        }
        // shift_mean = false keeps the mean and only rescales.
        let ws = v(&masked_whiten(&xt, &mt, false));
        if var > 1e-3 {
            prop_assert!((loop_mean(&ws, &m) - mean).abs() < 1e-4);
        }
    }
}

#[test]
fn masked_stats_ignore_garbage_outside_the_mask_and_survive_an_empty_mask() {
    let x = Tensor::from_slice(&[1.0f32, 3.0, f32::NAN, f32::INFINITY]).view([1, 4]);
    let m = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).view([1, 4]);
    assert_abs_diff_eq!(s(&masked_mean(&x, &m)), 2.0, epsilon = 1e-6);
    assert_abs_diff_eq!(s(&masked_var(&x, &m, false)), 1.0, epsilon = 1e-6);
    assert_abs_diff_eq!(s(&masked_var(&x, &m, true)), 2.0, epsilon = 1e-6);
    let w = v(&masked_whiten(&x, &m, true));
    assert!(w[0].iter().all(|x| x.is_finite()));
    assert_eq!(s(&masked_mean(&x, &m.zeros_like())), 0.0);
}

// ---------------------------------------------------------------- reward assembly

/// Three responses of different lengths: row 0 ran out of tokens (no EOS), row 1 ends with
/// EOS at index 2, row 2 is just EOS.
#[test]
fn score_lands_on_the_last_real_token_never_on_padding() {
    let eos = 9;
    let tokens = Tensor::from_slice(&[4i64, 5, 6, 7, 8, 4, 5, 9, 0, 0, 9, 0, 0, 0, 0]).view([3, 5]);
    let mask = t(&prefix_mask(&[5, 3, 1], 5));
    let has_eos = response_has_eos(&tokens, &mask, eos);
    assert_eq!(
        Vec::<bool>::try_from(&has_eos).unwrap(),
        vec![false, true, true]
    );
    let logp = t(&vec![vec![-1.0; 5], vec![-2.0; 5], vec![-0.5; 5]]);
    let ref_logp = t(&vec![vec![-1.5; 5], vec![-1.0; 5], vec![-0.5; 5]]);
    let scores = Tensor::from_slice(&[2.0f32, -1.0, 0.5]);
    let beta = 0.1;
    let base = RewardShaping {
        kl_coef: beta,
        estimator: KlEstimator::K1,
        no_eos_penalty: None,
        score_clip: None,
        whiten: false,
    };
    let r = assemble_rewards(&scores, &logp, &ref_logp, &mask, Some(&has_eos), &base);
    let want = vec![
        vec![-0.05, -0.05, -0.05, -0.05, -0.05 + 2.0],
        vec![0.1, 0.1, 0.1 - 1.0, 0.0, 0.0],
        vec![0.5, 0.0, 0.0, 0.0, 0.0],
    ];
    close(&v(&r.rewards), &want, 1e-6);
    close(
        &v(&r.kl),
        &vec![vec![0.5; 5], vec![-1.0, -1.0, -1.0, 0.0, 0.0], vec![0.0; 5]],
        1e-6,
    );

    // The no-EOS penalty hits only row 0; clipping applies after it.
    let pen = RewardShaping {
        no_eos_penalty: Some(1.5),
        ..base
    };
    let r = assemble_rewards(&scores, &logp, &ref_logp, &mask, Some(&has_eos), &pen);
    assert_abs_diff_eq!(v(&r.rewards)[0][4], -0.05 + 0.5, epsilon = 1e-6);
    assert_abs_diff_eq!(v(&r.rewards)[1][2], 0.1 - 1.0, epsilon = 1e-6);
    let clip = RewardShaping {
        score_clip: Some(0.75),
        ..base
    };
    let r = assemble_rewards(&scores, &logp, &ref_logp, &mask, Some(&has_eos), &clip);
    let got = v(&r.rewards);
    assert_abs_diff_eq!(got[0][4], -0.05 + 0.75, epsilon = 1e-6);
    assert_abs_diff_eq!(got[1][2], 0.1 - 0.75, epsilon = 1e-6);
    assert_abs_diff_eq!(got[2][0], 0.5, epsilon = 1e-6);
    assert_eq!(
        Vec::<f32>::try_from(&r.scores).unwrap(),
        vec![0.75, -0.75, 0.5]
    );

    // Whitening rescales the masked rewards (mean kept) and keeps padding at 0.
    let wh = RewardShaping {
        whiten: true,
        ..base
    };
    let r = assemble_rewards(&scores, &logp, &ref_logp, &mask, Some(&has_eos), &wh);
    let want_w = v(&masked_whiten(&t(&want), &mask, false));
    close(&v(&r.rewards), &want_w, 1e-5);
    let mv = v(&mask);
    for (row, mrow) in v(&r.rewards).iter().zip(&mv) {
        for (x, w) in row.iter().zip(mrow) {
            if *w == 0.0 {
                assert_eq!(*x, 0.0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For any lengths: padding gets 0, every real token gets -beta * kl, and the score is
    /// added exactly once, at index len - 1.
    #[test]
    fn reward_assembly_matches_a_loop(
        lp in matrix(5, 6), rp in matrix(5, 6), l in lens(5, 6),
        sc in prop::collection::vec(-2.0f64..2.0, 5), beta in 0.0f64..0.5, k3 in any::<bool>(),
    ) {
        let m = prefix_mask(&l, 6);
        let est = if k3 { KlEstimator::K3 } else { KlEstimator::K1 };
        let cfg = RewardShaping { kl_coef: beta, estimator: est, no_eos_penalty: None, score_clip: None, whiten: false };
        let scores = Tensor::from_slice(&sc.iter().map(|&x| x as f32).collect::<Vec<_>>());
        let r = v(&assemble_rewards(&scores, &t(&lp), &t(&rp), &t(&m), None, &cfg).rewards);
        for i in 0..5 {
            for j in 0..6 {
                let want = if j >= l[i] {
                    0.0
                } else {
                    let d: f64 = rp[i][j] - lp[i][j];
                    let kl = if k3 { d.exp() - 1.0 - d } else { -d };
                    -beta * kl + if j == l[i] - 1 { sc[i] } else { 0.0 }
                };
                prop_assert!((r[i][j] - want).abs() < 1e-3 * (1.0 + want.abs()), "{i},{j}: {} vs {want}", r[i][j]);
            }
        }
    }
}

// ---------------------------------------------------------------- GAE

fn loop_gae(r: &M, vals: &M, m: &M, gamma: f64, lam: f64) -> (M, M) {
    let (b, n) = (r.len(), r[0].len());
    let mut adv = vec![vec![0.0; n]; b];
    for i in 0..b {
        let len = m[i].iter().filter(|&&x| x > 0.0).count();
        let mut last = 0.0;
        for tt in (0..len).rev() {
            let next_v = if tt + 1 < len { vals[i][tt + 1] } else { 0.0 };
            let delta = r[i][tt] + gamma * next_v - vals[i][tt];
            last = delta + gamma * lam * last;
            adv[i][tt] = last;
        }
    }
    let ret = adv
        .iter()
        .zip(vals)
        .zip(m)
        .map(|((a, v), m)| {
            a.iter()
                .zip(v)
                .zip(m)
                .map(|((a, v), m)| (a + v) * m)
                .collect()
        })
        .collect();
    (adv, ret)
}

#[test]
fn gae_hand_computed() {
    // One row, 3 tokens, gamma 0.5, lambda 0.5.
    let r = vec![vec![1.0, 0.0, 2.0]];
    let vals = vec![vec![0.5, 1.0, 1.5]];
    let m = vec![vec![1.0, 1.0, 1.0]];
    let (adv, ret) = gae(&t(&r), &t(&vals), &t(&m), 0.5, 0.5);
    // delta2 = 2 - 1.5 = 0.5; A2 = 0.5
    // delta1 = 0 + 0.5*1.5 - 1 = -0.25; A1 = -0.25 + 0.25*0.5 = -0.125
    // delta0 = 1 + 0.5*1 - 0.5 = 1; A0 = 1 + 0.25*(-0.125) = 0.96875
    close(&v(&adv), &vec![vec![0.96875, -0.125, 0.5]], 1e-6);
    close(&v(&ret), &vec![vec![1.46875, 0.875, 2.0]], 1e-6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gae_matches_a_loop_and_ignores_padding(
        r in matrix(4, 6), vals in matrix(4, 6), junk in matrix(4, 6), l in lens(4, 6),
        gamma in 0.0f64..=1.0, lam in 0.0f64..=1.0,
    ) {
        let m = prefix_mask(&l, 6);
        let (adv, ret) = gae(&t(&r), &t(&vals), &t(&m), gamma, lam);
        let (wa, wr) = loop_gae(&r, &vals, &m, gamma, lam);
        close(&v(&adv), &wa, 1e-4);
        close(&v(&ret), &wr, 1e-4);
        // Anything in the padding (rewards or values) changes nothing.
        let mix = |a: &M| -> M { a.iter().zip(&m).zip(&junk).map(|((ra, rm), rj)| ra.iter().zip(rm).zip(rj).map(|((x, w), j)| if *w > 0.0 { *x } else { *j }).collect()).collect() };
        let (adv2, ret2) = gae(&t(&mix(&r)), &t(&mix(&vals)), &t(&m), gamma, lam);
        close(&v(&adv2), &v(&adv), 1e-6);
        close(&v(&ret2), &v(&ret), 1e-6);
    }

    /// gamma = lambda = 1: returns are the rewards-to-go (Monte Carlo).
    #[test]
    fn gae_with_unit_gamma_lambda_gives_rewards_to_go(r in matrix(3, 5), vals in matrix(3, 5), l in lens(3, 5)) {
        let m = prefix_mask(&l, 5);
        let (_, ret) = gae(&t(&r), &t(&vals), &t(&m), 1.0, 1.0);
        let ret = v(&ret);
        for i in 0..3 {
            for j in 0..l[i] {
                let togo: f64 = r[i][j..l[i]].iter().sum();
                prop_assert!((ret[i][j] - togo).abs() < 1e-4);
            }
        }
    }
}

// ---------------------------------------------------------------- policy loss

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn clipped_surrogate_matches_a_loop(
        lp in matrix(3, 5), dl in matrix(3, 5), a in matrix(3, 5), l in lens(3, 5), eps in 0.05f64..0.5,
    ) {
        let m = prefix_mask(&l, 5);
        let old: M = lp.iter().zip(&dl).map(|(r, d)| r.iter().zip(d).map(|(x, d)| x - d / 6.0).collect()).collect();
        let out = clipped_surrogate(&t(&lp), &t(&old), &t(&a), &t(&m), eps);
        let (mut loss, mut clipped, mut kl, mut c) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..3 {
            for j in 0..l[i] {
                let ratio = ((lp[i][j] as f32 - old[i][j] as f32) as f64).exp();
                let p1 = -a[i][j] * ratio;
                let p2 = -a[i][j] * ratio.clamp(1.0 - eps, 1.0 + eps);
                loss += p1.max(p2);
                clipped += if p2 > p1 + 1e-9 { 1.0 } else { 0.0 };
                kl += 0.5 * (lp[i][j] - old[i][j]).powi(2);
                c += 1.0;
            }
        }
        prop_assert!((s(&out.loss) - loss / c).abs() < 1e-4);
        prop_assert!((s(&out.approx_kl) - kl / c).abs() < 1e-4);
        prop_assert!((s(&out.clipfrac) - clipped / c).abs() < 1.5 / c);
        prop_assert!((s(&approx_kl(&t(&lp), &t(&old), &t(&m))) - kl / c).abs() < 1e-4);
    }
}

/// The gradient vanishes exactly where the ratio is clipped in the direction of the
/// advantage, and equals -A * ratio / n elsewhere.
#[test]
fn clipped_surrogate_gradient_is_zero_where_clipped_in_the_advantage_direction() {
    let eps = 0.2;
    // (log ratio, advantage): clipped+A>0, clipped+A<0 (ratio low), ratio high A<0 (not
    // clipped: pessimistic term is the unclipped one), ratio low A>0, ratio 1.
    let cases = [
        (0.5f64, 1.0f64, true),
        (-0.5, -1.0, true),
        (0.5, -1.0, false),
        (-0.5, 1.0, false),
        (0.0, 2.0, false),
        (0.1, 1.0, false), // inside the clip range
    ];
    let n = cases.len();
    let old = Tensor::zeros([1, n as i64], (Kind::Float, tch::Device::Cpu));
    let lr: Vec<f32> = cases.iter().map(|c| c.0 as f32).collect();
    let adv: Vec<f32> = cases.iter().map(|c| c.1 as f32).collect();
    let logp = Tensor::from_slice(&lr)
        .view([1, n as i64])
        .set_requires_grad(true);
    let a = Tensor::from_slice(&adv).view([1, n as i64]);
    let mask = Tensor::ones([1, n as i64], (Kind::Float, tch::Device::Cpu));
    let out = clipped_surrogate(&logp, &old, &a, &mask, eps);
    out.loss.backward();
    let g = Vec::<f64>::try_from(logp.grad().view([-1]).to_kind(Kind::Double)).unwrap();
    for (k, (lrat, adv, zero)) in cases.iter().enumerate() {
        if *zero {
            assert_eq!(g[k], 0.0, "case {k}: gradient should vanish, got {}", g[k]);
        } else {
            let want = -adv * lrat.exp() / n as f64;
            assert!((g[k] - want).abs() < 1e-6, "case {k}: {} vs {want}", g[k]);
        }
    }
    assert_abs_diff_eq!(s(&out.clipfrac), 2.0 / n as f64, epsilon = 1e-6);
    // Both ratios out of range are counted by ratio_clip_fraction, whatever the advantage.
    assert_abs_diff_eq!(
        s(&ratio_clip_fraction(&logp.detach(), &old, &mask, eps)),
        4.0 / n as f64,
        epsilon = 1e-6
    );
}

// ---------------------------------------------------------------- value loss

#[test]
fn clipped_value_loss_hand_computed_and_scaled_by_vf_coef() {
    // old 0, returns 1: v=0.5 (inside the clip: (0.5-1)^2 vs clipped 0.2 -> 0.64, clipped
    // larger), v=0.1 (inside: 0.81 both), v=-0.5 (clipped -0.2: 2.25 vs 1.44 -> unclipped).
    let vals = Tensor::from_slice(&[0.5f32, 0.1, -0.5, 9.0])
        .view([1, 4])
        .set_requires_grad(true);
    let old = Tensor::zeros([1, 4], (Kind::Float, tch::Device::Cpu));
    let ret = Tensor::ones([1, 4], (Kind::Float, tch::Device::Cpu));
    let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0]).view([1, 4]);
    let out = clipped_value_loss(&vals, &old, &ret, &mask, 0.2);
    let want = 0.5 * (0.64 + 0.81 + 2.25) / 3.0;
    assert_abs_diff_eq!(s(&out.loss), want, epsilon = 1e-6);
    assert_abs_diff_eq!(s(&out.clipfrac), 1.0 / 3.0, epsilon = 1e-6);
    out.loss.backward();
    let g = Vec::<f64>::try_from(vals.grad().view([-1]).to_kind(Kind::Double)).unwrap();
    // Clipped term active for v=0.5 -> no gradient; v=0.1: (v - R) / 3 (x2 x0.5); v=-0.5: same.
    assert_eq!(g[0], 0.0);
    assert_abs_diff_eq!(g[1], (0.1 - 1.0) / 3.0, epsilon = 1e-6);
    assert_abs_diff_eq!(g[2], (-0.5 - 1.0) / 3.0, epsilon = 1e-6);
    assert_eq!(g[3], 0.0, "masked entry");

    let pg = Tensor::from(0.3f32);
    let vf = Tensor::from(2.0f32);
    let ent = Tensor::from(1.5f32);
    assert_abs_diff_eq!(s(&ppo_loss(&pg, &vf, &ent, 0.1, 0.0)), 0.5, epsilon = 1e-6);
    assert_abs_diff_eq!(
        s(&ppo_loss(&pg, &vf, &ent, 0.1, 0.01)),
        0.485,
        epsilon = 1e-6
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn clipped_value_loss_matches_a_loop(
        vp in matrix(3, 4), old in matrix(3, 4), ret in matrix(3, 4), l in lens(3, 4), c in 0.05f64..1.0,
    ) {
        let m = prefix_mask(&l, 4);
        let out = clipped_value_loss(&t(&vp), &t(&old), &t(&ret), &t(&m), c);
        let (mut loss, mut n) = (0.0, 0.0);
        for i in 0..3 {
            for j in 0..l[i] {
                let clipped = old[i][j] + (vp[i][j] - old[i][j]).clamp(-c, c);
                loss += (vp[i][j] - ret[i][j]).powi(2).max((clipped - ret[i][j]).powi(2));
                n += 1.0;
            }
        }
        prop_assert!((s(&out.loss) - 0.5 * loss / n).abs() < 1e-4 * (1.0 + loss));
    }
}

// ---------------------------------------------------------------- junk in the padding

/// The junk a padded position may hold: an overflowed log-prob, a huge number, NaN.
const JUNK: [f32; 4] = [f32::INFINITY, f32::NEG_INFINITY, 1e30, f32::NAN];

/// A `[2, 4]` leaf tensor with grad: `real` on the positions of [`junk_mask`], `junk` on the
/// padded ones.
fn with_junk(real: [f32; 8], junk: f32) -> Tensor {
    let m = Vec::<f32>::try_from(junk_mask().view([-1])).unwrap();
    let x: Vec<f32> = real
        .iter()
        .zip(&m)
        .map(|(&r, &w)| if w > 0.0 { r } else { junk })
        .collect();
    Tensor::from_slice(&x).view([2, 4]).set_requires_grad(true)
}

/// Row 0 has 3 real tokens, row 1 has 1.
fn junk_mask() -> Tensor {
    t(&prefix_mask(&[3, 1], 4))
}

/// The gradient of a leaf: finite everywhere and exactly 0 on the padding.
fn assert_clean_grad(name: &str, x: &Tensor, junk: f32) {
    let g = Vec::<f32>::try_from(x.grad().view([-1])).unwrap();
    let m = Vec::<f32>::try_from(junk_mask().view([-1])).unwrap();
    assert!(
        g.iter().all(|g| g.is_finite()),
        "{name}, junk {junk}: {g:?}"
    );
    for (k, (g, w)) in g.iter().zip(&m).enumerate() {
        if *w == 0.0 {
            assert_eq!(*g, 0.0, "{name}, junk {junk}: padded entry {k} of {g:?}");
        }
    }
}

/// With inf, 1e30 or NaN in the padded positions of every input, the policy loss and its
/// statistics equal those of clean inputs, and every input gets a finite gradient that is 0
/// on the padding (masking after `exp` would give `0 * inf = NaN` there).
#[test]
fn clipped_surrogate_is_clean_with_junk_in_the_padding() {
    let lp = [-1.0, -0.5, -2.0, 0.0, -0.3, 0.0, 0.0, 0.0];
    let old = [-1.2, -0.4, -1.0, 0.0, -0.9, 0.0, 0.0, 0.0];
    let adv = [1.0, -2.0, 0.5, 0.0, -1.0, 0.0, 0.0, 0.0];
    let mask = junk_mask();
    let clean = clipped_surrogate(&t_of(lp), &t_of(old), &t_of(adv), &mask, 0.2);
    assert!(s(&clean.loss).abs() > 1e-3, "a loss that can differ");
    for junk in JUNK {
        let (a, b, c) = (
            with_junk(lp, junk),
            with_junk(old, junk),
            with_junk(adv, junk),
        );
        let out = clipped_surrogate(&a, &b, &c, &mask, 0.2);
        for (name, got, want) in [
            ("loss", &out.loss, &clean.loss),
            ("clipfrac", &out.clipfrac, &clean.clipfrac),
            ("approx_kl", &out.approx_kl, &clean.approx_kl),
        ] {
            assert_abs_diff_eq!(s(got), s(want), epsilon = 1e-6);
            assert!(s(got).is_finite(), "{name}, junk {junk}");
        }
        out.loss.backward();
        assert_clean_grad("logp", &a, junk);
        assert_clean_grad("old_logp", &b, junk);
        assert_clean_grad("advantages", &c, junk);
        assert!(
            s(&a.grad().abs().sum(Kind::Float)) > 1e-3,
            "real tokens get a gradient"
        );
    }
}

/// The same for the value loss: values, old values and returns all carry junk in the padding.
#[test]
fn clipped_value_loss_is_clean_with_junk_in_the_padding() {
    let vals = [0.5, 0.1, -0.5, 0.0, 2.0, 0.0, 0.0, 0.0];
    let old = [0.0, 0.2, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    let ret = [1.0, 1.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0];
    let mask = junk_mask();
    let clean = clipped_value_loss(&t_of(vals), &t_of(old), &t_of(ret), &mask, 0.2);
    for junk in JUNK {
        let (a, b, c) = (
            with_junk(vals, junk),
            with_junk(old, junk),
            with_junk(ret, junk),
        );
        let out = clipped_value_loss(&a, &b, &c, &mask, 0.2);
        assert!(s(&out.loss).is_finite(), "junk {junk}");
        assert_abs_diff_eq!(s(&out.loss), s(&clean.loss), epsilon = 1e-6);
        assert_abs_diff_eq!(s(&out.clipfrac), s(&clean.clipfrac), epsilon = 1e-6);
        out.loss.backward();
        assert_clean_grad("values", &a, junk);
        assert_clean_grad("old_values", &b, junk);
        assert_clean_grad("returns", &c, junk);
        assert!(
            s(&a.grad().abs().sum(Kind::Float)) > 1e-3,
            "real tokens get a gradient"
        );
    }
}

fn t_of(x: [f32; 8]) -> Tensor {
    Tensor::from_slice(&x).view([2, 4])
}

// ---------------------------------------------------------------- entropy, EV, alignment

#[test]
fn entropy_of_uniform_and_peaked_distributions() {
    let vsz = 7;
    let logits = Tensor::zeros([2, 3, vsz], (Kind::Float, tch::Device::Cpu));
    let mask = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu));
    assert_abs_diff_eq!(
        s(&masked_entropy(&logits, &mask, 1.0)),
        (vsz as f64).ln(),
        epsilon = 1e-5
    );
    // A hand-made distribution, at temperature 2: logits [0, ln 2 * 2] / 2 -> probs 1/3, 2/3.
    let l = Tensor::from_slice(&[0.0f32, 2.0 * 2f32.ln()]).view([1, 1, 2]);
    let m1 = Tensor::ones([1, 1], (Kind::Float, tch::Device::Cpu));
    let h = -(1.0 / 3.0 * (1.0f64 / 3.0).ln() + 2.0 / 3.0 * (2.0f64 / 3.0).ln());
    assert_abs_diff_eq!(s(&masked_entropy(&l, &m1, 2.0)), h, epsilon = 1e-5);
    // Masked rows do not count.
    let peaked = Tensor::from_slice(&[0.0f32, 0.0, 100.0, 0.0]).view([2, 1, 2]);
    let m2 = Tensor::from_slice(&[1.0f32, 0.0]).view([2, 1]);
    assert_abs_diff_eq!(
        s(&masked_entropy(&peaked, &m2, 1.0)),
        2f64.ln(),
        epsilon = 1e-5
    );
}

#[test]
fn explained_variance_hand_computed() {
    let ret = t(&vec![vec![1.0, 2.0, 3.0, 100.0]]);
    let mask = t(&vec![vec![1.0, 1.0, 1.0, 0.0]]);
    assert_abs_diff_eq!(explained_variance(&ret, &ret, &mask), 1.0, epsilon = 1e-6);
    let mean = t(&vec![vec![2.0, 2.0, 2.0, -7.0]]);
    assert_abs_diff_eq!(explained_variance(&mean, &ret, &mask), 0.0, epsilon = 1e-6);
    // var(ret) = 2/3; residual (0, 1, 0) -> var 2/9; EV = 1 - (2/9)/(2/3) = 2/3.
    let half = t(&vec![vec![1.0, 1.0, 3.0, 0.0]]);
    assert_abs_diff_eq!(
        explained_variance(&half, &ret, &mask),
        2.0 / 3.0,
        epsilon = 1e-6
    );
    assert!(explained_variance(&ret, &t(&vec![vec![1.0; 4]]), &mask).is_nan());
}

#[test]
fn response_log_probs_follow_the_one_alignment_rule() {
    tch::manual_seed(3);
    let logits = Tensor::randn([2, 7, 11], (Kind::Float, tch::Device::Cpu));
    let ids = Tensor::randint(11, [2, 7], (Kind::Int64, tch::Device::Cpu));
    let p = 3;
    let full = rlhf_model::ops::token_log_probs(&logits, &ids, 0.7); // [2, 6], t-1 scores t
    let resp = response_log_probs(&logits, &ids, p, 0.7); // [2, 4]
    assert_eq!(resp.size(), [2, 4]);
    let diff = (resp - full.narrow(1, p - 1, 4))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-6);
    // By hand: entry 0 scores ids[:, 3] from logits[:, 2].
    let lsm = (logits.get(0).get(2) / 0.7).log_softmax(-1, Kind::Float);
    let want = lsm.double_value(&[ids.int64_value(&[0, 3])]);
    let got = response_log_probs(&logits, &ids, p, 0.7).double_value(&[0, 0]);
    assert_abs_diff_eq!(got, want, epsilon = 1e-5);
    assert_eq!(response_logits(&logits, p).size(), [2, 4, 11]);
    let vals = Tensor::arange(7, (Kind::Float, tch::Device::Cpu)).view([1, 7]);
    assert_eq!(
        Vec::<f32>::try_from(response_values(&vals, p).view([-1])).unwrap(),
        vec![2.0, 3.0, 4.0, 5.0]
    );
}
