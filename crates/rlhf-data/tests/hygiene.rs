//! Hygiene: split by user, per-user cap, dedup and PII scrubbing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use rlhf_data::hygiene::{
    assign_split, cap_per_user, dedup_prompts, normalize_text, split_by_user, split_by_user_hashed,
    DedupConfig, DuplicateKind, HasPrompt, HasUser, PiiKind, PiiScrubber, SplitFractions,
    SplitPart, DEFAULT_MAX_PROMPTS_PER_USER,
};
use rlhf_data::records::{Demonstration, PromptRecord, Ranking};

/// A record for property tests: (user, serial number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Rec {
    user: String,
    n: usize,
}

impl HasUser for Rec {
    fn user_id(&self) -> &str {
        &self.user
    }
}

fn records_strategy() -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(0usize..40, 0..300).prop_map(|users| {
        users
            .into_iter()
            .enumerate()
            .map(|(n, u)| Rec {
                user: format!("user{u}"),
                n,
            })
            .collect()
    })
}

fn fractions_strategy() -> impl Strategy<Value = (f64, f64, f64)> {
    (0u32..=100, 0u32..=100, 0u32..=100)
        .prop_filter("not all zero", |(a, b, c)| a + b + c > 0)
        .prop_map(|(a, b, c)| {
            let s = f64::from(a + b + c);
            let (a, b) = (f64::from(a) / s, f64::from(b) / s);
            (a, b, 1.0 - a - b)
        })
}

fn users_of(v: &[Rec]) -> BTreeSet<&str> {
    v.iter().map(|r| r.user.as_str()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// No user in two splits; every record kept once; the `users` map is right; deterministic
    /// and independent of input order; each part's size within the stated tolerance: at most
    /// M records (M = the largest user's record count) from fraction * N, M / 2 for train/test.
    #[test]
    fn prop_split_by_user(records in records_strategy(), fr in fractions_strategy(), seed in any::<u64>()) {
        let split = split_by_user(records.clone(), fr, seed).unwrap();
        let (tr, va, te) = (users_of(&split.train), users_of(&split.valid), users_of(&split.test));
        prop_assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));

        let mut all: Vec<Rec> = split.train.iter().chain(&split.valid).chain(&split.test).cloned().collect();
        all.sort();
        let mut sorted = records.clone();
        sorted.sort();
        prop_assert_eq!(all, sorted);
        for (part, recs) in [(SplitPart::Train, &split.train), (SplitPart::Valid, &split.valid), (SplitPart::Test, &split.test)] {
            for r in recs.iter() {
                prop_assert_eq!(split.users[&r.user], part);
            }
            // Input order is preserved inside each part.
            prop_assert!(recs.windows(2).all(|w| w[0].n < w[1].n));
        }

        let again = split_by_user(records.clone(), fr, seed).unwrap();
        prop_assert_eq!(&again, &split);
        let mut reversed = records.clone();
        reversed.reverse();
        let from_reversed = split_by_user(reversed, fr, seed).unwrap();
        prop_assert_eq!(&from_reversed.users, &split.users);

        let n = records.len() as f64;
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        for r in &records {
            *per_user.entry(r.user.as_str()).or_default() += 1;
        }
        let m = per_user.values().copied().max().unwrap_or(0) as f64;
        let eps = 1e-9;
        prop_assert!((split.train.len() as f64 - fr.0 * n).abs() <= m / 2.0 + eps, "train {} vs {}", split.train.len(), fr.0 * n);
        prop_assert!((split.valid.len() as f64 - fr.1 * n).abs() <= m + eps, "valid {} vs {}", split.valid.len(), fr.1 * n);
        prop_assert!((split.test.len() as f64 - fr.2 * n).abs() <= m / 2.0 + eps, "test {} vs {}", split.test.len(), fr.2 * n);
    }

    /// The hashed split never puts a user in two splits and gives a user the same part in any
    /// dataset.
    #[test]
    fn prop_hashed_split_is_consistent_across_datasets(a in records_strategy(), b in records_strategy(), fr in fractions_strategy(), seed in any::<u64>()) {
        let sa = split_by_user_hashed(a, fr, seed).unwrap();
        let sb = split_by_user_hashed(b, fr, seed).unwrap();
        let (tr, va, te) = (users_of(&sa.train), users_of(&sa.valid), users_of(&sa.test));
        prop_assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
        for (u, part) in &sa.users {
            if let Some(other) = sb.users.get(u) {
                prop_assert_eq!(part, other);
            }
        }
    }

    /// The per-user cap holds, keeps exactly min(count, cap) per user (the first ones, in order)
    /// and reports what it dropped.
    #[test]
    fn prop_cap_per_user(records in records_strategy(), cap in 0usize..12) {
        let (kept, report) = cap_per_user(records.clone(), cap);
        let mut before: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &records {
            *before.entry(r.user.as_str()).or_default() += 1;
        }
        let mut after: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &kept {
            *after.entry(r.user.as_str()).or_default() += 1;
        }
        for (u, &c) in &before {
            prop_assert_eq!(after.get(u).copied().unwrap_or(0), c.min(cap));
        }
        prop_assert!(kept.windows(2).all(|w| w[0].n < w[1].n));
        // The kept ones are each user's first records.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let expected: Vec<&Rec> = records.iter().filter(|r| {
            let c = seen.entry(r.user.as_str()).or_default();
            *c += 1;
            *c <= cap
        }).collect();
        prop_assert_eq!(kept.iter().collect::<Vec<_>>(), expected);
        prop_assert_eq!(report.dropped, records.len() - kept.len());
        prop_assert_eq!(report.users_capped, before.values().filter(|&&c| c > cap).count());
    }

    /// Dedup is idempotent, keeps first occurrences in order, and leaves no duplicate pair.
    #[test]
    fn prop_dedup_idempotent(
        prompts in proptest::collection::vec("[aAbB \t]{0,6}(x|y|\u{FB01}|Ｘ){0,2}[ab ]{0,8}", 0..60),
        prefix in proptest::option::of(1usize..8),
        exact in any::<bool>(),
    ) {
        let cfg = DedupConfig { exact, prefix_chars: prefix };
        let recs: Vec<PromptRecord> = prompts.iter().enumerate().map(|(i, p)| PromptRecord {
            id: format!("p{i}"), user_id: "u".into(), prompt: p.clone(), task: None, source: None,
        }).collect();
        let (once, r1) = dedup_prompts(recs.clone(), &cfg);
        let (twice, r2) = dedup_prompts(once.clone(), &cfg);
        prop_assert_eq!(&twice, &once);
        prop_assert_eq!(r2.kept, r2.input);
        prop_assert_eq!(r1.kept + r1.exact_duplicates + r1.prefix_duplicates, r1.input);
        prop_assert_eq!(r1.duplicates.len(), r1.input - r1.kept);
        // Every removed record really duplicates the earlier kept one it names.
        for d in &r1.duplicates {
            prop_assert!(d.kept < d.removed);
            let (a, b) = (normalize_text(&recs[d.kept].prompt), normalize_text(&recs[d.removed].prompt));
            match d.kind {
                DuplicateKind::Exact => prop_assert_eq!(a, b),
                DuplicateKind::Prefix => {
                    let n = prefix.unwrap();
                    let pa: String = a.chars().take(n).collect();
                    let pb: String = b.chars().take(n).collect();
                    prop_assert!(a.chars().count() >= n && b.chars().count() >= n && pa == pb);
                }
            }
        }
        // No two kept prompts are duplicates.
        for i in 0..once.len() {
            for j in i + 1..once.len() {
                let (a, b) = (normalize_text(&once[i].prompt), normalize_text(&once[j].prompt));
                if exact {
                    prop_assert_ne!(&a, &b);
                }
                if let Some(n) = prefix {
                    if a.chars().count() >= n && b.chars().count() >= n {
                        prop_assert_ne!(a.chars().take(n).collect::<String>(), b.chars().take(n).collect::<String>());
                    }
                }
            }
        }
    }
}

#[test]
fn split_tracks_fractions_with_many_small_users() {
    let records: Vec<Rec> = (0..2000)
        .map(|n| Rec {
            user: format!("user{}", n / 2),
            n,
        })
        .collect();
    let split = split_by_user(records, (0.8, 0.1, 0.1), 7).unwrap();
    let (tr, va, te) = split.sizes();
    assert!((tr as i64 - 1600).abs() <= 1, "{tr}");
    assert!((va as i64 - 200).abs() <= 2, "{va}");
    assert!((te as i64 - 200).abs() <= 1, "{te}");
    // A different seed gives a different assignment.
    let other = split_by_user(split.train.clone(), (0.5, 0.5, 0.0), 8).unwrap();
    assert!(other.test.is_empty());
    assert_ne!(
        split_by_user(split.train.clone(), (0.5, 0.5, 0.0), 8)
            .unwrap()
            .users,
        split_by_user(split.train.clone(), (0.5, 0.5, 0.0), 9)
            .unwrap()
            .users
    );
}

#[test]
fn split_works_on_every_stage_dataset() {
    let demos: Vec<Demonstration> = (0..30)
        .map(|i| Demonstration {
            id: format!("d{i}"),
            user_id: format!("u{}", i % 7),
            prompt: "p".into(),
            response: "r".into(),
        })
        .collect();
    let rankings: Vec<Ranking> = (0..30)
        .map(|i| Ranking::pairwise(format!("r{i}"), format!("u{}", i % 5), "p", "a", "b"))
        .collect();
    let s1 = split_by_user(demos, (0.6, 0.2, 0.2), 1).unwrap();
    let s2 = split_by_user(rankings, (0.6, 0.2, 0.2), 1).unwrap();
    assert_eq!(s1.train.len() + s1.valid.len() + s1.test.len(), 30);
    assert_eq!(s2.train.len() + s2.valid.len() + s2.test.len(), 30);
}

#[test]
fn split_fraction_errors_say_what_to_change() {
    let recs: Vec<Rec> = vec![];
    let e = split_by_user(recs.clone(), (0.8, 0.1, 0.2), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: split fractions (0.8, 0.1, 0.2) sum to 1.1: expected them to sum to 1"
    );
    let e = split_by_user(recs.clone(), (1.2, -0.1, -0.1), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: split fraction `valid` is -0.1: expected a finite number >= 0"
    );
    let e = split_by_user_hashed(recs, (f64::NAN, 0.5, 0.5), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: split fraction `train` is NaN: expected a finite number >= 0"
    );
}

#[test]
fn hashed_assignment_tracks_fractions_over_many_users() {
    let fr = SplitFractions::new(0.7, 0.2, 0.1).unwrap();
    let mut counts = [0usize; 3];
    for u in 0..20_000 {
        match assign_split(&format!("user-{u}"), fr, 3) {
            SplitPart::Train => counts[0] += 1,
            SplitPart::Valid => counts[1] += 1,
            SplitPart::Test => counts[2] += 1,
        }
    }
    // Binomial standard deviation at most ~65 users; allow 5 sigma.
    assert!((counts[0] as f64 - 14_000.0).abs() < 330.0, "{counts:?}");
    assert!((counts[1] as f64 - 4_000.0).abs() < 330.0, "{counts:?}");
    assert!((counts[2] as f64 - 2_000.0).abs() < 330.0, "{counts:?}");
}

#[test]
fn cap_default_is_the_papers_200() {
    assert_eq!(DEFAULT_MAX_PROMPTS_PER_USER, 200);
    let recs: Vec<Rec> = (0..450)
        .map(|n| Rec {
            user: if n % 3 == 0 { "a".into() } else { "b".into() },
            n,
        })
        .collect();
    let (kept, report) = cap_per_user(recs, DEFAULT_MAX_PROMPTS_PER_USER);
    assert_eq!(kept.iter().filter(|r| r.user == "a").count(), 150);
    assert_eq!(kept.iter().filter(|r| r.user == "b").count(), 200);
    assert_eq!(report.users_capped, 1);
    assert_eq!(report.dropped, 100);
}

#[test]
fn normalization() {
    assert_eq!(normalize_text("  Hello\t\nWORLD  "), "hello world");
    assert_eq!(normalize_text("ﬁle"), "file");
    assert_eq!(normalize_text("Ｈｅｌｌｏ"), "hello");
    assert_eq!(normalize_text(""), "");
}

struct P(&'static str);
impl HasPrompt for P {
    fn prompt(&self) -> &str {
        self.0
    }
}

#[test]
fn dedup_exact_and_prefix() {
    let long_a = "Write a story about a dragon who learns to code in Rust and then teaches the village about it";
    let long_b =
        "write a story about a dragon who learns to code in rust and then TEACHES the king instead";
    let recs = vec![
        P("Hello  world"),
        P("hello world"),
        P("HELLO WORLD!"),
        P(long_a),
        P(long_b),
        P("short"),
    ];
    let (kept, report) = dedup_prompts(recs, &DedupConfig::default());
    let texts: Vec<&str> = kept.iter().map(|p| p.0).collect();
    assert_eq!(texts, vec!["Hello  world", "HELLO WORLD!", long_a, "short"]);
    assert_eq!(report.exact_duplicates, 1);
    assert_eq!(report.prefix_duplicates, 1);
    assert_eq!(report.duplicates[0].removed, 1);
    assert_eq!(report.duplicates[0].kept, 0);
    assert_eq!(report.duplicates[1].removed, 4);
    assert_eq!(report.duplicates[1].kept, 3);
    assert_eq!(
        report.to_string(),
        "dedup: 6 in, 4 kept, 1 exact duplicates, 1 shared-prefix duplicates"
    );
}

#[test]
fn pii_scrub_replaces_common_formats() {
    let s = PiiScrubber::new();
    let cases = [
        (
            "mail me at John.Doe+x@example.co.uk please",
            "mail me at <EMAIL> please",
        ),
        ("call 555-123-4567 now", "call <PHONE> now"),
        ("call (555) 123-4567", "call <PHONE>"),
        ("ring +1 555 123 4567", "ring <PHONE>"),
        ("uk +44 20 7946 0958", "uk <PHONE>"),
        ("intl +4915123456789", "intl <PHONE>"),
        ("ssn 123-45-6789", "ssn <SSN>"),
        ("card 4111 1111 1111 1111 ok", "card <CARD_NUMBER> ok"),
        ("card 4111-1111-1111-1111", "card <CARD_NUMBER>"),
        ("card 4111111111111111.", "card <CARD_NUMBER>."),
        ("amex 3782 822463 10005", "amex <CARD_NUMBER>"),
        ("server 192.168.0.1 down", "server <IP_ADDRESS> down"),
    ];
    for (input, expected) in cases {
        assert_eq!(s.scrub(input).0, expected, "{input}");
    }
    // Not PII: left untouched (and borrowed).
    for clean in [
        "sort : 3 1 2 =>",
        "on 2023-01-15 at 5pm",
        "version 1.2.3",
        "the numbers 12 345",
        "4111 1111 1111 1112 fails the Luhn check",
        // Digits one by one are a list, not a card number (this one passes the Luhn check).
        "sort : 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 =>",
        "digits 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "999.1.1.1 is not an address",
        "email me @ home",
        // Lists of numbers whose last group is not four digits are not phone numbers.
        "add 100 200 300",
        "sum 12 345 678 =>",
        "count 1000 200 300",
    ] {
        let (out, counts) = s.scrub(clean);
        assert!(
            matches!(out, std::borrow::Cow::Borrowed(_)),
            "{clean} -> {out}"
        );
        assert!(counts.is_empty(), "{clean}: {counts:?}");
    }
}

#[test]
fn pii_report_counts_without_leaking() {
    let mut demos = vec![
        Demonstration {
            id: "d1".into(),
            user_id: "u".into(),
            prompt: "my mail is a@b.com and b@c.org".into(),
            response: "call 555-123-4567".into(),
        },
        Demonstration {
            id: "d2".into(),
            user_id: "u".into(),
            prompt: "nothing here".into(),
            response: "fine".into(),
        },
    ];
    let report = PiiScrubber::new().scrub_records(&mut demos);
    assert_eq!(demos[0].prompt, "my mail is <EMAIL> and <EMAIL>");
    assert_eq!(demos[0].response, "call <PHONE>");
    assert_eq!(demos[1].prompt, "nothing here");
    assert_eq!(report.records_scanned, 2);
    assert_eq!(report.records_changed, 1);
    assert_eq!(report.by_kind[&PiiKind::Email], 2);
    assert_eq!(report.by_kind[&PiiKind::Phone], 1);
    assert_eq!(report.total(), 3);
    assert_eq!(
        report.changed_fields,
        vec![("d1".to_string(), "prompt"), ("d1".to_string(), "response")]
    );
    let shown = report.to_string();
    assert_eq!(
        shown,
        "pii: 2 records scanned, 1 changed, 3 replacements (email: 2, phone: 1)"
    );
    assert!(!format!("{report:?}").contains("a@b.com"));
}

#[test]
fn pii_scrub_reaches_every_ranked_response() {
    let mut r = vec![Ranking {
        id: "r".into(),
        user_id: "u".into(),
        prompt: "p".into(),
        responses: vec!["x@y.com".into(), "fine".into(), "10.0.0.1".into()],
        ranking: vec![0, 1, 2],
    }];
    let report = PiiScrubber::new().scrub_records(&mut r);
    assert_eq!(r[0].responses, vec!["<EMAIL>", "fine", "<IP_ADDRESS>"]);
    assert_eq!(report.changed_fields.len(), 2);
}
