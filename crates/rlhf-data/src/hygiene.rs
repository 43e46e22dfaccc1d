//! Dataset hygiene as in the InstructGPT paper: deduplicate prompts, scrub personally
//! identifiable information, cap prompts per user, and split train/valid/test **by user**.
//!
//! All functions are generic over small traits ([`HasUser`], [`HasPrompt`], [`TextFields`]),
//! implemented by the record types of [`crate::records`], so the same code applies to the SFT,
//! reward-model and PPO datasets (and to your own types).
//!
//! Everything here is deterministic: the same input (and seed) gives the same output on every
//! platform (hashing uses a fixed FNV-1a/SplitMix64 construction, not `std`'s random hasher).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Anything that belongs to a user (splits and caps are per user).
pub trait HasUser {
    /// The user's id.
    fn user_id(&self) -> &str;
}

/// Anything that has a prompt (dedup works on prompts).
pub trait HasPrompt {
    /// The prompt text.
    fn prompt(&self) -> &str;
}

/// Records whose free-text fields can be scrubbed of PII.
pub trait TextFields {
    /// An id used in reports.
    fn record_id(&self) -> &str;
    /// The record's free-text fields with their names (a field may appear more than once,
    /// e.g. `responses`).
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)>;
}

impl<T: HasUser + ?Sized> HasUser for &T {
    fn user_id(&self) -> &str {
        (**self).user_id()
    }
}

impl<T: HasPrompt + ?Sized> HasPrompt for &T {
    fn prompt(&self) -> &str {
        (**self).prompt()
    }
}

impl<U: AsRef<str>, V> HasUser for (U, V) {
    fn user_id(&self) -> &str {
        self.0.as_ref()
    }
}

// ---------------------------------------------------------------------------------------------
// Stable hashing
// ---------------------------------------------------------------------------------------------

/// A hash of `(seed, s)` that is stable across platforms, Rust versions and runs.
pub fn stable_hash(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ crate::seed::splitmix64(seed);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    crate::seed::splitmix64(h)
}

/// Maps a hash to a uniform number in `[0, 1)`.
fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

// ---------------------------------------------------------------------------------------------
// Dedup
// ---------------------------------------------------------------------------------------------

/// Normalizes text for duplicate detection: Unicode NFKC, lower case, runs of whitespace
/// collapsed to one space, leading and trailing whitespace removed.
pub fn normalize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfkc().flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Default length of the shared prefix (in characters of normalized text) that makes two
/// prompts duplicates.
pub const DEFAULT_DEDUP_PREFIX_CHARS: usize = 64;

/// How prompts are deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupConfig {
    /// Drop prompts whose normalized text equals an earlier prompt's. Default: true.
    pub exact: bool,
    /// Drop prompts whose normalized text shares its first `n` characters with an earlier
    /// prompt's (both must be at least `n` characters long). `None` disables the rule.
    /// Default: `Some(64)`.
    pub prefix_chars: Option<usize>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            prefix_chars: Some(DEFAULT_DEDUP_PREFIX_CHARS),
        }
    }
}

/// Why a record was dropped by [`dedup_prompts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKind {
    /// Same normalized text.
    Exact,
    /// Long shared prefix.
    Prefix,
}

/// One dropped duplicate: its input index and the input index of the kept record it duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    /// Index (in the input) of the dropped record.
    pub removed: usize,
    /// Index (in the input) of the earlier, kept record.
    pub kept: usize,
    /// Which rule matched.
    pub kind: DuplicateKind,
}

/// What [`dedup_prompts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupReport {
    /// Records in.
    pub input: usize,
    /// Records kept.
    pub kept: usize,
    /// Records dropped as exact duplicates (after normalization).
    pub exact_duplicates: usize,
    /// Records dropped for sharing a long prefix with a kept record.
    pub prefix_duplicates: usize,
    /// Every dropped record, in input order.
    pub duplicates: Vec<Duplicate>,
}

impl fmt::Display for DedupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dedup: {} in, {} kept, {} exact duplicates, {} shared-prefix duplicates",
            self.input, self.kept, self.exact_duplicates, self.prefix_duplicates
        )
    }
}

/// How many of `valid`'s records have a prompt that also appears in `train` (compared in
/// their [`normalize_text`] forms). Validation prompts seen in training make validation numbers
/// optimistic, and a model chosen by them over-fitted; the paper split by user ID to avoid it.
///
/// ```
/// use rlhf_data::hygiene::prompts_seen_in;
/// use rlhf_data::records::Demonstration;
/// let p = |s: &str| Demonstration {
///     id: s.into(),
///     user_id: "u".into(),
///     prompt: s.into(),
///     response: "r".into(),
/// };
/// let train = [p("Sort: b a"), p("Reverse: x y")];
/// let valid = [p("sort:  B A"), p("Count: a a")];
/// assert_eq!(prompts_seen_in(&valid, &train), 1);
/// ```
pub fn prompts_seen_in<V: HasPrompt, T: HasPrompt>(valid: &[V], train: &[T]) -> usize {
    let seen: HashSet<String> = train.iter().map(|r| normalize_text(r.prompt())).collect();
    valid
        .iter()
        .filter(|r| seen.contains(&normalize_text(r.prompt())))
        .count()
}

/// Removes duplicate prompts, keeping the first occurrence (input order is preserved).
///
/// Two prompts are duplicates if their [`normalize_text`] forms are equal (`exact`) or share
/// their first `prefix_chars` characters (`prefix_chars`). The result has no two prompts that
/// are duplicates of each other, so dedup is idempotent.
pub fn dedup_prompts<T: HasPrompt>(records: Vec<T>, cfg: &DedupConfig) -> (Vec<T>, DedupReport) {
    let mut report = DedupReport {
        input: records.len(),
        ..DedupReport::default()
    };
    let mut exact_seen: HashMap<String, usize> = HashMap::new();
    let mut prefix_seen: HashMap<String, usize> = HashMap::new();
    let mut kept = Vec::with_capacity(records.len());
    for (i, rec) in records.into_iter().enumerate() {
        let norm = normalize_text(rec.prompt());
        let prefix_key = cfg.prefix_chars.and_then(|n| {
            // Byte offset of the n-th char; None when the text is shorter than n chars.
            if n == 0 {
                return Some(String::new());
            }
            norm.char_indices()
                .nth(n - 1)
                .map(|(off, c)| norm[..off + c.len_utf8()].to_string())
        });
        if cfg.exact {
            if let Some(&k) = exact_seen.get(&norm) {
                report.exact_duplicates += 1;
                report.duplicates.push(Duplicate {
                    removed: i,
                    kept: k,
                    kind: DuplicateKind::Exact,
                });
                continue;
            }
        }
        if let Some(key) = &prefix_key {
            if let Some(&k) = prefix_seen.get(key) {
                report.prefix_duplicates += 1;
                report.duplicates.push(Duplicate {
                    removed: i,
                    kept: k,
                    kind: DuplicateKind::Prefix,
                });
                continue;
            }
        }
        if cfg.exact {
            exact_seen.insert(norm, i);
        }
        if let Some(key) = prefix_key {
            prefix_seen.insert(key, i);
        }
        kept.push(rec);
    }
    report.kept = kept.len();
    (kept, report)
}

// ---------------------------------------------------------------------------------------------
// PII scrub
// ---------------------------------------------------------------------------------------------

/// A kind of personally identifiable information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    /// An e-mail address, replaced by `<EMAIL>`.
    Email,
    /// A payment card number (13-19 digits, together or in the printed groups of four, passing
    /// the Luhn check), replaced by `<CARD_NUMBER>`.
    CardNumber,
    /// A US social security number (`123-45-6789`), replaced by `<SSN>`.
    Ssn,
    /// A phone number, replaced by `<PHONE>`: three groups of digits ending in a group of four
    /// (`555-123-4567`, `(555) 123-4567`, `020 7946 0958`), with an optional `+` country
    /// code, or `+` and 8-15 digits. Groups of three at the end (`100 200 300`) are a list of
    /// numbers, not a phone number.
    Phone,
    /// An IPv4 address, replaced by `<IP_ADDRESS>`.
    IpAddress,
}

impl PiiKind {
    /// All kinds, in the order they are scrubbed.
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Email,
        PiiKind::CardNumber,
        PiiKind::Ssn,
        PiiKind::Phone,
        PiiKind::IpAddress,
    ];

    /// The placeholder that replaces a match.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::CardNumber => "<CARD_NUMBER>",
            PiiKind::Ssn => "<SSN>",
            PiiKind::Phone => "<PHONE>",
            PiiKind::IpAddress => "<IP_ADDRESS>",
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            PiiKind::Email => "email",
            PiiKind::CardNumber => "card_number",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
            PiiKind::IpAddress => "ip_address",
        };
        f.write_str(s)
    }
}

/// Counts of scrubbed items by kind.
pub type PiiCounts = BTreeMap<PiiKind, usize>;

/// What [`PiiScrubber::scrub_records`] did. It never contains the scrubbed text itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PiiReport {
    /// Records scanned.
    pub records_scanned: usize,
    /// Records with at least one replacement.
    pub records_changed: usize,
    /// Replacements by kind.
    pub by_kind: PiiCounts,
    /// `(record id, field)` of every changed field.
    pub changed_fields: Vec<(String, &'static str)>,
}

impl PiiReport {
    /// Total replacements.
    pub fn total(&self) -> usize {
        self.by_kind.values().sum()
    }
}

impl fmt::Display for PiiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pii: {} records scanned, {} changed, {} replacements",
            self.records_scanned,
            self.records_changed,
            self.total()
        )?;
        if !self.by_kind.is_empty() {
            let parts: Vec<String> = self
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Replaces e-mail addresses, card numbers, SSNs, phone numbers and IPv4 addresses with
/// placeholders (see [`PiiKind::placeholder`]).
///
/// Heuristic, like the paper's filter: it favours recall on common formats and does not
/// touch short digit groups, dates like `2023-01-15` or plain numbers without separators.
#[derive(Debug, Clone)]
pub struct PiiScrubber {
    patterns: Vec<(PiiKind, Regex)>,
}

impl Default for PiiScrubber {
    fn default() -> Self {
        Self::new()
    }
}

fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Extra checks a regex match must pass: card numbers pass the Luhn check; phone numbers are
/// not part of a longer run of digit groups (such as a card number that failed the Luhn check).
fn accept(kind: PiiKind, text: &str, start: usize, end: usize) -> bool {
    let m = &text[start..end];
    match kind {
        PiiKind::CardNumber => {
            let digits: Vec<u8> = m
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(|b| b - b'0')
                .collect();
            luhn_valid(&digits)
        }
        PiiKind::Phone => {
            let is_sep = |c: char| c == ' ' || c == '.' || c == '-';
            let mut after = text[end..].chars();
            let digit_after = match after.next() {
                Some(c) if c.is_ascii_digit() => true,
                Some(c) if is_sep(c) => after.next().is_some_and(|d| d.is_ascii_digit()),
                _ => false,
            };
            let mut before = text[..start].chars().rev();
            let digit_before = match before.next() {
                Some(c) if c.is_ascii_digit() => true,
                Some(c) if is_sep(c) => before.next().is_some_and(|d| d.is_ascii_digit()),
                _ => false,
            };
            !digit_after && !digit_before
        }
        _ => true,
    }
}

impl PiiScrubber {
    /// The default set of patterns.
    pub fn new() -> Self {
        let pat = |kind, re: &str| (kind, Regex::new(re).expect("built-in PII regex is valid"));
        PiiScrubber {
            patterns: vec![
                pat(
                    PiiKind::Email,
                    r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
                ),
                // 13-19 digits written together or in the printed groups (4-4-4-4(-3),
                // Amex's 4-6-5, Diners' 4-6-4), never digit by digit: "0 0 0 ... 0" is a list.
                pat(
                    PiiKind::CardNumber,
                    r"(?x)\b(?:
                        \d{13,19}
                      | \d{4}(?:[\ -]\d{4}){2}[\ -]\d{1,4}(?:[\ -]\d{3})?
                      | \d{4}[\ -]\d{6}[\ -]\d{4,5}
                    )\b",
                ),
                pat(PiiKind::Ssn, r"\b\d{3}-\d{2}-\d{4}\b"),
                pat(
                    PiiKind::Phone,
                    r"(?x)
                    (?:\+\d{1,3}[\ .-]?)?
                    (?:
                        \(\d{2,4}\)[\ .-]?\d{3,4}[\ .-]?\d{4}
                      | \b\d{2,4}[\ .-]\d{3,4}[\ .-]\d{4}
                    )\b
                    | \+\d{8,15}\b",
                ),
                pat(
                    PiiKind::IpAddress,
                    r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
                ),
            ],
        }
    }

    /// Scrubs one text; returns the new text (borrowed if unchanged) and counts by kind.
    pub fn scrub<'a>(&self, text: &'a str) -> (Cow<'a, str>, PiiCounts) {
        let mut counts = PiiCounts::new();
        let mut current: Cow<'a, str> = Cow::Borrowed(text);
        for (kind, re) in &self.patterns {
            let mut out = String::new();
            let mut last = 0;
            let mut n = 0usize;
            for m in re.find_iter(&current) {
                if !accept(*kind, &current, m.start(), m.end()) {
                    continue;
                }
                out.push_str(&current[last..m.start()]);
                out.push_str(kind.placeholder());
                last = m.end();
                n += 1;
            }
            if n > 0 {
                out.push_str(&current[last..]);
                *counts.entry(*kind).or_insert(0) += n;
                current = Cow::Owned(out);
            }
        }
        (current, counts)
    }

    /// Scrubs every text field of every record in place; returns a report (ids, fields and
    /// counts, never the scrubbed text).
    pub fn scrub_records<T: TextFields>(&self, records: &mut [T]) -> PiiReport {
        let mut report = PiiReport {
            records_scanned: records.len(),
            ..PiiReport::default()
        };
        for rec in records.iter_mut() {
            let id = rec.record_id().to_string();
            let mut changed = false;
            for (field, text) in rec.text_fields_mut() {
                let (new, counts) = self.scrub(text);
                if let Cow::Owned(new) = new {
                    *text = new;
                    changed = true;
                    report.changed_fields.push((id.clone(), field));
                    for (k, n) in counts {
                        *report.by_kind.entry(k).or_insert(0) += n;
                    }
                }
            }
            if changed {
                report.records_changed += 1;
            }
        }
        report
    }
}

// ---------------------------------------------------------------------------------------------
// Per-user cap
// ---------------------------------------------------------------------------------------------

/// The paper's cap on prompts per user id.
pub const DEFAULT_MAX_PROMPTS_PER_USER: usize = 200;

/// What [`cap_per_user`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapReport {
    /// The cap applied.
    pub max_per_user: usize,
    /// Users who had more records than the cap.
    pub users_capped: usize,
    /// Records dropped.
    pub dropped: usize,
}

/// Keeps at most `max_per_user` records per user: the first ones in input order (input
/// order is preserved). Use [`DEFAULT_MAX_PROMPTS_PER_USER`] for the paper's 200.
pub fn cap_per_user<T: HasUser>(records: Vec<T>, max_per_user: usize) -> (Vec<T>, CapReport) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut capped: HashSet<String> = HashSet::new();
    let mut report = CapReport {
        max_per_user,
        ..CapReport::default()
    };
    let mut kept = Vec::with_capacity(records.len());
    for rec in records {
        let c = counts.entry(rec.user_id().to_string()).or_insert(0);
        if *c < max_per_user {
            *c += 1;
            kept.push(rec);
        } else {
            report.dropped += 1;
            capped.insert(rec.user_id().to_string());
        }
    }
    report.users_capped = capped.len();
    (kept, report)
}

// ---------------------------------------------------------------------------------------------
// Split by user
// ---------------------------------------------------------------------------------------------

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SplitPart {
    /// Training data.
    Train,
    /// Validation data.
    Valid,
    /// Test data.
    Test,
}

/// Train/valid/test fractions: finite, non-negative, summing to 1 within 1e-6. Values less
/// than 1e-9 below zero (rounding residue such as `1.0 - 0.8 - 0.2`) are read as 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Fraction for training.
    pub train: f64,
    /// Fraction for validation.
    pub valid: f64,
    /// Fraction for testing.
    pub test: f64,
}

impl SplitFractions {
    /// Checks and builds fractions.
    pub fn new(train: f64, valid: f64, test: f64) -> Result<Self> {
        // Tolerate rounding residue such as `1.0 - 0.8 - 0.2` (about -5.6e-17).
        let clean = |v: f64| if (-1e-9..0.0).contains(&v) { 0.0 } else { v };
        let (train, valid, test) = (clean(train), clean(valid), clean(test));
        for (name, v) in [("train", train), ("valid", valid), ("test", test)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Config(format!(
                    "split fraction `{name}` is {v}: expected a finite number >= 0"
                )));
            }
        }
        let sum = train + valid + test;
        if (sum - 1.0).abs() > 1e-6 {
            return Err(Error::Config(format!(
                "split fractions ({train}, {valid}, {test}) sum to {sum}: expected them to sum to 1"
            )));
        }
        Ok(SplitFractions { train, valid, test })
    }
}

impl TryFrom<(f64, f64, f64)> for SplitFractions {
    type Error = Error;
    fn try_from(v: (f64, f64, f64)) -> Result<Self> {
        SplitFractions::new(v.0, v.1, v.2)
    }
}

/// The result of a split: the three parts and which part each user went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<T> {
    /// Training records (input order preserved).
    pub train: Vec<T>,
    /// Validation records (input order preserved).
    pub valid: Vec<T>,
    /// Test records (input order preserved).
    pub test: Vec<T>,
    /// The part of every user seen.
    pub users: BTreeMap<String, SplitPart>,
}

impl<T> Split<T> {
    /// The records of one part.
    pub fn part(&self, part: SplitPart) -> &[T] {
        match part {
            SplitPart::Train => &self.train,
            SplitPart::Valid => &self.valid,
            SplitPart::Test => &self.test,
        }
    }

    /// `(train, valid, test)` record counts.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.train.len(), self.valid.len(), self.test.len())
    }
}

/// Splits records into train/valid/test **by user**: all records of a user land in one part.
///
/// Users are ordered by a seeded stable hash of their id, then assigned in that order so the
/// parts' record counts track the fractions: a user goes to the part whose cumulative target
/// contains the midpoint of the user's records.
///
/// Guarantees: deterministic for a given input and seed (and independent of the input order
/// of users' records); no user in two parts; with `N` records and at most `M` records per
/// user, each part's record count is within `M` of `fraction * N` (train and test within
/// `M / 2`), i.e. each fraction is met within `M / N`.
///
/// `fractions` is `(train, valid, test)`; they must be non-negative and sum to 1.
pub fn split_by_user<T: HasUser>(
    records: Vec<T>,
    fractions: (f64, f64, f64),
    seed: u64,
) -> Result<Split<T>> {
    let fr = SplitFractions::try_from(fractions)?;
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        *sizes.entry(r.user_id()).or_insert(0) += 1;
    }
    let mut users: Vec<(u64, &str, usize)> = sizes
        .iter()
        .map(|(u, &n)| (stable_hash(seed, u), *u, n))
        .collect();
    users.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let total = records.len() as f64;
    let b1 = fr.train * total;
    let b2 = (fr.train + fr.valid) * total;
    let mut assignment: BTreeMap<String, SplitPart> = BTreeMap::new();
    let mut cum = 0usize;
    for (_, user, n) in &users {
        let mid = cum as f64 + *n as f64 / 2.0;
        let part = if mid < b1 {
            SplitPart::Train
        } else if mid < b2 {
            SplitPart::Valid
        } else {
            SplitPart::Test
        };
        assignment.insert((*user).to_string(), part);
        cum += n;
    }
    Ok(route(records, assignment))
}

/// The part a user goes to under per-user hashing: independent of every other user, so the
/// same user gets the same part in every dataset (SFT, RM, PPO) split with the same seed and
/// fractions. Fractions are met only in expectation over users; use [`split_by_user`] when the
/// record counts must track the fractions.
pub fn assign_split(user_id: &str, fractions: SplitFractions, seed: u64) -> SplitPart {
    let u = unit_interval(stable_hash(seed, user_id));
    if u < fractions.train {
        SplitPart::Train
    } else if u < fractions.train + fractions.valid {
        SplitPart::Valid
    } else {
        SplitPart::Test
    }
}

/// Splits by [`assign_split`]: consistent across datasets, fractions met in expectation.
pub fn split_by_user_hashed<T: HasUser>(
    records: Vec<T>,
    fractions: (f64, f64, f64),
    seed: u64,
) -> Result<Split<T>> {
    let fr = SplitFractions::try_from(fractions)?;
    let mut assignment: BTreeMap<String, SplitPart> = BTreeMap::new();
    for r in &records {
        if !assignment.contains_key(r.user_id()) {
            assignment.insert(r.user_id().to_string(), assign_split(r.user_id(), fr, seed));
        }
    }
    Ok(route(records, assignment))
}

fn route<T: HasUser>(records: Vec<T>, users: BTreeMap<String, SplitPart>) -> Split<T> {
    let mut split = Split {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
        users,
    };
    for r in records {
        match split.users[r.user_id()] {
            SplitPart::Train => split.train.push(r),
            SplitPart::Valid => split.valid.push(r),
            SplitPart::Test => split.test.push(r),
        }
    }
    split
}
