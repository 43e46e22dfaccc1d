//! Reading JSONL: the streaming [`JsonlReader`] with file/line/field errors, strict or lenient.

use super::*;

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
