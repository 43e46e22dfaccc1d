//! The toy world: determinism, coverage, lengths, parse-back, tokenizer round trips, the gold
//! score, and the simulated labelers' calibrated agreement.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rlhf_data::records::{read_jsonl, Demonstration, PromptRecord, ReadOptions, Record};
use rlhf_toy::*;

fn small_config(seed: u64) -> ToyConfig {
    ToyConfig {
        seed,
        num_users: 120,
        heldout_users: 30,
        pretrain_docs: 300,
        heldout_pretrain_docs: 30,
        ..ToyConfig::default()
    }
}

fn words(s: &str) -> usize {
    s.split(' ').count()
}

#[test]
fn default_world_is_fast_and_deterministic() {
    let start = std::time::Instant::now();
    let a = ToyWorld::generate(&ToyConfig::default()).unwrap();
    let took = start.elapsed();
    assert!(took.as_secs_f64() < 1.0, "generation took {took:?}");
    assert!(a.prompts.len() > 500, "{}", a.prompts.len());
    assert_eq!(a.pretrain.len(), 4000);
    let b = ToyWorld::generate(&ToyConfig::default()).unwrap();
    assert_eq!(a.prompts, b.prompts);
    assert_eq!(a.demonstrations, b.demonstrations);
    assert_eq!(a.heldout_prompts, b.heldout_prompts);
    assert_eq!(a.pretrain, b.pretrain);
    let c = ToyWorld::generate(&ToyConfig {
        seed: 1,
        ..ToyConfig::default()
    })
    .unwrap();
    assert_ne!(a.prompts, c.prompts);
}

#[test]
fn every_prompt_parses_back_to_its_task() {
    let w = ToyWorld::generate(&small_config(3)).unwrap();
    for (p, d) in w
        .prompts
        .iter()
        .zip(&w.demonstrations)
        .chain(w.heldout_prompts.iter().zip(&w.heldout_demonstrations))
    {
        let (task, style) = ToyTask::parse_prompt(&p.prompt).unwrap();
        assert_eq!(Some(&task), w.task(&p.id), "{}", p.prompt);
        assert_eq!(Some(style), w.style(&p.id));
        assert_eq!(p.task.as_deref(), Some(task.label().as_str()));
        assert_eq!(d.prompt, p.prompt);
        assert_eq!(d.user_id, p.user_id);
        p.validate().unwrap();
        d.validate().unwrap();
    }
}

#[test]
fn random_tasks_in_every_style_round_trip_through_their_prompt() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for kind in TaskKind::ALL {
        for _ in 0..200 {
            let task = ToyTask::random(kind, &mut rng, 8);
            let examples = vec![
                ToyTask::random(kind, &mut rng, 4),
                ToyTask::random(kind, &mut rng, 4),
            ];
            for style in Style::ALL {
                let prompt = task.render(style, &examples);
                assert!(words(&prompt) <= TOY_MAX_PROMPT_TOKENS, "{prompt}");
                let (back, st) = ToyTask::parse_prompt(&prompt).unwrap();
                assert_eq!(back, task, "{prompt}");
                assert_eq!(st, style, "{prompt}");
            }
            assert!(words(&task.canonical_response()) <= TOY_MAX_RESPONSE_TOKENS);
            assert_eq!(
                gold_score(&task, &task.canonical_response()),
                1.0,
                "{task:?}"
            );
            assert_eq!(
                gold_score(&task, &task.reference_response(&mut rng)),
                1.0,
                "{task:?}"
            );
        }
    }
}

#[test]
fn unparsable_prompts_are_errors() {
    for bad in [
        "",
        "hello there",
        "reverse : =>",
        "sort : cat dog =>",
        "continue : a c =>",
        "list 0 animals =>",
        "name a fruit not cat .",
    ] {
        let err = ToyTask::from_prompt(bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("toy task: cannot parse {bad:?}: expected a prompt made by the toy world (plain, few-shot or instruction style)")
        );
    }
}

#[test]
fn lengths_coverage_and_users() {
    let w = ToyWorld::generate(&ToyConfig::default()).unwrap();
    let all_prompts: Vec<&PromptRecord> = w.prompts.iter().chain(&w.heldout_prompts).collect();
    assert!(all_prompts
        .iter()
        .all(|p| words(&p.prompt) <= TOY_MAX_PROMPT_TOKENS));
    assert!(w
        .demonstrations
        .iter()
        .chain(&w.heldout_demonstrations)
        .all(|d| words(&d.response) <= TOY_MAX_RESPONSE_TOKENS));
    assert!(w.pretrain.iter().all(|d| words(&d.text) <= 100));

    let kinds: BTreeSet<TaskKind> = all_prompts
        .iter()
        .map(|p| w.task(&p.id).unwrap().kind())
        .collect();
    assert_eq!(kinds.len(), TaskKind::ALL.len());
    let cats: BTreeSet<Category> = kinds.iter().map(|k| k.category()).collect();
    assert_eq!(cats.len(), 8);
    let styles: std::collections::HashSet<Style> = all_prompts
        .iter()
        .map(|p| w.style(&p.id).unwrap())
        .collect();
    assert_eq!(styles.len(), 3);

    // Users have varying numbers of prompts, and held-out users are disjoint from the others.
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for p in &w.prompts {
        *per_user.entry(p.user_id.as_str()).or_default() += 1;
    }
    let counts: BTreeSet<usize> = per_user.values().copied().collect();
    assert!(counts.len() >= 5, "{counts:?}");
    assert!(*counts.iter().next().unwrap() == 1);
    let heldout: BTreeSet<&str> = w
        .heldout_prompts
        .iter()
        .map(|p| p.user_id.as_str())
        .collect();
    assert!(heldout.iter().all(|u| !per_user.contains_key(u)));
    assert!(!heldout.is_empty());
    let sources: BTreeSet<_> = all_prompts.iter().map(|p| p.source).collect();
    assert_eq!(sources.len(), 2);
    // Ids are unique across the world.
    let ids: BTreeSet<&str> = all_prompts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), all_prompts.len());
}

#[test]
fn paper_mix_weights_generation_most() {
    let cfg = ToyConfig {
        category_weights: ToyConfig::paper_category_weights(),
        num_users: 600,
        pretrain_docs: 0,
        heldout_pretrain_docs: 0,
        ..ToyConfig::default()
    };
    let w = ToyWorld::generate(&cfg).unwrap();
    let mut by_cat: BTreeMap<Category, usize> = BTreeMap::new();
    for p in &w.prompts {
        *by_cat.entry(w.task(&p.id).unwrap().category()).or_default() += 1;
    }
    let total = w.prompts.len() as f64;
    let generation = by_cat[&Category::Generation] as f64 / total;
    // 45.6 / 87.9 of the weight (the categories without a toy counterpart are left out).
    assert!((generation - 0.519).abs() < 0.05, "{generation}");
    assert!(
        by_cat[&Category::Generation] > 5 * by_cat.get(&Category::Extraction).copied().unwrap_or(0)
    );
}

#[test]
fn demonstrations_are_mostly_but_not_always_right() {
    let w = ToyWorld::generate(&ToyConfig::default()).unwrap();
    let perfect = w
        .demonstrations
        .iter()
        .filter(|d| {
            ToyPrompt::parse(&d.prompt)
                .unwrap()
                .judge(&d.response)
                .correctness
                == 1.0
        })
        .count() as f64
        / w.demonstrations.len() as f64;
    assert!((0.78..0.92).contains(&perfect), "{perfect}");
    let clean = ToyWorld::generate(&ToyConfig {
        demo_error_rate: 0.0,
        habits: HabitConfig::none(),
        ..small_config(5)
    })
    .unwrap();
    for d in &clean.demonstrations {
        assert_eq!(
            gold_score(
                clean.task(&d.id.replace("demo", "prompt")).unwrap(),
                &d.response
            ),
            1.0
        );
    }
}

#[test]
fn config_errors_say_what_to_change() {
    let e = ToyWorld::generate(&ToyConfig {
        max_items: 12,
        ..ToyConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: max_items is 12: expected a value in 3..=8 (prompts must stay within 48 tokens)"
    );
    let e = ToyWorld::generate(&ToyConfig {
        demo_error_rate: 1.5,
        ..ToyConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: demo_error_rate is 1.5: expected a value in [0, 1]"
    );
    assert!(ToyWorld::generate(&ToyConfig {
        num_users: 0,
        ..ToyConfig::default()
    })
    .is_err());
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

#[test]
fn tokenizer_round_trips_everything_the_world_produces() {
    let tok = toy_tokenizer();
    assert_eq!(tok.token_to_id(TOY_EOS), Some(TOY_EOS_ID));
    assert_eq!(tok.token_to_id(TOY_UNK), Some(TOY_UNK_ID));
    assert_eq!(tok.get_vocab_size(true), toy_vocab().len());
    for w in template_words() {
        assert!(tok.token_to_id(w).is_some(), "template word {w:?} missing");
    }
    let w = ToyWorld::generate(&small_config(8)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut texts: Vec<String> = w.texts().map(String::from).collect();
    for p in w.prompts.iter().take(300) {
        let task = w.task(&p.id).unwrap();
        texts.extend(sample_candidates(task, 9, &mut rng));
    }
    for s in &texts {
        let enc = tok.encode(s.as_str(), false).unwrap();
        assert!(
            !enc.get_ids().contains(&TOY_UNK_ID),
            "unknown word in {s:?}"
        );
        assert_eq!(&tok.decode(enc.get_ids(), true).unwrap(), s);
        assert_eq!(enc.get_ids().len(), if s.is_empty() { 0 } else { words(s) });
    }
    // The EOS is recognized in text and skipped when decoding.
    let enc = tok.encode("c b a <|endoftext|>", false).unwrap();
    assert_eq!(*enc.get_ids().last().unwrap(), TOY_EOS_ID);
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "c b a");
}

#[test]
fn tokenizer_json_save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    save_toy_tokenizer(&path).unwrap();
    let loaded = tokenizers::Tokenizer::from_file(&path).unwrap();
    let orig = toy_tokenizer();
    assert_eq!(loaded.get_vocab(true), orig.get_vocab(true));
    let s = "write a short sentence about the fox . <|endoftext|>";
    assert_eq!(
        loaded.encode(s, false).unwrap().get_ids(),
        orig.encode(s, false).unwrap().get_ids()
    );
    assert_eq!(
        loaded.to_string(false).unwrap(),
        orig.to_string(false).unwrap()
    );
}

#[test]
fn world_saves_and_reads_back() {
    let w = ToyWorld::generate(&small_config(4)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    w.save(dir.path()).unwrap();
    let (prompts, _) =
        read_jsonl::<PromptRecord>(dir.path().join("prompts.jsonl"), &ReadOptions::strict())
            .unwrap();
    assert_eq!(prompts, w.prompts);
    let (demos, _) = read_jsonl::<Demonstration>(
        dir.path().join("heldout_demonstrations.jsonl"),
        &ReadOptions::strict(),
    )
    .unwrap();
    assert_eq!(demos, w.heldout_demonstrations);
    assert!(dir.path().join("tokenizer.json").exists());
    assert!(dir.path().join("pretrain.jsonl").exists());
}

// ---------------------------------------------------------------------------------------------
// Gold score
// ---------------------------------------------------------------------------------------------

fn t(prompt: &str) -> ToyTask {
    ToyTask::from_prompt(prompt).unwrap()
}

#[test]
fn gold_score_examples() {
    let rev = t("reverse : a b c d =>");
    assert_eq!(gold_score(&rev, "d c b a"), 1.0);
    assert_eq!(gold_score(&rev, "  d  c b a "), 1.0);
    let near = gold_score(&rev, "d c a b");
    let far = gold_score(&rev, "a b c d");
    let short = gold_score(&rev, "d c b");
    let junk = gold_score(&rev, "fox sees");
    assert!(
        1.0 > near && near > far && far > junk,
        "{near} {far} {junk}"
    );
    assert!(short > far, "{short} {far}");
    assert_eq!(gold_score(&rev, ""), 0.0);

    let count = t("how many times does a appear in a b a c ?");
    assert_eq!(gold_score(&count, "2"), 1.0);
    let off1 = gold_score(&count, "3");
    let off2 = gold_score(&count, "5");
    let extra = gold_score(&count, "2 2");
    assert!(extra < 1.0 && off1 > off2 && off2 > gold_score(&count, "cat"));
    assert!(extra > off1);

    let classify = t("classify fox =>");
    assert_eq!(gold_score(&classify, "animal"), 1.0);
    assert!(gold_score(&classify, "fruit") > gold_score(&classify, "red"));
    assert!(gold_score(&classify, "animal .") > gold_score(&classify, "fruit"));

    let name = t("name a color that is not red .");
    assert_eq!(gold_score(&name, "blue"), 1.0);
    assert_eq!(gold_score(&name, "gold"), 1.0);
    assert!(gold_score(&name, "red") < 1.0);
    assert!(gold_score(&name, "red") > gold_score(&name, "cat"));

    let list = t("list 3 fruits =>");
    assert_eq!(gold_score(&list, "fig pear plum"), 1.0);
    assert_eq!(gold_score(&list, "plum fig pear"), 1.0);
    let dup = gold_score(&list, "fig fig plum");
    let two = gold_score(&list, "fig plum");
    let four = gold_score(&list, "fig plum pear kiwi");
    assert!(
        dup < two && two < 1.0 && four < 1.0 && four > dup,
        "{dup} {two} {four}"
    );

    let sent = t("write a short sentence about the fox .");
    assert_eq!(gold_score(&sent, "the fox sees the red pear ."), 1.0);
    assert_eq!(gold_score(&sent, "the big cat likes the fox ."), 1.0);
    let no_topic = gold_score(&sent, "the cat sees the dog .");
    let broken = gold_score(&sent, "fox the sees");
    assert!(no_topic < 1.0 && broken < no_topic, "{no_topic} {broken}");

    let cont = t("continue : c d e =>");
    assert_eq!(gold_score(&cont, "f g h"), 1.0);
    assert!(gold_score(&cont, "f g") < 1.0);
    let pick = t("which item is last in 3 8 7 ?");
    assert_eq!(gold_score(&pick, "7"), 1.0);
    assert!(gold_score(&pick, "8") > gold_score(&pick, "9"));
    let ext = t("which of red cat pear dog are animals ?");
    assert_eq!(gold_score(&ext, "cat dog"), 1.0);
    let summ = t("summarize : cat cat dog dog dog cat =>");
    assert_eq!(gold_score(&summ, "cat dog cat"), 1.0);
    let rep = t("replace b with x : a b c b =>");
    assert_eq!(gold_score(&rep, "a x c x"), 1.0);
    let sort = t("sort : 9 3 5 =>");
    assert_eq!(gold_score(&sort, "3 5 9"), 1.0);
}

#[test]
fn gold_score_ranks_ideal_above_corrupted() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for kind in TaskKind::ALL {
        let mut means = [0.0f64; 4];
        let n = 300;
        for _ in 0..n {
            let task = ToyTask::random(kind, &mut rng, 6);
            let ideal = task.reference_response(&mut rng);
            assert_eq!(gold_score(&task, &ideal), 1.0);
            for how in Corruption::ALL {
                let bad = corrupt(&ideal, how, &mut rng);
                assert_ne!(bad, ideal);
                let s = gold_score(&task, &bad);
                assert!((0.0..=1.0).contains(&s));
                if !kind.is_open_ended() {
                    // A closed task has one right answer: anything else scores strictly lower.
                    assert!(s < 1.0, "{kind}: {ideal:?} -> {bad:?} scored {s}");
                }
            }
            for (c, mean) in means.iter_mut().enumerate() {
                *mean += gold_score(&task, &corrupt_n(&ideal, c, &mut rng)) / n as f64;
            }
        }
        // More corruption, lower score on average. (For single-token answers one corruption
        // often empties the response, the worst answer, and a second one can only add a token
        // back, so there the 1-vs-2 step is not monotone; 1 -> 3 and 2 -> 3 still are.)
        assert!((means[0] - 1.0).abs() < 1e-9, "{kind}: {means:?}");
        assert!(
            means[0] > means[1] && means[1] > means[3] && means[2] > means[3],
            "{kind}: {means:?}"
        );
        if !matches!(
            kind,
            TaskKind::Count | TaskKind::Pick | TaskKind::Classify | TaskKind::NameOne
        ) {
            assert!(means[1] > means[2], "{kind}: {means:?}");
        }
    }
}

#[test]
fn gold_score_never_panics_on_odd_input() {
    let tasks = vec![
        ToyTask::Continue {
            items: vec!["z".into()],
        },
        ToyTask::Pick {
            items: vec![],
            position: Position::Third,
        },
        ToyTask::Classify {
            word: "nothing".into(),
        },
        ToyTask::List {
            word_kind: WordKind::Fruit,
            n: 0,
        },
        ToyTask::Count {
            items: vec![],
            target: "a".into(),
        },
    ];
    for task in &tasks {
        for r in [
            "",
            " ",
            "z",
            "9 9 9 9 9 9 9 9 9 9 9 9",
            "<|endoftext|>",
            "ünïcödé ✓",
        ] {
            let s = gold_score(task, r);
            assert!((0.0..=1.0).contains(&s), "{task:?} {r:?} {s}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Labelers
// ---------------------------------------------------------------------------------------------

#[test]
fn labelers_agree_on_73_percent_of_pairs() {
    let pool = LabelerPool::calibrated(&LabelerConfig::default(), 1).unwrap();
    assert_eq!(pool.len(), 8);
    // A fresh sample (different seed from the calibration one) of K = 4..9 rankings.
    let samples = reference_samples(1500, 4, 9, 99);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let measured = pool.measure_agreement(&samples, &mut rng);
    assert!(measured.pairs > 20_000, "{}", measured.pairs);
    let rate = measured.rate();
    assert!((rate - 0.73).abs() <= 0.03, "measured agreement {rate}");

    let pairs: Vec<(f64, f64)> = samples.iter().flat_map(|(t, c)| gold_pairs(t, c)).collect();
    let expected = pool.expected_agreement(&pairs);
    assert!(
        (expected - rate).abs() < 0.01,
        "expected {expected} measured {rate}"
    );
    // The RM ceiling: the gold score predicts one labeler better than another labeler does.
    let ceiling = pool.noise_ceiling(&pairs);
    assert!(ceiling > rate && ceiling < 0.95, "ceiling {ceiling}");
    assert!((PAPER_AGREEMENT - 0.726).abs() < 1e-12);
}

#[test]
fn noisier_labelers_agree_less() {
    let samples = reference_samples(300, 4, 9, 3);
    let pairs: Vec<(f64, f64)> = samples.iter().flat_map(|(t, c)| gold_pairs(t, c)).collect();
    let calm = LabelerPool::with_temperature(0.05, 4, 0.0).unwrap();
    let noisy = LabelerPool::with_temperature(0.5, 4, 0.0).unwrap();
    assert!(calm.expected_agreement(&pairs) > noisy.expected_agreement(&pairs));
    assert!(calm.noise_ceiling(&pairs) > noisy.noise_ceiling(&pairs));
    // Equal temperatures: agreement = E[p^2 + (1-p)^2] and ceiling = E[max(p, 1-p)].
    let p = calm.labelers[0].preference_probability(0.9, 0.4);
    let one = [(0.9, 0.4)];
    assert!((calm.expected_agreement(&one) - (p * p + (1.0 - p) * (1.0 - p))).abs() < 1e-12);
    assert!((calm.noise_ceiling(&one) - p).abs() < 1e-12);
    assert_eq!(calm.noise_ceiling(&[(0.3, 0.3)]), 0.5);
}

#[test]
fn labeler_rankings_are_permutations_and_follow_gold() {
    let pool = LabelerPool::calibrated(&LabelerConfig::default(), 2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let task = ToyPrompt::parse("reverse : a b c d e =>").unwrap();
    let responses = ["e d c b a", "e d c a b", "a b c d e", "fox", "e d c b", "b"];
    let mut best_counts = [0usize; 6];
    for _ in 0..400 {
        let l = pool.choose(&mut rng);
        let r = l.rank(&task, &responses, &mut rng);
        let mut sorted = r.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        best_counts[r[0]] += 1;
    }
    // The ideal response is ranked first most often.
    let top = best_counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .unwrap()
        .0;
    assert_eq!(top, 0, "{best_counts:?}");
    // Seeded: same seed, same ranking.
    let a = pool.labelers[0].rank(&task, &responses, &mut ChaCha8Rng::seed_from_u64(1));
    let b = pool.labelers[0].rank(&task, &responses, &mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!(a, b);
}

#[test]
fn simulated_rankings_are_valid_records() {
    let w = ToyWorld::generate(&small_config(6)).unwrap();
    let pool = LabelerPool::calibrated(&LabelerConfig::default(), 0).unwrap();
    let rankings = simulate_rankings(&w.prompts, &pool, 4, 9, 17).unwrap();
    assert_eq!(rankings.len(), w.prompts.len());
    let ks: BTreeSet<usize> = rankings.iter().map(|r| r.k()).collect();
    assert_eq!(ks, (4..=9).collect());
    for r in &rankings {
        r.validate().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rankings.jsonl");
    rlhf_data::records::write_jsonl(&path, &rankings).unwrap();
    let (back, _) =
        read_jsonl::<rlhf_data::records::Ranking>(&path, &ReadOptions::strict()).unwrap();
    assert_eq!(back, rankings);
    assert_eq!(
        simulate_rankings(&w.prompts, &pool, 4, 9, 17).unwrap(),
        rankings
    );
}

#[test]
fn labeler_config_errors() {
    let e = LabelerPool::calibrated(
        &LabelerConfig {
            target_agreement: 0.4,
            ..LabelerConfig::default()
        },
        0,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: target_agreement is 0.4: expected a value in (0.5, 1)"
    );
    // Only ties: no temperature reaches 73%.
    let e = LabelerPool::calibrated_on(&[(0.5, 0.5); 10], &LabelerConfig::default()).unwrap_err();
    assert!(e.to_string().contains("unreachable"), "{e}");
}

#[test]
fn random_tasks_respect_max_items() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for max_items in 3..=8 {
        for kind in TaskKind::ALL {
            for _ in 0..100 {
                let task = ToyTask::random(kind, &mut rng, max_items);
                let items = match &task {
                    ToyTask::Reverse { items }
                    | ToyTask::Sort { items }
                    | ToyTask::Replace { items, .. }
                    | ToyTask::Summarize { items }
                    | ToyTask::Continue { items }
                    | ToyTask::Count { items, .. }
                    | ToyTask::Pick { items, .. }
                    | ToyTask::Extract { items, .. } => items.clone(),
                    _ => vec![],
                };
                assert!(items.len() <= max_items, "{max_items}: {task:?}");
                if let ToyTask::Summarize { items } = &task {
                    assert!(
                        items.windows(2).any(|w| w[0] == w[1]),
                        "no repeat: {task:?}"
                    );
                }
                if kind != TaskKind::Classify
                    && kind != TaskKind::NameOne
                    && kind != TaskKind::List
                    && kind != TaskKind::Sentence
                {
                    assert!(!items.is_empty());
                }
                assert_eq!(ToyTask::from_prompt(&task.plain_prompt()).unwrap(), task);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conduct: demonstrators' habits and explicit constraints
// ---------------------------------------------------------------------------------------------

#[test]
fn demonstrators_have_the_configured_habits_and_mostly_obey_constraints() {
    let w = ToyWorld::generate(&ToyConfig::default()).unwrap();
    let h = HabitConfig::default();
    let (mut free, mut filler, mut sign_off) = (0usize, 0usize, 0usize);
    let (mut constrained, mut broken) = (0usize, 0usize);
    for d in &w.demonstrations {
        let p = ToyPrompt::parse(&d.prompt).unwrap();
        assert_eq!(
            &p,
            w.prompt(&d.id.replace("demo", "prompt")).unwrap(),
            "{}",
            d.prompt
        );
        let j = p.judge(&d.response);
        if p.constraint.is_some() {
            constrained += 1;
            broken += usize::from(j.broke_constraint);
        } else {
            free += 1;
            filler += usize::from(j.filler);
            sign_off += usize::from(j.sign_off);
        }
    }
    let n = w.demonstrations.len() as f64;
    let share = |a: usize, b: usize| a as f64 / b as f64;
    assert!(
        (share(constrained, w.demonstrations.len()) - h.constraint_rate).abs() < 0.03,
        "{constrained} of {n}"
    );
    // Personal rates spread around the mean (clamped at 1, so slightly below it).
    assert!(
        (0.45..0.62).contains(&share(filler, free)),
        "{filler}/{free}"
    );
    assert!(
        (0.32..0.42).contains(&share(sign_off, free)),
        "{sign_off}/{free}"
    );
    // Constraints are broken only by demonstrators who ignore them, with a habit.
    let b = share(broken, constrained);
    assert!(
        b > 0.05 && b < h.ignore_constraint_rate,
        "{broken}/{constrained}"
    );
}

#[test]
fn the_correctness_only_world_has_no_habits_and_no_constraints() {
    let w = ToyWorld::generate(&ToyConfig {
        seed: 3,
        ..ToyConfig::correctness_only()
    })
    .unwrap();
    let conduct: Vec<&str> = conduct_words().into_iter().filter(|w| *w != ":").collect();
    for text in w.texts() {
        for word in text.split_whitespace() {
            assert!(!conduct.contains(&word), "{word} in {text}");
        }
    }
    for p in &w.prompts {
        assert_eq!(w.prompt(&p.id).unwrap().constraint, None);
    }
    // There, the gold score is correctness alone.
    for d in w.demonstrations.iter().take(200) {
        let p = ToyPrompt::parse(&d.prompt).unwrap();
        assert_eq!(p.gold(&d.response), gold_score(&p.task, &d.response));
    }
}

#[test]
fn labelers_prefer_answers_without_habits() {
    let pool = LabelerPool::calibrated(&LabelerConfig::default(), 2).unwrap();
    let p = ToyPrompt::parse("answer only : reverse : a b c d e =>").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let trials = 2000;
    let wins = (0..trials)
        .filter(|_| {
            pool.choose(&mut rng)
                .prefers(&p, "e d c b a", "sure e d c b a", &mut rng)
        })
        .count();
    assert!(wins as f64 / trials as f64 > 0.9, "{wins} of {trials}");
    // A habit costs less than a wrong answer only when the constraint is absent.
    let free = ToyPrompt::parse("reverse : a b c d e =>").unwrap();
    assert!(free.gold("sure e d c b a") > free.gold("a b c d e"));
    assert!(p.gold("sure e d c b a") < free.gold("sure e d c b a"));
}

#[test]
fn held_out_labelers_are_a_disjoint_calibrated_group() {
    let samples = reference_samples(300, 4, 9, 3);
    let pairs: Vec<(f64, f64)> = samples.iter().flat_map(|(t, c)| gold_pairs(t, c)).collect();
    let cfg = LabelerConfig::default();
    let train = LabelerPool::calibrated_on(&pairs, &cfg).unwrap();
    let heldout = LabelerPool::heldout_on(&pairs, &cfg).unwrap();
    let ids: BTreeSet<usize> = train.labelers.iter().map(|l| l.id).collect();
    assert!(heldout.labelers.iter().all(|l| !ids.contains(&l.id)));
    assert!((train.expected_agreement(&pairs) - 0.73).abs() < 1e-6);
    assert!((heldout.expected_agreement(&pairs) - 0.77).abs() < 1e-6);
}

#[test]
fn pretraining_tasks_are_written_with_the_demonstrators_habits() {
    // Segments `query answer ;` with a plain query (one `=>` each); habit words occur nowhere
    // else in the corpus.
    let stats = |cfg: &ToyConfig| {
        let w = ToyWorld::generate(cfg).unwrap();
        let (mut tasks, mut filler, mut sign_off, mut constrained) = (0usize, 0, 0, 0);
        for d in &w.pretrain {
            let toks: Vec<&str> = d.text.split_whitespace().collect();
            tasks += toks.iter().filter(|t| **t == "=>").count();
            filler += toks
                .iter()
                .filter(|t| FILLERS.iter().any(|p| p[0] == **t))
                .count();
            sign_off += toks
                .iter()
                .filter(|t| SIGNOFFS.iter().any(|p| p[0] == **t))
                .count();
            constrained += toks
                .windows(ANSWER_ONLY_PREFIX.len())
                .filter(|t| *t == ANSWER_ONLY_PREFIX)
                .count();
        }
        let n = tasks as f64;
        (
            tasks,
            filler as f64 / n,
            sign_off as f64 / n,
            constrained as f64 / n,
        )
    };
    let h = HabitConfig::default();
    let (tasks, filler, sign_off, constrained) = stats(&ToyConfig::default());
    assert!(tasks > 500, "{tasks}");
    // As in the demonstrations: habits at about the configured rates outside constrained
    // queries (70% of them), fewer inside.
    assert!((0.3..0.5).contains(&filler), "filler {filler}");
    assert!((0.2..0.35).contains(&sign_off), "sign-off {sign_off}");
    assert!(
        (constrained - h.constraint_rate).abs() < 0.05,
        "constrained {constrained}"
    );
    // The ablation corpus: plain answers only.
    let (tasks, filler, sign_off, constrained) = stats(&ToyConfig {
        pretrain_habits: false,
        ..ToyConfig::default()
    });
    assert!(tasks > 500, "{tasks}");
    assert_eq!((filler, sign_off, constrained), (0.0, 0.0, 0.0));
}

#[test]
fn the_expected_win_rate_is_what_sampled_win_rates_average_to() {
    use rlhf_toy::eval::{expected_win_rate, win_rate};
    let pool = LabelerPool::calibrated(&LabelerConfig::default(), 3).unwrap();
    let reverse = |items: &[&str]| {
        ToyPrompt::plain(
            ToyTask::Reverse {
                items: items.iter().map(|s| s.to_string()).collect(),
            },
            Style::Plain,
        )
    };
    // Three kinds of comparison, repeated: a correct answer against the same answer with a
    // filler, against a wrong answer, and against itself (a tie).
    let mut tasks = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        for (x, y) in [
            ("c b a", "sure c b a"),
            ("c b a", "a b c"),
            ("c b a", "c b a"),
        ] {
            tasks.push(reverse(&["a", "b", "c"]));
            a.push(x.to_string());
            b.push(y.to_string());
        }
    }
    let expected = expected_win_rate(&tasks, &a, &b, &pool);
    // By hand: the mean over labelers of each comparison's preference probability.
    let by_hand = |gx: f64, gy: f64| {
        pool.labelers
            .iter()
            .map(|l| l.preference_probability(gx, gy))
            .sum::<f64>()
            / pool.labelers.len() as f64
    };
    let t = &tasks[0];
    let want = (by_hand(1.0, t.gold("sure c b a")) + by_hand(1.0, t.gold("a b c")) + 0.5) / 3.0;
    assert!((expected - want).abs() < 1e-12, "{expected} vs {want}");
    assert!(
        expected > 0.6,
        "a correct answer without habits wins: {expected}"
    );
    // The sampled win rate (6,000 comparisons, standard error about 0.006) lands near it.
    let sampled: Vec<f64> = (0..4).map(|s| win_rate(&tasks, &a, &b, &pool, s)).collect();
    let mean = sampled.iter().sum::<f64>() / sampled.len() as f64;
    assert!(
        (mean - expected).abs() < 0.01,
        "sampled {sampled:?}, expected {expected}"
    );
    // Swapping the sides gives the complement.
    let swapped = expected_win_rate(&tasks, &b, &a, &pool);
    assert!((expected + swapped - 1.0).abs() < 1e-12);
}
