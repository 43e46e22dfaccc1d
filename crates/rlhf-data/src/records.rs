//! Record types and their JSONL formats: validation, a streaming reader, an atomic writer,
//! and plain-text pretraining files.
//!
//! One JSON object per line, each with an `id` and a `user_id` (both non-empty strings):
//!
//! | kind | fields |
//! |---|---|
//! | [`PromptRecord`] | `prompt`, optional `task` (string), optional `source` (`"labeler"` or `"customer"`) |
//! | [`Demonstration`] | `prompt`, `response` |
//! | [`Ranking`] | `prompt`, `responses` (K >= 2 distinct strings), `ranking` (a permutation of `0..K`, best first); or the pairwise form `prompt`, `chosen`, `rejected` (read as K = 2) |
//! | [`PretrainText`] | `text` |
//!
//! Unknown fields are ignored. `null` for an optional field means "absent". Strings that
//! carry text (`id`, `user_id`, `prompt`, a demonstration's `response`, `text`, `task`) must
//! not be empty or whitespace-only; a ranked response may be empty (a policy can emit EOS at
//! once), but the K responses of one ranking must be distinct.
//!
//! Reading ([`JsonlReader`], [`read_jsonl`]) streams line by line with a bounded line
//! buffer. Every bad line yields a [`RecordError`] naming the file, the 1-based line, the field
//! and what was expected. In [`Mode::Strict`] the first bad line is returned as an error; in
//! [`Mode::Lenient`] bad lines are skipped and counted in a [`SkipReport`] (by reason, with the
//! first few errors kept as examples). Blank lines are not records; they are counted too.
//!
//! Writing ([`JsonlWriter`], [`write_jsonl`]) validates each record (so what is written can be
//! read back) and is atomic: it writes a temporary file in the target directory and renames it
//! over the target only when everything was written and synced.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::marker::PhantomData;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, FieldProblem, Problem, RecordError, Result, SkipReason};
use crate::hygiene::{HasPrompt, HasUser, TextFields};

// ---------------------------------------------------------------------------------------------
// Record types
// ---------------------------------------------------------------------------------------------

/// Who wrote a prompt: a labeler (the paper's bootstrap prompts) or an API customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Written by a labeler.
    Labeler,
    /// Submitted by a customer.
    Customer,
}

/// A prompt (the PPO and evaluation datasets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PromptRecord {
    /// Unique id of the record.
    pub id: String,
    /// The user who wrote the prompt (splits and caps are per user).
    pub user_id: String,
    /// The prompt text.
    pub prompt: String,
    /// Optional task label (free text; the toy world writes `category/kind`, e.g. `rewrite/reverse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Optional source of the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// A labeler demonstration: the desired response to a prompt (the SFT dataset).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Demonstration {
    /// Unique id of the record.
    pub id: String,
    /// The user who wrote the prompt.
    pub user_id: String,
    /// The prompt text.
    pub prompt: String,
    /// The demonstrated response (without any EOS token).
    pub response: String,
}

/// A labeler's ranking of K >= 2 responses to one prompt (the reward-model dataset).
///
/// `ranking` lists indices into `responses`, best first: `ranking[0]` is the best response.
/// It is written in this K-wise form; the pairwise form `{chosen, rejected}` is accepted when
/// reading and becomes `responses = [chosen, rejected]`, `ranking = [0, 1]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Ranking {
    /// Unique id of the record.
    pub id: String,
    /// The user who wrote the prompt.
    pub user_id: String,
    /// The prompt text.
    pub prompt: String,
    /// The K responses that were ranked (distinct).
    pub responses: Vec<String>,
    /// A permutation of `0..K`, best first.
    pub ranking: Vec<usize>,
}

/// A pretraining document (the ptx dataset and plain LM pretraining).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PretrainText {
    /// Unique id of the record.
    pub id: String,
    /// The user (or source) the text comes from.
    pub user_id: String,
    /// The document text.
    pub text: String,
}

impl Ranking {
    /// Builds a K = 2 ranking from a pairwise comparison.
    pub fn pairwise(
        id: impl Into<String>,
        user_id: impl Into<String>,
        prompt: impl Into<String>,
        chosen: impl Into<String>,
        rejected: impl Into<String>,
    ) -> Self {
        Ranking {
            id: id.into(),
            user_id: user_id.into(),
            prompt: prompt.into(),
            responses: vec![chosen.into(), rejected.into()],
            ranking: vec![0, 1],
        }
    }

    /// The number of ranked responses, K.
    pub fn k(&self) -> usize {
        self.responses.len()
    }

    /// All C(K, 2) ordered comparisons `(winner, loser)` as indices into `responses`,
    /// in ranking order (best-vs-second first).
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let r = &self.ranking;
        let mut out = Vec::with_capacity(r.len() * r.len().saturating_sub(1) / 2);
        for i in 0..r.len() {
            for j in i + 1..r.len() {
                out.push((r[i], r[j]));
            }
        }
        out
    }

    /// The responses in ranked order, best first.
    pub fn ranked_responses(&self) -> impl Iterator<Item = &str> + '_ {
        self.ranking
            .iter()
            .map(move |&i| self.responses[i].as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The Record trait and field helpers
// ---------------------------------------------------------------------------------------------

/// A record kind that can be read from and written to JSONL.
///
/// Implemented by [`PromptRecord`], [`Demonstration`], [`Ranking`] and [`PretrainText`].
pub trait Record: Sized + Serialize + HasUser {
    /// A short name of the kind, e.g. `"ranking"`.
    const KIND: &'static str;

    /// The record's id.
    fn id(&self) -> &str;

    /// Builds a record from a parsed JSON object, checking field presence, types and values.
    fn from_json_object(obj: Map<String, Value>) -> Result<Self, FieldProblem>;

    /// Checks the invariants of a record (non-empty text fields, K >= 2, a permutation, ...).
    ///
    /// Gives the same message as reading the record from JSON would.
    fn validate(&self) -> Result<(), FieldProblem>;

    /// Builds a record from any JSON value (an object is expected).
    fn from_json_value(value: Value) -> Result<Self, FieldProblem> {
        match value {
            Value::Object(obj) => Self::from_json_object(obj),
            other => Err(FieldProblem::line(Problem::NotAnObject {
                found: describe_value(&other),
            })),
        }
    }
}

/// Describes a JSON value for error messages (`null`, `number 5`, `string "ab"`, ...).
pub fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            const MAX: usize = 32;
            if s.chars().count() > MAX {
                let cut: String = s.chars().take(MAX).collect();
                format!("string {:?}...", cut)
            } else {
                format!("string {s:?}")
            }
        }
        Value::Array(a) => match a.len() {
            1 => "an array of 1 element".to_string(),
            n => format!("an array of {n} elements"),
        },
        Value::Object(_) => "an object".to_string(),
    }
}

const NON_EMPTY: &str = "a non-empty string";

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Takes a required non-empty string field.
fn take_text(obj: &mut Map<String, Value>, key: &str) -> Result<String, FieldProblem> {
    match obj.remove(key) {
        None => Err(FieldProblem::field(
            key,
            Problem::MissingField {
                expected: NON_EMPTY,
            },
        )),
        Some(Value::String(s)) => {
            if is_blank(&s) {
                Err(FieldProblem::field(key, Problem::EmptyString))
            } else {
                Ok(s)
            }
        }
        Some(other) => Err(FieldProblem::field(
            key,
            Problem::WrongType {
                expected: NON_EMPTY,
                found: describe_value(&other),
            },
        )),
    }
}

/// Takes an optional non-empty string field (`null` counts as absent).
fn take_opt_text(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, FieldProblem> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if is_blank(&s) {
                Err(FieldProblem::field(key, Problem::EmptyString))
            } else {
                Ok(Some(s))
            }
        }
        Some(other) => Err(FieldProblem::field(
            key,
            Problem::WrongType {
                expected: "a non-empty string or null",
                found: describe_value(&other),
            },
        )),
    }
}

/// Takes a required string that may be empty (a ranked response).
fn take_any_string(
    obj: &mut Map<String, Value>,
    key: &str,
    expected: &'static str,
) -> Result<String, FieldProblem> {
    match obj.remove(key) {
        None => Err(FieldProblem::field(key, Problem::MissingField { expected })),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(FieldProblem::field(
            key,
            Problem::WrongType {
                expected,
                found: describe_value(&other),
            },
        )),
    }
}

fn check_text(field: &str, s: &str) -> Result<(), FieldProblem> {
    if is_blank(s) {
        Err(FieldProblem::field(field, Problem::EmptyString))
    } else {
        Ok(())
    }
}

const SOURCE_EXPECTED: &str = "\"labeler\" or \"customer\" (or null)";

fn take_source(obj: &mut Map<String, Value>) -> Result<Option<Source>, FieldProblem> {
    match obj.remove("source") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "labeler" => Ok(Some(Source::Labeler)),
            "customer" => Ok(Some(Source::Customer)),
            _ => Err(FieldProblem::field(
                "source",
                Problem::WrongType {
                    expected: SOURCE_EXPECTED,
                    found: describe_value(&Value::String(s)),
                },
            )),
        },
        Some(other) => Err(FieldProblem::field(
            "source",
            Problem::WrongType {
                expected: SOURCE_EXPECTED,
                found: describe_value(&other),
            },
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Record impls
// ---------------------------------------------------------------------------------------------

impl Record for PromptRecord {
    const KIND: &'static str = "prompt";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let prompt = take_text(&mut obj, "prompt")?;
        let task = take_opt_text(&mut obj, "task")?;
        let source = take_source(&mut obj)?;
        Ok(PromptRecord {
            id,
            user_id,
            prompt,
            task,
            source,
        })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("prompt", &self.prompt)?;
        if let Some(task) = &self.task {
            check_text("task", task)?;
        }
        Ok(())
    }
}

impl Record for Demonstration {
    const KIND: &'static str = "demonstration";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let prompt = take_text(&mut obj, "prompt")?;
        let response = take_text(&mut obj, "response")?;
        Ok(Demonstration {
            id,
            user_id,
            prompt,
            response,
        })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("prompt", &self.prompt)?;
        check_text("response", &self.response)
    }
}

impl Record for PretrainText {
    const KIND: &'static str = "pretrain";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let text = take_text(&mut obj, "text")?;
        Ok(PretrainText { id, user_id, text })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("text", &self.text)
    }
}

const RESPONSES_EXPECTED: &str =
    "an array of K >= 2 strings (or the pairwise form `chosen` + `rejected`)";
const RANKING_EXPECTED: &str = "an array of K indices into `responses`, best first";
const RESPONSE_EXPECTED: &str = "a string";

fn ranking_semantics(responses: &[String], ranking: &[usize]) -> Result<(), FieldProblem> {
    let k = responses.len();
    if k < 2 {
        return Err(FieldProblem::field(
            "responses",
            Problem::TooFewResponses { k },
        ));
    }
    if ranking.len() != k {
        return Err(FieldProblem::field(
            "ranking",
            Problem::RankingLength {
                k,
                found: ranking.len(),
            },
        ));
    }
    let mut seen = vec![false; k];
    for (pos, &idx) in ranking.iter().enumerate() {
        if idx >= k {
            return Err(FieldProblem::field(
                format!("ranking[{pos}]"),
                Problem::IndexOutOfRange {
                    k,
                    found: idx.to_string(),
                },
            ));
        }
        if seen[idx] {
            return Err(FieldProblem::field(
                "ranking",
                Problem::RepeatedIndex { k, index: idx },
            ));
        }
        seen[idx] = true;
    }
    let mut first_seen: HashMap<&str, usize> = HashMap::with_capacity(k);
    for (i, r) in responses.iter().enumerate() {
        if let Some(&first) = first_seen.get(r.as_str()) {
            return Err(FieldProblem::field(
                format!("responses[{i}]"),
                Problem::DuplicateResponse { k, first },
            ));
        }
        first_seen.insert(r.as_str(), i);
    }
    Ok(())
}

impl Record for Ranking {
    const KIND: &'static str = "ranking";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let prompt = take_text(&mut obj, "prompt")?;
        let kwise = obj.contains_key("responses") || obj.contains_key("ranking");
        let pairwise = obj.contains_key("chosen") || obj.contains_key("rejected");
        if kwise && pairwise {
            return Err(FieldProblem::line(Problem::AmbiguousRankingForm));
        }
        let (responses, ranking) = if pairwise {
            let chosen = take_any_string(&mut obj, "chosen", RESPONSE_EXPECTED)?;
            let rejected = take_any_string(&mut obj, "rejected", RESPONSE_EXPECTED)?;
            if rejected == chosen {
                return Err(FieldProblem::field(
                    "rejected",
                    Problem::RejectedEqualsChosen,
                ));
            }
            (vec![chosen, rejected], vec![0, 1])
        } else {
            let responses = match obj.remove("responses") {
                None => {
                    return Err(FieldProblem::field(
                        "responses",
                        Problem::MissingField {
                            expected: RESPONSES_EXPECTED,
                        },
                    ))
                }
                Some(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Value::String(s) => out.push(s),
                            other => {
                                return Err(FieldProblem::field(
                                    format!("responses[{i}]"),
                                    Problem::WrongType {
                                        expected: RESPONSE_EXPECTED,
                                        found: describe_value(&other),
                                    },
                                ))
                            }
                        }
                    }
                    out
                }
                Some(other) => {
                    return Err(FieldProblem::field(
                        "responses",
                        Problem::WrongType {
                            expected: RESPONSES_EXPECTED,
                            found: describe_value(&other),
                        },
                    ))
                }
            };
            let k = responses.len();
            if k < 2 {
                return Err(FieldProblem::field(
                    "responses",
                    Problem::TooFewResponses { k },
                ));
            }
            let ranking = match obj.remove("ranking") {
                None => {
                    return Err(FieldProblem::field(
                        "ranking",
                        Problem::MissingField {
                            expected: RANKING_EXPECTED,
                        },
                    ))
                }
                Some(Value::Array(items)) => {
                    if items.len() != k {
                        return Err(FieldProblem::field(
                            "ranking",
                            Problem::RankingLength {
                                k,
                                found: items.len(),
                            },
                        ));
                    }
                    let mut out = Vec::with_capacity(k);
                    for (pos, item) in items.iter().enumerate() {
                        let field = || format!("ranking[{pos}]");
                        match item {
                            Value::Number(n) => match n.as_u64() {
                                Some(v) if (v as u128) < k as u128 => out.push(v as usize),
                                _ => {
                                    return Err(FieldProblem::field(
                                        field(),
                                        Problem::IndexOutOfRange {
                                            k,
                                            found: n.to_string(),
                                        },
                                    ))
                                }
                            },
                            other => {
                                return Err(FieldProblem::field(
                                    field(),
                                    Problem::WrongType {
                                        expected: "an integer index",
                                        found: describe_value(other),
                                    },
                                ))
                            }
                        }
                    }
                    out
                }
                Some(other) => {
                    return Err(FieldProblem::field(
                        "ranking",
                        Problem::WrongType {
                            expected: RANKING_EXPECTED,
                            found: describe_value(&other),
                        },
                    ))
                }
            };
            (responses, ranking)
        };
        ranking_semantics(&responses, &ranking)?;
        Ok(Ranking {
            id,
            user_id,
            prompt,
            responses,
            ranking,
        })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("prompt", &self.prompt)?;
        ranking_semantics(&self.responses, &self.ranking)
    }
}

macro_rules! deserialize_via_record {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            /// Deserializes through [`Record::from_json_value`], so serde users get the same
            /// validation (and messages) as the JSONL reader.
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let value = Value::deserialize(d)?;
                <$t as Record>::from_json_value(value).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_record!(PromptRecord, Demonstration, Ranking, PretrainText);

macro_rules! impl_has_user {
    ($($t:ty),*) => {$(
        impl HasUser for $t {
            fn user_id(&self) -> &str {
                &self.user_id
            }
        }
    )*};
}
impl_has_user!(PromptRecord, Demonstration, Ranking, PretrainText);

macro_rules! impl_has_prompt {
    ($($t:ty),*) => {$(
        impl HasPrompt for $t {
            fn prompt(&self) -> &str {
                &self.prompt
            }
        }
    )*};
}
impl_has_prompt!(PromptRecord, Demonstration, Ranking);

impl TextFields for PromptRecord {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        vec![("prompt", &mut self.prompt)]
    }
}

impl TextFields for Demonstration {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        vec![
            ("prompt", &mut self.prompt),
            ("response", &mut self.response),
        ]
    }
}

impl TextFields for Ranking {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        let mut out: Vec<(&'static str, &mut String)> = vec![("prompt", &mut self.prompt)];
        out.extend(self.responses.iter_mut().map(|r| ("responses", r)));
        out
    }
}

impl TextFields for PretrainText {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        vec![("text", &mut self.text)]
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// What to do with a bad line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Stop at the first bad line and return its error.
    #[default]
    Strict,
    /// Skip bad lines, counting them in a [`SkipReport`].
    Lenient,
}

/// Options of the JSONL reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Strict or lenient. Default: strict.
    pub mode: Mode,
    /// Longest accepted line in bytes, excluding the newline. Default: 1 MiB. Longer lines are
    /// rejected without being buffered.
    pub max_line_bytes: usize,
    /// Reject a record whose `id` was already seen in the same file. Default: true.
    pub check_duplicate_ids: bool,
    /// How many skipped-line errors a [`SkipReport`] keeps as examples. Default: 5.
    pub max_examples: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            mode: Mode::Strict,
            max_line_bytes: 1 << 20,
            check_duplicate_ids: true,
            max_examples: 5,
        }
    }
}

impl ReadOptions {
    /// Default options in strict mode.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Default options in lenient mode.
    pub fn lenient() -> Self {
        ReadOptions {
            mode: Mode::Lenient,
            ..Self::default()
        }
    }

    /// Sets the line length limit.
    pub fn with_max_line_bytes(mut self, max_line_bytes: usize) -> Self {
        self.max_line_bytes = max_line_bytes;
        self
    }

    /// Enables or disables the duplicate-id check.
    pub fn with_duplicate_id_check(mut self, check: bool) -> Self {
        self.check_duplicate_ids = check;
        self
    }
}

/// What a read did: how many lines, records and blank lines it saw, and which lines it
/// skipped (counted by reason, with the first few errors kept as examples).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipReport {
    /// The file name.
    pub file: String,
    /// Lines read (including blank and skipped ones).
    pub lines: usize,
    /// Records returned.
    pub records: usize,
    /// Blank (whitespace-only) lines, which are not records.
    pub blank_lines: usize,
    /// Lines skipped because they were bad (lenient mode only).
    pub skipped: usize,
    /// Skipped lines by reason.
    pub by_reason: BTreeMap<SkipReason, usize>,
    /// The first skipped lines' errors (at most `ReadOptions::max_examples`).
    pub examples: Vec<RecordError>,
}

impl SkipReport {
    /// True when no line was skipped.
    pub fn is_clean(&self) -> bool {
        self.skipped == 0
    }

    /// The number of skipped lines with the given reason.
    pub fn count(&self, reason: SkipReason) -> usize {
        self.by_reason.get(&reason).copied().unwrap_or(0)
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} lines, {} records, {} skipped, {} blank",
            self.file, self.lines, self.records, self.skipped, self.blank_lines
        )?;
        if !self.by_reason.is_empty() {
            let parts: Vec<String> = self
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        for e in &self.examples {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

enum LineStatus {
    Eof,
    Line,
    TooLong,
}

/// Reads one line (without its `\n`) into `buf`, storing at most `limit` bytes; the rest of an
/// over-long line is consumed and dropped.
fn read_limited_line<B: BufRead>(
    r: &mut B,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<LineStatus> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineStatus::Eof,
                (true, true) => LineStatus::TooLong,
                (true, false) => LineStatus::Line,
            });
        }
        any = true;
        let (chunk_len, consumed, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i + 1, true),
            None => (available.len(), available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk_len > limit {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..chunk_len]);
            }
        }
        r.consume(consumed);
        if done {
            return Ok(if too_long {
                LineStatus::TooLong
            } else {
                LineStatus::Line
            });
        }
    }
}

/// Parses one line's bytes (no newline) into a record.
fn parse_line<R: Record>(bytes: &[u8]) -> Result<R, FieldProblem> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        FieldProblem::line(Problem::InvalidUtf8 {
            byte: e.valid_up_to(),
        })
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        FieldProblem::line(Problem::MalformedJson {
            column: e.column(),
            message,
        })
    })?;
    R::from_json_value(value)
}

/// A streaming JSONL reader for one record kind.
///
/// It is an iterator over `Result<R, Error>`:
/// * in [`Mode::Strict`] the first bad line yields `Err(Error::Record(..))` and iteration ends;
/// * in [`Mode::Lenient`] bad lines are skipped and counted in [`JsonlReader::report`];
/// * an I/O error yields `Err(Error::Io(..))` and iteration ends, in both modes.
///
/// ```
/// use rlhf_data::records::{Demonstration, JsonlReader, ReadOptions};
/// let data = "{\"id\":\"d1\",\"user_id\":\"u1\",\"prompt\":\"hi\",\"response\":\"hello\"}\n";
/// let mut reader = JsonlReader::<Demonstration, _>::from_reader(data.as_bytes(), "mem.jsonl", ReadOptions::strict());
/// let demo = reader.next().unwrap().unwrap();
/// assert_eq!(demo.response, "hello");
/// assert!(reader.next().is_none());
/// ```
pub struct JsonlReader<R, B = BufReader<File>> {
    inner: B,
    opts: ReadOptions,
    line_no: usize,
    buf: Vec<u8>,
    seen_ids: HashMap<String, usize>,
    report: SkipReport,
    done: bool,
    _kind: PhantomData<fn() -> R>,
}

impl<R: Record> JsonlReader<R, BufReader<File>> {
    /// Opens a file for streaming.
    pub fn open(path: impl AsRef<Path>, opts: ReadOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::from_reader(
            BufReader::with_capacity(1 << 16, file),
            path.display().to_string(),
            opts,
        ))
    }
}

impl<R: Record, B: BufRead> JsonlReader<R, B> {
    /// Reads from any buffered reader; `name` is used as the file name in errors.
    pub fn from_reader(reader: B, name: impl Into<String>, opts: ReadOptions) -> Self {
        JsonlReader {
            inner: reader,
            opts,
            line_no: 0,
            buf: Vec::new(),
            seen_ids: HashMap::new(),
            report: SkipReport {
                file: name.into(),
                ..SkipReport::default()
            },
            done: false,
            _kind: PhantomData,
        }
    }

    /// What was read so far.
    pub fn report(&self) -> &SkipReport {
        &self.report
    }

    /// Consumes the reader, returning its report.
    pub fn into_report(self) -> SkipReport {
        self.report
    }

    fn handle_bad_line(&mut self, fp: FieldProblem) -> Option<Result<R>> {
        let err = RecordError::new(self.report.file.clone(), self.line_no, fp);
        match self.opts.mode {
            Mode::Strict => {
                self.done = true;
                Some(Err(Error::Record(err)))
            }
            Mode::Lenient => {
                self.report.skipped += 1;
                *self.report.by_reason.entry(err.reason()).or_insert(0) += 1;
                if self.report.examples.len() < self.opts.max_examples {
                    self.report.examples.push(err);
                }
                None
            }
        }
    }
}

impl<R: Record, B: BufRead> Iterator for JsonlReader<R, B> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let status =
                match read_limited_line(&mut self.inner, &mut self.buf, self.opts.max_line_bytes) {
                    Ok(s) => s,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(Error::io(self.report.file.clone(), e)));
                    }
                };
            let outcome = match status {
                LineStatus::Eof => {
                    self.done = true;
                    return None;
                }
                LineStatus::TooLong => {
                    self.line_no += 1;
                    self.report.lines += 1;
                    Err(FieldProblem::line(Problem::LineTooLong {
                        limit: self.opts.max_line_bytes,
                    }))
                }
                LineStatus::Line => {
                    self.line_no += 1;
                    self.report.lines += 1;
                    let mut bytes: &[u8] = &self.buf;
                    if self.line_no == 1 {
                        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                    }
                    bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        self.report.blank_lines += 1;
                        continue;
                    }
                    parse_line::<R>(bytes)
                }
            };
            let outcome = outcome.and_then(|rec| {
                if self.opts.check_duplicate_ids {
                    if let Some(&first_line) = self.seen_ids.get(rec.id()) {
                        return Err(FieldProblem::field(
                            "id",
                            Problem::DuplicateId {
                                id: rec.id().to_string(),
                                first_line,
                            },
                        ));
                    }
                    self.seen_ids.insert(rec.id().to_string(), self.line_no);
                }
                Ok(rec)
            });
            match outcome {
                Ok(rec) => {
                    self.report.records += 1;
                    return Some(Ok(rec));
                }
                Err(fp) => {
                    if let Some(item) = self.handle_bad_line(fp) {
                        return Some(item);
                    }
                }
            }
        }
        None
    }
}

/// Reads a whole JSONL file into memory; returns the records and the report.
///
/// In strict mode the report is always clean (the first bad line is an error).
pub fn read_jsonl<R: Record>(
    path: impl AsRef<Path>,
    opts: &ReadOptions,
) -> Result<(Vec<R>, SkipReport)> {
    let reader = JsonlReader::<R, _>::open(path, opts.clone())?;
    collect_reader(reader)
}

/// Like [`read_jsonl`] for any buffered reader; `name` is used as the file name in errors.
pub fn read_jsonl_from<R: Record, B: BufRead>(
    reader: B,
    name: &str,
    opts: &ReadOptions,
) -> Result<(Vec<R>, SkipReport)> {
    collect_reader(JsonlReader::<R, B>::from_reader(reader, name, opts.clone()))
}

fn collect_reader<R: Record, B: BufRead>(
    mut reader: JsonlReader<R, B>,
) -> Result<(Vec<R>, SkipReport)> {
    let mut out = Vec::new();
    for item in reader.by_ref() {
        out.push(item?);
    }
    Ok((out, reader.into_report()))
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

use rlhf_io::AtomicFile;

/// Writes `bytes` to `path` atomically (temp file in the same directory + rename; see
/// `rlhf_io`).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    Ok(rlhf_io::write_atomic(path.as_ref(), bytes)?)
}

/// A streaming, atomic JSONL writer: records go to a temporary file that replaces the target
/// only on [`JsonlWriter::finish`]. Dropping the writer without finishing leaves the target
/// untouched and removes the temporary file.
pub struct JsonlWriter<R> {
    file: AtomicFile,
    count: usize,
    _kind: PhantomData<fn(&R)>,
}

impl<R: Record> JsonlWriter<R> {
    /// Starts writing to `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonlWriter {
            file: AtomicFile::create(path.as_ref())?,
            count: 0,
            _kind: PhantomData,
        })
    }

    /// Validates and writes one record.
    pub fn write(&mut self, record: &R) -> Result<()> {
        record.validate().map_err(|problem| Error::InvalidRecord {
            index: self.count,
            id: record.id().to_string(),
            problem,
        })?;
        let tmp = self.file.tmp_path().to_path_buf();
        let w = self.file.writer();
        serde_json::to_writer(&mut *w, record)
            .map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
        w.write_all(b"\n").map_err(|e| Error::io(&tmp, e))?;
        self.count += 1;
        Ok(())
    }

    /// The number of records written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Flushes, syncs and renames the file into place; returns the number of records.
    pub fn finish(self) -> Result<usize> {
        let count = self.count;
        self.file.commit()?;
        Ok(count)
    }
}

/// Writes records to `path` as JSONL, atomically; returns how many were written.
///
/// Each record is validated first; an invalid one aborts the write (the target is unchanged)
/// with [`Error::InvalidRecord`].
pub fn write_jsonl<'a, R: Record + 'a>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a R>,
) -> Result<usize> {
    let mut w = JsonlWriter::create(path)?;
    for r in records {
        w.write(r)?;
    }
    w.finish()
}

// ---------------------------------------------------------------------------------------------
// Plain text
// ---------------------------------------------------------------------------------------------

/// How a plain-text file is cut into pretraining documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextSplit {
    /// The whole file is one document.
    WholeFile,
    /// Each non-blank line is a document.
    Lines,
    /// Blocks separated by blank lines are documents (their lines joined with `\n`).
    #[default]
    Paragraphs,
}

/// Reads a UTF-8 plain-text file as pretraining documents.
///
/// Documents get ids `FILE_NAME#N` (N from 0) and `user_id` = the file name, so splitting by
/// user keeps a file's documents together. Blank lines only separate documents; no
/// non-whitespace text is dropped. Invalid UTF-8 is an error naming the line.
pub fn read_text_documents(path: impl AsRef<Path>, split: TextSplit) -> Result<Vec<PretrainText>> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    read_text_documents_from(
        BufReader::new(file),
        &path.display().to_string(),
        &name,
        split,
    )
}

/// Like [`read_text_documents`] for any reader: `file` is used in errors, `user_id` for the
/// documents' `user_id` and id prefix.
pub fn read_text_documents_from<Rd: Read>(
    reader: Rd,
    file: &str,
    user_id: &str,
    split: TextSplit,
) -> Result<Vec<PretrainText>> {
    let mut reader = BufReader::new(reader);
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut line_bytes = Vec::new();
    let mut line_no = 0usize;
    let push = |docs: &mut Vec<PretrainText>, text: &mut String| {
        let trimmed = text.trim_end_matches(['\n', '\r']);
        if !is_blank(trimmed) {
            docs.push(PretrainText {
                id: format!("{user_id}#{}", docs.len()),
                user_id: user_id.to_string(),
                text: trimmed.to_string(),
            });
        }
        text.clear();
    };
    loop {
        line_bytes.clear();
        let n = reader
            .read_until(b'\n', &mut line_bytes)
            .map_err(|e| Error::io(file, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = std::str::from_utf8(&line_bytes).map_err(|e| {
            Error::Record(RecordError::new(
                file,
                line_no,
                FieldProblem::line(Problem::InvalidUtf8 {
                    byte: e.valid_up_to(),
                }),
            ))
        })?;
        let line = if line_no == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        match split {
            TextSplit::WholeFile => current.push_str(line),
            TextSplit::Lines => {
                current.push_str(line);
                push(&mut docs, &mut current);
            }
            TextSplit::Paragraphs => {
                if is_blank(line) {
                    push(&mut docs, &mut current);
                } else {
                    current.push_str(line.trim_end_matches(['\n', '\r']));
                    current.push('\n');
                }
            }
        }
    }
    push(&mut docs, &mut current);
    Ok(docs)
}
