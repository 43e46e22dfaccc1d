//! The bad-input corpus: every kind of bad line and the exact error it must give.
//!
//! Each case is a two-line file: a valid record on line 1 and the bad line on line 2, so the
//! line number is checked too. Strict mode must return exactly the expected message; lenient
//! mode must return the valid record, skip the bad line and report it with the same message.
//! Property tests feed arbitrary bytes and mutated lines to every reader: no panic, and every
//! line is accounted for.

use proptest::prelude::*;
use rlhf_data::records::{
    read_jsonl_from, Demonstration, PretrainText, PromptRecord, Ranking, ReadOptions, Record,
};
use rlhf_data::{Error, SkipReason};

const FILE: &str = "bad.jsonl";

const VALID_PROMPT: &str = r#"{"id":"ok","user_id":"u0","prompt":"fine"}"#;
const VALID_DEMO: &str = r#"{"id":"ok","user_id":"u0","prompt":"fine","response":"sure"}"#;
const VALID_RANKING: &str =
    r#"{"id":"ok","user_id":"u0","prompt":"fine","responses":["a","b"],"ranking":[1,0]}"#;
const VALID_TEXT: &str = r#"{"id":"ok","user_id":"u0","text":"fine"}"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Prompt,
    Demo,
    Ranking,
    Text,
}

struct Case {
    name: &'static str,
    kind: Kind,
    line: Vec<u8>,
    /// The message after `bad.jsonl:2: `.
    expected: String,
    reason: SkipReason,
    opts: ReadOptions,
}

fn case(name: &'static str, kind: Kind, line: &str, expected: &str, reason: SkipReason) -> Case {
    Case {
        name,
        kind,
        line: line.as_bytes().to_vec(),
        expected: expected.to_string(),
        reason,
        opts: ReadOptions::strict(),
    }
}

fn corpus() -> Vec<Case> {
    use Kind::*;
    use SkipReason as S;
    let mut cases = vec![
        case(
            "malformed_truncated_object",
            Demo,
            r#"{"id":"x","user_id":"u","prompt":"p""#,
            "malformed JSON at column 36: EOF while parsing an object; expected one JSON object per line",
            S::MalformedJson,
        ),
        case(
            "malformed_trailing_garbage",
            Text,
            r#"{"id":"x","user_id":"u","text":"t"} extra"#,
            "malformed JSON at column 37: trailing characters; expected one JSON object per line",
            S::MalformedJson,
        ),
        case(
            "malformed_single_quotes",
            Prompt,
            "{'id':'x'}",
            "malformed JSON at column 2: key must be a string; expected one JSON object per line",
            S::MalformedJson,
        ),
        case(
            "malformed_lone_surrogate",
            Text,
            r#"{"id":"\ud800","user_id":"u","text":"t"}"#,
            "malformed JSON at column 14: unexpected end of hex escape; expected one JSON object per line",
            S::MalformedJson,
        ),
        case(
            "malformed_control_character",
            Text,
            "{\"id\":\"a\u{1}b\",\"user_id\":\"u\",\"text\":\"t\"}",
            "malformed JSON at column 9: control character (\\u0000-\\u001F) found while parsing a string; expected one JSON object per line",
            S::MalformedJson,
        ),
        case(
            "malformed_deep_nesting",
            Text,
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
            "malformed JSON at column 128: recursion limit exceeded; expected one JSON object per line",
            S::MalformedJson,
        ),
        case(
            "not_an_object_array",
            Prompt,
            r#"["a","b"]"#,
            "expected a JSON object, found an array of 2 elements",
            S::NotAnObject,
        ),
        case(
            "not_an_object_string",
            Demo,
            r#""just a string""#,
            "expected a JSON object, found string \"just a string\"",
            S::NotAnObject,
        ),
        case(
            "not_an_object_null",
            Ranking,
            "null",
            "expected a JSON object, found null",
            S::NotAnObject,
        ),
        case(
            "missing_id",
            Text,
            r#"{"user_id":"u","text":"t"}"#,
            "field `id`: missing; expected a non-empty string",
            S::MissingField,
        ),
        case(
            "missing_user_id",
            Demo,
            r#"{"id":"x","prompt":"p","response":"r"}"#,
            "field `user_id`: missing; expected a non-empty string",
            S::MissingField,
        ),
        case(
            "missing_prompt",
            Prompt,
            r#"{"id":"x","user_id":"u"}"#,
            "field `prompt`: missing; expected a non-empty string",
            S::MissingField,
        ),
        case(
            "missing_response",
            Demo,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["r"]}"#,
            "field `response`: missing; expected a non-empty string",
            S::MissingField,
        ),
        case(
            "missing_responses",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p"}"#,
            "field `responses`: missing; expected an array of K >= 2 strings (or the pairwise form `chosen` + `rejected`)",
            S::MissingField,
        ),
        case(
            "missing_ranking",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b"]}"#,
            "field `ranking`: missing; expected an array of K indices into `responses`, best first",
            S::MissingField,
        ),
        case(
            "pairwise_missing_rejected",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","chosen":"a"}"#,
            "field `rejected`: missing; expected a string",
            S::MissingField,
        ),
        case(
            "wrong_type_id_number",
            Text,
            r#"{"id":5,"user_id":"u","text":"t"}"#,
            "field `id`: expected a non-empty string, found number 5",
            S::WrongType,
        ),
        case(
            "wrong_type_prompt_null",
            Demo,
            r#"{"id":"x","user_id":"u","prompt":null,"response":"r"}"#,
            "field `prompt`: expected a non-empty string, found null",
            S::WrongType,
        ),
        case(
            "wrong_type_user_id_object",
            Prompt,
            r#"{"id":"x","user_id":{"name":"bob"},"prompt":"p"}"#,
            "field `user_id`: expected a non-empty string, found an object",
            S::WrongType,
        ),
        case(
            "wrong_type_task_array",
            Prompt,
            r#"{"id":"x","user_id":"u","prompt":"p","task":["qa"]}"#,
            "field `task`: expected a non-empty string or null, found an array of 1 element",
            S::WrongType,
        ),
        case(
            "wrong_type_text_bool",
            Text,
            r#"{"id":"x","user_id":"u","text":true}"#,
            "field `text`: expected a non-empty string, found boolean true",
            S::WrongType,
        ),
        case(
            "unknown_source",
            Prompt,
            r#"{"id":"x","user_id":"u","prompt":"p","source":"admin"}"#,
            "field `source`: expected \"labeler\" or \"customer\" (or null), found string \"admin\"",
            S::WrongType,
        ),
        case(
            "source_wrong_type",
            Prompt,
            r#"{"id":"x","user_id":"u","prompt":"p","source":1}"#,
            "field `source`: expected \"labeler\" or \"customer\" (or null), found number 1",
            S::WrongType,
        ),
        case(
            "responses_not_an_array",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":"a b","ranking":[0]}"#,
            "field `responses`: expected an array of K >= 2 strings (or the pairwise form `chosen` + `rejected`), found string \"a b\"",
            S::WrongType,
        ),
        case(
            "response_element_not_a_string",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a",3],"ranking":[0,1]}"#,
            "field `responses[1]`: expected a string, found number 3",
            S::WrongType,
        ),
        case(
            "ranking_not_an_array",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b"],"ranking":"0 1"}"#,
            "field `ranking`: expected an array of K indices into `responses`, best first, found string \"0 1\"",
            S::WrongType,
        ),
        case(
            "ranking_index_is_a_string",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","c"],"ranking":[0,"1",2]}"#,
            "field `ranking[1]`: expected an integer index, found string \"1\"",
            S::WrongType,
        ),
        case(
            "empty_prompt",
            Prompt,
            r#"{"id":"x","user_id":"u","prompt":""}"#,
            "field `prompt`: expected a non-empty string, found an empty or whitespace-only string",
            S::EmptyString,
        ),
        case(
            "whitespace_only_response",
            Demo,
            r#"{"id":"x","user_id":"u","prompt":"p","response":" \n\t "}"#,
            "field `response`: expected a non-empty string, found an empty or whitespace-only string",
            S::EmptyString,
        ),
        case(
            "empty_id",
            Ranking,
            r#"{"id":"","user_id":"u","prompt":"p","chosen":"a","rejected":"b"}"#,
            "field `id`: expected a non-empty string, found an empty or whitespace-only string",
            S::EmptyString,
        ),
        case(
            "empty_text",
            Text,
            r#"{"id":"x","user_id":"u","text":"   "}"#,
            "field `text`: expected a non-empty string, found an empty or whitespace-only string",
            S::EmptyString,
        ),
        case(
            "k_is_one",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a"],"ranking":[0]}"#,
            "field `responses`: expected at least 2 responses (K >= 2), found 1",
            S::TooFewResponses,
        ),
        case(
            "k_is_zero",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":[],"ranking":[]}"#,
            "field `responses`: expected at least 2 responses (K >= 2), found 0",
            S::TooFewResponses,
        ),
        case(
            "ranking_too_short",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","c"],"ranking":[0,1]}"#,
            "field `ranking`: expected 3 indices (one per response), found 2",
            S::InvalidRanking,
        ),
        case(
            "ranking_index_out_of_range",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","c"],"ranking":[0,1,3]}"#,
            "field `ranking[2]`: expected an index in 0..3, found 3",
            S::InvalidRanking,
        ),
        case(
            "ranking_index_negative",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","c"],"ranking":[0,-1,2]}"#,
            "field `ranking[1]`: expected an index in 0..3, found -1",
            S::InvalidRanking,
        ),
        case(
            "ranking_index_fractional",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","c"],"ranking":[0,1.5,2]}"#,
            "field `ranking[1]`: expected an index in 0..3, found 1.5",
            S::InvalidRanking,
        ),
        case(
            "ranking_index_huge",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b"],"ranking":[0,18446744073709551616]}"#,
            "field `ranking[1]`: expected an index in 0..2, found 1.8446744073709552e+19",
            S::InvalidRanking,
        ),
        case(
            "ranking_not_a_permutation",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","c"],"ranking":[0,1,1]}"#,
            "field `ranking`: expected a permutation of 0..3 (best first), found index 1 twice",
            S::InvalidRanking,
        ),
        case(
            "duplicate_responses",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b","a"],"ranking":[0,1,2]}"#,
            "field `responses[2]`: expected 3 distinct responses, found a duplicate of responses[0]",
            S::DuplicateResponse,
        ),
        case(
            "pairwise_chosen_equals_rejected",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","chosen":"same","rejected":"same"}"#,
            "field `rejected`: expected a response different from `chosen`, found the same text",
            S::DuplicateResponse,
        ),
        case(
            "both_ranking_forms",
            Ranking,
            r#"{"id":"x","user_id":"u","prompt":"p","responses":["a","b"],"ranking":[0,1],"chosen":"a","rejected":"b"}"#,
            "expected either `responses` + `ranking` or the pairwise `chosen` + `rejected`, found both forms",
            S::AmbiguousForm,
        ),
        case(
            "duplicate_id",
            Demo,
            r#"{"id":"ok","user_id":"u","prompt":"p","response":"r"}"#,
            "field `id`: expected a unique id, found \"ok\" again (first seen on line 1)",
            S::DuplicateId,
        ),
    ];

    // Invalid UTF-8 inside a string value ("caf" then a Latin-1 e-acute byte).
    let mut bytes = br#"{"id":"x","user_id":"u","text":"caf"#.to_vec();
    let at = bytes.len();
    bytes.extend_from_slice(b"\xe9\"}");
    cases.push(Case {
        name: "invalid_utf8",
        kind: Kind::Text,
        line: bytes,
        expected: format!("invalid UTF-8 at byte {at} of the line: expected UTF-8 text"),
        reason: SkipReason::InvalidUtf8,
        opts: ReadOptions::strict(),
    });
    // A truncated multi-byte sequence at the very end of the line.
    cases.push(Case {
        name: "invalid_utf8_truncated_sequence",
        kind: Kind::Prompt,
        line: b"{\"id\":\"x\",\"user_id\":\"u\",\"prompt\":\"\xe2\x82".to_vec(),
        expected: "invalid UTF-8 at byte 34 of the line: expected UTF-8 text".into(),
        reason: SkipReason::InvalidUtf8,
        opts: ReadOptions::strict(),
    });
    // An over-long line (the limit is lowered to keep the test small).
    let long = format!(
        r#"{{"id":"x","user_id":"u","text":"{}"}}"#,
        "y".repeat(5000)
    );
    cases.push(Case {
        name: "over_long_line",
        kind: Kind::Text,
        line: long.into_bytes(),
        expected: "line is longer than the limit of 1024 bytes: expected one JSON object of at most 1024 bytes".into(),
        reason: SkipReason::LineTooLong,
        opts: ReadOptions::strict().with_max_line_bytes(1024),
    });
    cases
}

fn valid_line(kind: Kind) -> &'static str {
    match kind {
        Kind::Prompt => VALID_PROMPT,
        Kind::Demo => VALID_DEMO,
        Kind::Ranking => VALID_RANKING,
        Kind::Text => VALID_TEXT,
    }
}

/// Reads `data` as `kind` in strict and lenient modes; returns (strict error, lenient records,
/// lenient report) with records as their ids.
fn read_both(
    kind: Kind,
    data: &[u8],
    opts: &ReadOptions,
) -> (Option<Error>, Vec<String>, rlhf_data::records::SkipReport) {
    fn go<R: Record>(
        data: &[u8],
        opts: &ReadOptions,
    ) -> (Option<Error>, Vec<String>, rlhf_data::records::SkipReport) {
        let strict = read_jsonl_from::<R, _>(data, FILE, opts).err();
        let lenient_opts = ReadOptions {
            mode: rlhf_data::records::Mode::Lenient,
            ..opts.clone()
        };
        let (recs, report) = read_jsonl_from::<R, _>(data, FILE, &lenient_opts)
            .expect("lenient mode never fails on in-memory input");
        (
            strict,
            recs.iter().map(|r| r.id().to_string()).collect(),
            report,
        )
    }
    match kind {
        Kind::Prompt => go::<PromptRecord>(data, opts),
        Kind::Demo => go::<Demonstration>(data, opts),
        Kind::Ranking => go::<Ranking>(data, opts),
        Kind::Text => go::<PretrainText>(data, opts),
    }
}

#[test]
fn corpus_has_at_least_twenty_kinds() {
    let cases = corpus();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let reasons: std::collections::BTreeSet<_> = cases.iter().map(|c| c.reason).collect();
    // Every skip reason is exercised.
    assert_eq!(reasons.len(), 12, "{reasons:?}");
    let names: std::collections::BTreeSet<_> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "duplicate case names");
}

#[test]
fn every_bad_input_gives_its_exact_error() {
    let mut failures = Vec::new();
    for c in corpus() {
        let mut data = valid_line(c.kind).as_bytes().to_vec();
        data.push(b'\n');
        data.extend_from_slice(&c.line);
        data.push(b'\n');
        let expected = format!("{FILE}:2: {}", c.expected);

        let (strict, recs, report) = read_both(c.kind, &data, &c.opts);
        match strict {
            Some(Error::Record(e)) => {
                if e.to_string() != expected {
                    failures.push(format!(
                        "{}: strict gave\n    {e}\n  expected\n    {expected}",
                        c.name
                    ));
                }
                if e.line != 2 || e.reason() != c.reason {
                    failures.push(format!(
                        "{}: line {} reason {:?}",
                        c.name,
                        e.line,
                        e.reason()
                    ));
                }
            }
            other => failures.push(format!("{}: strict gave {other:?}", c.name)),
        }
        if recs != vec!["ok".to_string()] {
            failures.push(format!("{}: lenient records {recs:?}", c.name));
        }
        if report.skipped != 1 || report.count(c.reason) != 1 || report.lines != 2 {
            failures.push(format!("{}: lenient report {report}", c.name));
        }
        match report.examples.first() {
            Some(e) if e.to_string() == expected => {}
            other => failures.push(format!("{}: lenient example {other:?}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lenient_reads_through_the_whole_corpus() {
    // All bad lines of one kind in one file, between valid lines: every valid line survives
    // and every bad line is counted under its reason.
    for kind in [Kind::Prompt, Kind::Demo, Kind::Ranking, Kind::Text] {
        let cases: Vec<Case> = corpus()
            .into_iter()
            .filter(|c| c.kind == kind)
            .filter(|c| c.reason != SkipReason::LineTooLong && c.reason != SkipReason::DuplicateId)
            .collect();
        let mut data = Vec::new();
        let valid = valid_line(kind);
        for (i, c) in cases.iter().enumerate() {
            data.extend_from_slice(valid.replace("\"ok\"", &format!("\"ok{i}\"")).as_bytes());
            data.push(b'\n');
            data.extend_from_slice(&c.line);
            data.push(b'\n');
        }
        let (_, recs, report) = read_both(kind, &data, &ReadOptions::strict());
        assert_eq!(recs.len(), cases.len(), "{kind:?}");
        assert_eq!(report.skipped, cases.len(), "{kind:?}: {report}");
        for c in &cases {
            assert!(report.count(c.reason) >= 1, "{kind:?} {}", c.name);
        }
        assert_eq!(
            report.lines,
            report.records + report.skipped + report.blank_lines
        );
    }
}

fn check_no_panic(data: &[u8]) {
    for kind in [Kind::Prompt, Kind::Demo, Kind::Ranking, Kind::Text] {
        let opts = ReadOptions::strict().with_max_line_bytes(256);
        let (strict, recs, report) = read_both(kind, data, &opts);
        // Lenient accounts for every line.
        assert_eq!(
            report.lines,
            report.records + report.skipped + report.blank_lines
        );
        assert_eq!(report.records, recs.len());
        // Strict fails iff lenient skipped something.
        assert_eq!(strict.is_some(), report.skipped > 0);
        if let Some(Error::Record(e)) = strict {
            assert!(e.line >= 1 && e.line <= report.lines);
            assert!(e.to_string().starts_with("bad.jsonl:"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_no_panic(&data);
    }

    #[test]
    fn prop_mutated_valid_lines_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut line = [VALID_PROMPT, VALID_DEMO, VALID_RANKING, VALID_TEXT][which].as_bytes().to_vec();
        for (idx, byte) in edits {
            let i = idx.index(line.len());
            line[i] = byte;
        }
        let mut data = line.clone();
        data.push(b'\n');
        data.extend_from_slice(&line);
        check_no_panic(&data);
    }

    #[test]
    fn prop_json_shaped_garbage_never_panics(s in r#"\{("[a-z_]{1,8}":(null|true|-?[0-9]{1,3}(\.[0-9])?|"[a-z ]{0,4}"|\[[0-9,"a ]{0,8}\]),?){0,6}\}"#) {
        check_no_panic(s.as_bytes());
    }
}
