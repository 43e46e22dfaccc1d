//! Reading and writing records: valid inputs, both ranking forms, streaming, lenient reports,
//! atomic writes, plain text, and write-then-read round trips (proptest).

use std::io::Write;

use proptest::prelude::*;
use rlhf_data::records::{
    read_jsonl, read_jsonl_from, read_text_documents, read_text_documents_from, write_jsonl,
    Demonstration, JsonlReader, JsonlWriter, Mode, PretrainText, PromptRecord, Ranking,
    ReadOptions, Record, Source, TextSplit,
};
use rlhf_data::{Error, SkipReason};

fn read_str<R: Record>(
    s: &str,
    opts: &ReadOptions,
) -> Result<(Vec<R>, rlhf_data::records::SkipReport), Error> {
    read_jsonl_from::<R, _>(s.as_bytes(), "mem.jsonl", opts)
}

#[test]
fn reads_every_record_kind() {
    let (p, _) = read_str::<PromptRecord>(
        r#"{"id":"p1","user_id":"u1","prompt":"hi","task":"rewrite/reverse","source":"labeler"}
{"id":"p2","user_id":"u2","prompt":"yo","source":null}
{"id":"p3","user_id":"u2","prompt":"hey","source":"customer","extra":[1,2]}"#,
        &ReadOptions::strict(),
    )
    .unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].task.as_deref(), Some("rewrite/reverse"));
    assert_eq!(p[0].source, Some(Source::Labeler));
    assert_eq!(p[1].source, None);
    assert_eq!(p[2].source, Some(Source::Customer));

    let (d, _) = read_str::<Demonstration>(
        r#"{"id":"d1","user_id":"u1","prompt":"2+2?","response":"4"}"#,
        &ReadOptions::strict(),
    )
    .unwrap();
    assert_eq!(d[0].response, "4");

    let (t, _) = read_str::<PretrainText>(
        r#"{"id":"t1","user_id":"web","text":"some text"}"#,
        &ReadOptions::strict(),
    )
    .unwrap();
    assert_eq!(t[0].text, "some text");
}

#[test]
fn ranking_kwise_and_pairwise_forms() {
    let (r, _) = read_str::<Ranking>(
        r#"{"id":"r1","user_id":"u","prompt":"p","responses":["a","b","c","d"],"ranking":[2,0,3,1]}
{"id":"r2","user_id":"u","prompt":"p","chosen":"good","rejected":"bad"}
{"id":"r3","user_id":"u","prompt":"p","responses":["","x"],"ranking":[1,0]}"#,
        &ReadOptions::strict(),
    )
    .unwrap();
    assert_eq!(r[0].k(), 4);
    assert_eq!(r[0].ranking, vec![2, 0, 3, 1]);
    assert_eq!(
        r[0].ranked_responses().collect::<Vec<_>>(),
        vec!["c", "a", "d", "b"]
    );
    assert_eq!(r[0].pairs().len(), 6);
    assert_eq!(r[0].pairs()[0], (2, 0));
    assert_eq!(r[0].pairs()[5], (3, 1));
    assert_eq!(r[1], Ranking::pairwise("r2", "u", "p", "good", "bad"));
    // An empty ranked response is allowed (a policy may emit EOS at once).
    assert_eq!(r[2].responses[0], "");
}

#[test]
fn blank_lines_crlf_and_bom_are_handled() {
    let data = "\u{feff}{\"id\":\"a\",\"user_id\":\"u\",\"text\":\"x\"}\r\n\r\n   \n{\"id\":\"b\",\"user_id\":\"u\",\"text\":\"y\"}";
    let (t, report) = read_str::<PretrainText>(data, &ReadOptions::strict()).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(report.lines, 4);
    assert_eq!(report.blank_lines, 2);
    assert_eq!(report.records, 2);
    assert!(report.is_clean());
}

#[test]
fn strict_stops_at_first_bad_line_lenient_counts() {
    let data = r#"{"id":"a","user_id":"u","text":"x"}
not json
{"id":"b","user_id":"u","text":""}
{"id":"c","user_id":"u","text":"z"}
{"id":"c","user_id":"u","text":"again"}
"#;
    let err = read_str::<PretrainText>(data, &ReadOptions::strict()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mem.jsonl:2: malformed JSON at column 2: expected ident; expected one JSON object per line"
    );

    // The streaming reader yields the good record, then the error, then stops.
    let mut it = JsonlReader::<PretrainText, _>::from_reader(
        data.as_bytes(),
        "mem.jsonl",
        ReadOptions::strict(),
    );
    assert_eq!(it.next().unwrap().unwrap().id, "a");
    assert!(matches!(it.next(), Some(Err(Error::Record(_)))));
    assert!(it.next().is_none());

    let (t, report) = read_str::<PretrainText>(data, &ReadOptions::lenient()).unwrap();
    assert_eq!(
        t.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        vec!["a", "c"]
    );
    assert_eq!(report.lines, 5);
    assert_eq!(report.records, 2);
    assert_eq!(report.skipped, 3);
    assert_eq!(report.count(SkipReason::MalformedJson), 1);
    assert_eq!(report.count(SkipReason::EmptyString), 1);
    assert_eq!(report.count(SkipReason::DuplicateId), 1);
    assert_eq!(report.examples.len(), 3);
    assert_eq!(report.examples[1].line, 3);
    assert_eq!(
        report.examples[2].to_string(),
        "mem.jsonl:5: field `id`: expected a unique id, found \"c\" again (first seen on line 4)"
    );
    let shown = report.to_string();
    assert!(shown.starts_with("mem.jsonl: 5 lines, 2 records, 3 skipped, 0 blank (malformed_json: 1, empty_string: 1, duplicate_id: 1)"), "{shown}");
    // Nothing is dropped silently: every line is a record, a blank line or a counted skip.
    assert_eq!(
        report.lines,
        report.records + report.skipped + report.blank_lines
    );
}

#[test]
fn lenient_keeps_only_the_first_examples() {
    let mut data = String::new();
    for _ in 0..20 {
        data.push_str("[]\n");
    }
    let opts = ReadOptions {
        max_examples: 3,
        ..ReadOptions::lenient()
    };
    let (t, report) = read_str::<PretrainText>(&data, &opts).unwrap();
    assert!(t.is_empty());
    assert_eq!(report.skipped, 20);
    assert_eq!(report.count(SkipReason::NotAnObject), 20);
    assert_eq!(report.examples.len(), 3);
    assert_eq!(report.examples[2].line, 3);
}

#[test]
fn duplicate_id_check_can_be_disabled() {
    let data = "{\"id\":\"a\",\"user_id\":\"u\",\"text\":\"x\"}\n{\"id\":\"a\",\"user_id\":\"u\",\"text\":\"y\"}\n";
    let opts = ReadOptions::strict().with_duplicate_id_check(false);
    let (t, _) = read_str::<PretrainText>(data, &opts).unwrap();
    assert_eq!(t.len(), 2);
}

#[test]
fn errors_name_the_real_file_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demos.jsonl");
    std::fs::write(&path, "{\"id\":\"d\",\"user_id\":\"u\",\"prompt\":\"p\"}\n").unwrap();
    let err = read_jsonl::<Demonstration>(&path, &ReadOptions::strict()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: field `response`: missing; expected a non-empty string",
            path.display()
        )
    );
    let missing = dir.path().join("nope.jsonl");
    let err = read_jsonl::<Demonstration>(&missing, &ReadOptions::strict()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().starts_with(&missing.display().to_string()));
}

#[test]
fn serde_deserialize_uses_the_same_validation() {
    let r: Result<Ranking, _> = serde_json::from_str(
        r#"{"id":"r","user_id":"u","prompt":"p","responses":["a","a"],"ranking":[0,1]}"#,
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "field `responses[1]`: expected 2 distinct responses, found a duplicate of responses[0]"
    );
    let ok: Ranking = serde_json::from_str(
        r#"{"id":"r","user_id":"u","prompt":"p","chosen":"a","rejected":"b"}"#,
    )
    .unwrap();
    assert_eq!(ok.ranking, vec![0, 1]);
}

#[test]
fn writer_is_atomic_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let good = vec![Ranking::pairwise("r1", "u", "p", "a", "b")];
    assert_eq!(write_jsonl(&path, &good).unwrap(), 1);
    let before = std::fs::read(&path).unwrap();

    // An invalid record aborts the write: the old file stays, no temp file is left behind.
    let bad = vec![
        Ranking::pairwise("r2", "u", "p", "a", "b"),
        Ranking {
            id: "r3".into(),
            user_id: "u".into(),
            prompt: "p".into(),
            responses: vec!["a".into(), "b".into(), "c".into()],
            ranking: vec![0, 1, 1],
        },
    ];
    let err = write_jsonl(&path, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 1 (id \"r3\") is invalid and was not written: field `ranking`: expected a permutation of 0..3 (best first), found index 1 twice"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary file left behind");

    // A writer dropped without finish() leaves the target untouched.
    {
        let mut w = JsonlWriter::<Ranking>::create(&path).unwrap();
        w.write(&good[0]).unwrap();
        w.write(&good[0]).unwrap();
        assert_eq!(w.count(), 2);
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Writing into a missing directory is an I/O error naming the path.
    let err = write_jsonl(dir.path().join("missing/x.jsonl"), &good).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn written_rankings_use_the_kwise_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    write_jsonl(&path, &[Ranking::pairwise("r1", "u", "p", "a", "b")]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "{\"id\":\"r1\",\"user_id\":\"u\",\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranking\":[0,1]}\n"
    );
}

#[test]
fn plain_text_documents() {
    let text = "first para line 1\nline 2\n\n\nsecond para\r\n\nthird\n";
    let docs = read_text_documents_from(
        text.as_bytes(),
        "corpus.txt",
        "corpus.txt",
        TextSplit::Paragraphs,
    )
    .unwrap();
    assert_eq!(
        docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        vec!["first para line 1\nline 2", "second para", "third"]
    );
    assert_eq!(docs[1].id, "corpus.txt#1");
    assert_eq!(docs[1].user_id, "corpus.txt");

    let lines = read_text_documents_from(text.as_bytes(), "c", "c", TextSplit::Lines).unwrap();
    assert_eq!(
        lines.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        vec!["first para line 1", "line 2", "second para", "third"]
    );
    let whole = read_text_documents_from(text.as_bytes(), "c", "c", TextSplit::WholeFile).unwrap();
    assert_eq!(whole.len(), 1);
    assert!(whole[0].text.contains("third"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"fine\nbroken \xff here\n").unwrap();
    drop(f);
    let err = read_text_documents(&path, TextSplit::Lines).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: invalid UTF-8 at byte 7 of the line: expected UTF-8 text",
            path.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips (proptest)
// ---------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    // Arbitrary Unicode (including quotes, backslashes, newlines, emoji) with a non-blank char.
    ("\\PC{0,20}", "[a-zA-Z0-9]", "\\PC{0,20}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

fn any_string() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn ranking_strategy() -> impl Strategy<Value = (String, String, Vec<String>, Vec<usize>)> {
    (
        text(),
        text(),
        proptest::collection::hash_set(any_string(), 2..7),
    )
        .prop_flat_map(|(u, p, set)| {
            let responses: Vec<String> = set.into_iter().collect();
            let k = responses.len();
            (
                Just(u),
                Just(p),
                Just(responses),
                Just((0..k).collect::<Vec<usize>>()).prop_shuffle(),
            )
        })
}

fn roundtrip<R: Record + PartialEq + std::fmt::Debug>(records: &[R]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.jsonl");
    write_jsonl(&path, records).unwrap();
    let (back, report) = read_jsonl::<R>(&path, &ReadOptions::strict()).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.records, records.len());
    assert_eq!(back, records);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_rankings_roundtrip(rows in proptest::collection::vec(ranking_strategy(), 0..8)) {
        let records: Vec<Ranking> = rows
            .into_iter()
            .enumerate()
            .map(|(i, (u, p, responses, ranking))| Ranking {
                id: format!("r{i}"),
                user_id: u,
                prompt: p,
                responses,
                ranking,
            })
            .collect();
        roundtrip(&records);
    }

    #[test]
    fn prop_prompts_and_demos_roundtrip(
        rows in proptest::collection::vec(
            (text(), text(), proptest::option::of(text()), proptest::option::of(any::<bool>()), text()),
            0..10,
        )
    ) {
        let prompts: Vec<PromptRecord> = rows
            .iter()
            .enumerate()
            .map(|(i, (u, p, task, src, _))| PromptRecord {
                id: format!("p{i}"),
                user_id: u.clone(),
                prompt: p.clone(),
                task: task.clone(),
                source: src.map(|b| if b { Source::Labeler } else { Source::Customer }),
            })
            .collect();
        roundtrip(&prompts);
        let demos: Vec<Demonstration> = rows
            .iter()
            .enumerate()
            .map(|(i, (u, p, _, _, r))| Demonstration {
                id: format!("d{i}"),
                user_id: u.clone(),
                prompt: p.clone(),
                response: r.clone(),
            })
            .collect();
        roundtrip(&demos);
        let texts: Vec<PretrainText> = rows
            .iter()
            .enumerate()
            .map(|(i, (u, p, _, _, _))| PretrainText { id: format!("t{i}"), user_id: u.clone(), text: p.clone() })
            .collect();
        roundtrip(&texts);
    }
}

#[test]
fn mode_default_is_strict() {
    assert_eq!(ReadOptions::default().mode, Mode::Strict);
    assert_eq!(ReadOptions::lenient().mode, Mode::Lenient);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Lines split across buffer refills are read correctly; the line limit is exact.
    #[test]
    fn prop_tiny_buffers_and_exact_line_limits(
        texts in proptest::collection::vec("[a-z ]{1,40}", 1..12),
        capacity in 1usize..16,
        blank_every in 2usize..6,
    ) {
        let records: Vec<PretrainText> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| PretrainText { id: format!("t{i}"), user_id: "u".into(), text: format!("x{t}") })
            .collect();
        let mut data = String::new();
        let mut lines = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let line = serde_json::to_string(r).unwrap();
            data.push_str(&line);
            data.push('\n');
            lines.push(line);
            if i % blank_every == 0 {
                data.push('\n');
            }
        }
        let longest = lines.iter().map(String::len).max().unwrap();
        let reader = std::io::BufReader::with_capacity(capacity, data.as_bytes());
        let opts = ReadOptions::strict().with_max_line_bytes(longest);
        let (back, report) = read_jsonl_from::<PretrainText, _>(reader, "m", &opts).unwrap();
        prop_assert_eq!(&back, &records);
        prop_assert_eq!(report.blank_lines, records.len().div_ceil(blank_every));

        // One byte less than the longest line: exactly the longest lines are rejected.
        let reader = std::io::BufReader::with_capacity(capacity, data.as_bytes());
        let opts = ReadOptions::lenient().with_max_line_bytes(longest - 1);
        let (back, report) = read_jsonl_from::<PretrainText, _>(reader, "m", &opts).unwrap();
        let too_long = lines.iter().filter(|l| l.len() == longest).count();
        prop_assert_eq!(report.count(SkipReason::LineTooLong), too_long);
        prop_assert_eq!(back.len(), records.len() - too_long);
    }
}
