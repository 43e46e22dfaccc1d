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

mod impls;
mod read;
mod text;
mod write;

pub use read::*;
pub use text::*;
pub use write::*;

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
