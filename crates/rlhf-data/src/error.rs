//! Error types of `rlhf-data`.
//!
//! There are two layers:
//!
//! * [`RecordError`] describes one bad line of a JSONL file: the file, the 1-based line number,
//!   the field (when the problem is about one field) and a [`Problem`] that says what was found
//!   and what was expected. Its `Display` is the message users see, for example
//!
//!   ```text
//!   rankings.jsonl:12: field `ranking`: expected a permutation of 0..4 (best first), found index 1 twice
//!   ```
//!
//! * [`Error`] is the crate-wide error returned by fallible functions (I/O, bad records,
//!   tokenizer failures, invalid options).

use std::fmt;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The crate-wide error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error (in the message already, so not also a `source()`: error
        /// reports would print it twice).
        error: std::io::Error,
    },
    /// A bad record (in strict mode, the first one found).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A record handed to a writer failed validation; `index` is its 0-based position.
    #[error("record {index} (id {id:?}) is invalid and was not written: {problem}")]
    InvalidRecord {
        /// 0-based index of the record in what was passed to the writer.
        index: usize,
        /// The record's id.
        id: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// The HF `tokenizers` library failed (loading, encoding or decoding).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An option or argument is out of range; the message says what to change.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Collation was given an example it cannot turn into a batch.
    #[error("collation: {0}")]
    Collate(String),
    /// A toy-world prompt could not be parsed back into a task.
    #[error("toy task: {0}")]
    Task(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

impl From<rlhf_io::Error> for Error {
    fn from(e: rlhf_io::Error) -> Self {
        Error::io(e.path, e.source)
    }
}

impl Error {
    /// A tokenizer error.
    pub fn tokenizer(e: impl fmt::Display) -> Self {
        Error::Tokenizer(e.to_string())
    }
}

/// Why a line was rejected, without the location (see [`RecordError`] for that).
///
/// Every message says what was found and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The line is not valid UTF-8.
    #[error("invalid UTF-8 at byte {byte} of the line: expected UTF-8 text")]
    InvalidUtf8 {
        /// 0-based byte offset of the first invalid byte within the line.
        byte: usize,
    },
    /// The line is longer than the configured limit.
    #[error(
        "line is longer than the limit of {limit} bytes: expected one JSON object of at most {limit} bytes"
    )]
    LineTooLong {
        /// The limit (`ReadOptions::max_line_bytes`).
        limit: usize,
    },
    /// The line is not valid JSON.
    #[error("malformed JSON at column {column}: {message}; expected one JSON object per line")]
    MalformedJson {
        /// 1-based column reported by the JSON parser.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The line is valid JSON but not an object.
    #[error("expected a JSON object, found {found}")]
    NotAnObject {
        /// Description of the value found.
        found: String,
    },
    /// A required field is absent.
    #[error("missing; expected {expected}")]
    MissingField {
        /// What the field should hold.
        expected: &'static str,
    },
    /// A field has the wrong JSON type (or an invalid value of the right type).
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field should hold.
        expected: &'static str,
        /// Description of the value found.
        found: String,
    },
    /// A string field that must hold text is empty or only whitespace.
    #[error("expected a non-empty string, found an empty or whitespace-only string")]
    EmptyString,
    /// A ranking has fewer than two responses.
    #[error("expected at least 2 responses (K >= 2), found {k}")]
    TooFewResponses {
        /// The number of responses found.
        k: usize,
    },
    /// The ranking does not have one index per response.
    #[error("expected {k} indices (one per response), found {found}")]
    RankingLength {
        /// The number of responses.
        k: usize,
        /// The number of indices found.
        found: usize,
    },
    /// A ranking index is outside `0..K`.
    #[error("expected an index in 0..{k}, found {found}")]
    IndexOutOfRange {
        /// The number of responses.
        k: usize,
        /// The index found (as written).
        found: String,
    },
    /// A ranking index appears twice, so the ranking is not a permutation.
    #[error("expected a permutation of 0..{k} (best first), found index {index} twice")]
    RepeatedIndex {
        /// The number of responses.
        k: usize,
        /// The repeated index.
        index: usize,
    },
    /// Two responses of one ranking are identical.
    #[error("expected {k} distinct responses, found a duplicate of responses[{first}]")]
    DuplicateResponse {
        /// The number of responses.
        k: usize,
        /// Index of the earlier, identical response.
        first: usize,
    },
    /// The pairwise form's `rejected` equals its `chosen`.
    #[error("expected a response different from `chosen`, found the same text")]
    RejectedEqualsChosen,
    /// A ranking line has both the K-wise and the pairwise form.
    #[error(
        "expected either `responses` + `ranking` or the pairwise `chosen` + `rejected`, found both forms"
    )]
    AmbiguousRankingForm,
    /// The same id was seen earlier in the file.
    #[error("expected a unique id, found {id:?} again (first seen on line {first_line})")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// The line where it was first seen.
        first_line: usize,
    },
}

/// Coarse reason a line was rejected, used to count skipped lines in a [`SkipReport`].
///
/// [`SkipReport`]: crate::records::SkipReport
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// [`Problem::InvalidUtf8`].
    InvalidUtf8,
    /// [`Problem::LineTooLong`].
    LineTooLong,
    /// [`Problem::MalformedJson`].
    MalformedJson,
    /// [`Problem::NotAnObject`].
    NotAnObject,
    /// [`Problem::MissingField`].
    MissingField,
    /// [`Problem::WrongType`].
    WrongType,
    /// [`Problem::EmptyString`].
    EmptyString,
    /// [`Problem::TooFewResponses`].
    TooFewResponses,
    /// [`Problem::RankingLength`], [`Problem::IndexOutOfRange`] or [`Problem::RepeatedIndex`].
    InvalidRanking,
    /// [`Problem::DuplicateResponse`] or [`Problem::RejectedEqualsChosen`].
    DuplicateResponse,
    /// [`Problem::AmbiguousRankingForm`].
    AmbiguousForm,
    /// [`Problem::DuplicateId`].
    DuplicateId,
}

impl SkipReason {
    /// A short snake_case name, as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::LineTooLong => "line_too_long",
            SkipReason::MalformedJson => "malformed_json",
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::MissingField => "missing_field",
            SkipReason::WrongType => "wrong_type",
            SkipReason::EmptyString => "empty_string",
            SkipReason::TooFewResponses => "too_few_responses",
            SkipReason::InvalidRanking => "invalid_ranking",
            SkipReason::DuplicateResponse => "duplicate_response",
            SkipReason::AmbiguousForm => "ambiguous_form",
            SkipReason::DuplicateId => "duplicate_id",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Problem {
    /// The coarse reason used for counting.
    pub fn reason(&self) -> SkipReason {
        match self {
            Problem::InvalidUtf8 { .. } => SkipReason::InvalidUtf8,
            Problem::LineTooLong { .. } => SkipReason::LineTooLong,
            Problem::MalformedJson { .. } => SkipReason::MalformedJson,
            Problem::NotAnObject { .. } => SkipReason::NotAnObject,
            Problem::MissingField { .. } => SkipReason::MissingField,
            Problem::WrongType { .. } => SkipReason::WrongType,
            Problem::EmptyString => SkipReason::EmptyString,
            Problem::TooFewResponses { .. } => SkipReason::TooFewResponses,
            Problem::RankingLength { .. }
            | Problem::IndexOutOfRange { .. }
            | Problem::RepeatedIndex { .. } => SkipReason::InvalidRanking,
            Problem::DuplicateResponse { .. } | Problem::RejectedEqualsChosen => {
                SkipReason::DuplicateResponse
            }
            Problem::AmbiguousRankingForm => SkipReason::AmbiguousForm,
            Problem::DuplicateId { .. } => SkipReason::DuplicateId,
        }
    }
}

/// A [`Problem`] together with the field it concerns (if any), without a file location.
///
/// Returned by record validation; the reader adds the file and line to make a [`RecordError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field, e.g. `prompt`, `responses[2]` or `ranking`; `None` for whole-line problems.
    pub field: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl FieldProblem {
    /// A problem with a named field.
    pub fn field(field: impl Into<String>, problem: Problem) -> Self {
        FieldProblem {
            field: Some(field.into()),
            problem,
        }
    }

    /// A problem with the line as a whole.
    pub fn line(problem: Problem) -> Self {
        FieldProblem {
            field: None,
            problem,
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

impl std::error::Error for FieldProblem {}

/// One bad line of a JSONL file: where it is and what is wrong with it.
///
/// `Display` gives `FILE:LINE: field `FIELD`: PROBLEM` (the field part only when the problem
/// concerns one field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The file name as given to the reader (a path, or a name for in-memory input).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The field, e.g. `prompt`, `responses[2]`; `None` for whole-line problems.
    pub field: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl RecordError {
    /// Attaches a location to a [`FieldProblem`].
    pub fn new(file: impl Into<String>, line: usize, fp: FieldProblem) -> Self {
        RecordError {
            file: file.into(),
            line,
            field: fp.field,
            problem: fp.problem,
        }
    }

    /// The coarse reason, for counting.
    pub fn reason(&self) -> SkipReason {
        self.problem.reason()
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for RecordError {}
