//! Property tests of the K-wise ranking loss against plain loops.

use proptest::prelude::*;
use rlhf_reward::loss::{
    batch_stats, gold_agreement, kwise_ranking_loss, pairwise_loss, PairIndex,
};
use tch::{Device, Kind, Tensor};

fn log_sigmoid(x: f64) -> f64 {
    // Stable: log sigmoid(x) = min(x, 0) - ln(1 + exp(-|x|)).
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// The naive definition: for each prompt, the mean over its ranked pairs of the pairwise
/// Bradley-Terry loss; then the mean over prompts.
fn naive_loss(scores: &[f64], sizes: &[usize], rankings: &[Vec<usize>]) -> f64 {
    let mut off = 0;
    let mut total = 0.0;
    for (k, r) in sizes.iter().zip(rankings) {
        let mut s = 0.0;
        let mut n = 0;
        for i in 0..*k {
            for j in i + 1..*k {
                s += -log_sigmoid(scores[off + r[i]] - scores[off + r[j]]);
                n += 1;
            }
        }
        total += s / n as f64;
        off += k;
    }
    total / sizes.len() as f64
}

fn loss_of(scores: &[f64], sizes: &[usize], rankings: &[Vec<usize>]) -> f64 {
    // Tiny vectors: intra-op threads would only add wake-up latency on a busy machine.
    tch::set_num_threads(1);
    let pairs = PairIndex::new(sizes, rankings, Device::Cpu).unwrap();
    let s = Tensor::from_slice(scores);
    kwise_ranking_loss(&s, &pairs)
        .unwrap()
        .loss
        .double_value(&[])
}

/// Groups with K in 2..=9, each with a random ranking, and scores for all responses.
fn batch() -> impl Strategy<Value = (Vec<usize>, Vec<Vec<usize>>, Vec<f64>)> {
    prop::collection::vec(
        (2usize..=9).prop_flat_map(|k| {
            (
                Just((0..k).collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec(-4.0f64..4.0, k),
            )
        }),
        1..5,
    )
    .prop_map(|groups| {
        let sizes = groups.iter().map(|(r, _)| r.len()).collect();
        let rankings = groups.iter().map(|(r, _)| r.clone()).collect();
        let scores = groups.into_iter().flat_map(|(_, s)| s).collect();
        (sizes, rankings, scores)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn equals_mean_of_naive_pairwise_losses((sizes, rankings, scores) in batch()) {
        let got = loss_of(&scores, &sizes, &rankings);
        let want = naive_loss(&scores, &sizes, &rankings);
        prop_assert!((got - want).abs() < 1e-5 * want.max(1.0), "got {got}, want {want}");
    }

    #[test]
    fn invariant_to_the_listing_order(
        (sizes, rankings, scores) in batch(),
        seed in any::<u64>(),
    ) {
        // Relist each group's responses in another order (and remap its ranking).
        let mut off = 0;
        let (mut scores2, mut rankings2) = (vec![], vec![]);
        for (gi, &k) in sizes.iter().enumerate() {
            let mut perm: Vec<usize> = (0..k).collect(); // new position -> old index
            perm.sort_by_key(|&i| (i as u64 + 1).wrapping_mul(seed | 1).rotate_left(17));
            let mut new_pos = vec![0; k];
            for (np, &old) in perm.iter().enumerate() {
                new_pos[old] = np;
                scores2.push(scores[off + old]);
            }
            rankings2.push(rankings[gi].iter().map(|&old| new_pos[old]).collect::<Vec<_>>());
            off += k;
        }
        let a = loss_of(&scores, &sizes, &rankings);
        let b = loss_of(&scores2, &sizes, &rankings2);
        prop_assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn k2_is_the_pairwise_loss(chosen in -6.0f64..6.0, rejected in -6.0f64..6.0, swap in any::<bool>()) {
        // Listed either way round, the chosen response ranked first.
        let (scores, ranking) = if swap {
            (vec![rejected, chosen], vec![1, 0])
        } else {
            (vec![chosen, rejected], vec![0, 1])
        };
        let got = loss_of(&scores, &[2], &[ranking]);
        let want = -log_sigmoid(chosen - rejected);
        prop_assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let trl = pairwise_loss(&Tensor::from_slice(&[chosen]), &Tensor::from_slice(&[rejected]));
        prop_assert!((trl.double_value(&[]) - want).abs() < 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences((sizes, rankings, scores) in batch()) {
        let pairs = PairIndex::new(&sizes, &rankings, Device::Cpu).unwrap();
        let x = Tensor::from_slice(&scores).set_requires_grad(true);
        kwise_ranking_loss(&x, &pairs).unwrap().loss.backward();
        let grad = Vec::<f64>::try_from(x.grad()).unwrap();
        let h = 1e-2;
        for i in 0..scores.len() {
            let mut up = scores.clone();
            let mut down = scores.clone();
            up[i] += h;
            down[i] -= h;
            let fd = (loss_of(&up, &sizes, &rankings) - loss_of(&down, &sizes, &rankings)) / (2.0 * h);
            prop_assert!((grad[i] - fd).abs() < 2e-4, "d/ds{i}: autograd {} vs fd {fd}", grad[i]);
        }
    }

    #[test]
    fn mixed_k_batch_is_the_mean_of_per_prompt_losses(
        s4 in prop::collection::vec(-4.0f64..4.0, 4),
        s9 in prop::collection::vec(-4.0f64..4.0, 9),
        r4 in Just((0..4).collect::<Vec<usize>>()).prop_shuffle(),
        r9 in Just((0..9).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let l4 = loss_of(&s4, &[4], std::slice::from_ref(&r4));
        let l9 = loss_of(&s9, &[9], std::slice::from_ref(&r9));
        let both = loss_of(&[s4, s9].concat(), &[4, 9], &[r4, r9]);
        prop_assert!((both - (l4 + l9) / 2.0).abs() < 1e-6, "{both} vs {l4} {l9}");
    }

    #[test]
    fn accuracy_and_per_k_loss_match_a_loop((sizes, rankings, scores) in batch()) {
        let pairs = PairIndex::new(&sizes, &rankings, Device::Cpu).unwrap();
        let stats = batch_stats(&Tensor::from_slice(&scores), &pairs).unwrap();
        let (mut correct, mut n, mut off) = (0.0, 0, 0);
        for (k, r) in sizes.iter().zip(&rankings) {
            for i in 0..*k {
                for j in i + 1..*k {
                    let m = scores[off + r[i]] - scores[off + r[j]];
                    correct += if m > 0.0 { 1.0 } else if m == 0.0 { 0.5 } else { 0.0 };
                    n += 1;
                }
            }
            off += k;
        }
        prop_assert_eq!(stats.total.pairs, n);
        prop_assert!((stats.accuracy() - correct / n as f64).abs() < 1e-12);
        prop_assert!((stats.loss() - naive_loss(&scores, &sizes, &rankings)).abs() < 1e-5);
        // Loss per K: the mean over the groups of that K.
        for (&k, &l) in &stats.loss_per_k() {
            let (mut sum, mut cnt, mut off) = (0.0, 0, 0);
            for (kk, r) in sizes.iter().zip(&rankings) {
                if *kk == k {
                    sum += naive_loss(&scores[off..off + kk], &[*kk], std::slice::from_ref(r));
                    cnt += 1;
                }
                off += kk;
            }
            prop_assert!((l - sum / cnt as f64).abs() < 1e-5);
        }
    }
}

#[test]
fn one_forward_per_response_pairs_index_rows() {
    // Two groups, K = 3 and 2, listed order != ranked order.
    let pairs = PairIndex::new(&[3, 2], &[vec![2, 0, 1], vec![1, 0]], Device::Cpu).unwrap();
    assert_eq!(pairs.num_rows(), 5);
    assert_eq!(pairs.num_pairs(), 4);
    assert_eq!(Vec::<i64>::try_from(pairs.winners()).unwrap(), [2, 2, 0, 4]);
    assert_eq!(Vec::<i64>::try_from(pairs.losers()).unwrap(), [0, 1, 1, 3]);
    assert_eq!(pairs.pair_groups(), [0, 0, 0, 1]);
}

#[test]
fn bad_rankings_are_errors_naming_the_group() {
    let e = PairIndex::new(&[4, 1], &[vec![0, 1, 2, 3], vec![0]], Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("group 1 has K = 1"), "{e}");
    let e = PairIndex::new(&[3], &[vec![0, 1, 1]], Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("not a permutation"), "{e}");
    let e = PairIndex::new(&[3], &[], Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("one ranking per group"), "{e}");
    let pairs = PairIndex::new(&[3], &[vec![0, 1, 2]], Device::Cpu).unwrap();
    let e =
        kwise_ranking_loss(&Tensor::zeros([4], (Kind::Float, Device::Cpu)), &pairs).unwrap_err();
    assert!(e.to_string().contains("N = 3"), "{e}");
}

#[test]
fn gold_agreement_skips_gold_ties() {
    // Pairs (0,1): gold tie, skipped; (0,2): right; (1,2): wrong; so 1 of 2.
    let (c, n) = gold_agreement(&[3.0, 1.0, 2.0], &[0.5, 0.5, 0.2]);
    assert_eq!((c, n), (1.0, 2));
}
