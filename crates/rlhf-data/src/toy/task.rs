//! Toy tasks: generation, prompt rendering and parsing, ideal responses, the gold score,
//! corruptions, and a simulated policy's candidate responses.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::vocab::{adjectives, nouns, Pool, WordKind, DIGITS, LETTERS, PUNCTUATION, VERBS};
use crate::error::{Error, Result};

/// Longest prompt the toy world makes, in toy-tokenizer tokens.
pub const TOY_MAX_PROMPT_TOKENS: usize = 48;
/// Longest ideal response the toy world makes, in toy-tokenizer tokens (without EOS).
pub const TOY_MAX_RESPONSE_TOKENS: usize = 24;

/// The paper's prompt categories that have a toy counterpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Generation (paper: 45.6%): `sentence`, `continue`.
    Generation,
    /// Open QA (12.4%): `name_one`.
    OpenQa,
    /// Brainstorming (11.2%): `list`.
    Brainstorming,
    /// Rewrite (6.6%): `reverse`, `sort`, `replace`.
    Rewrite,
    /// Summarization (4.2%): `summarize`.
    Summarization,
    /// Classification (3.5%): `classify`.
    Classification,
    /// Extraction (1.9%): `pick`, `extract`.
    Extraction,
    /// Closed QA (2.6%): `count`.
    ClosedQa,
}

impl Category {
    /// All categories.
    pub const ALL: [Category; 8] = [
        Category::Generation,
        Category::OpenQa,
        Category::Brainstorming,
        Category::Rewrite,
        Category::Summarization,
        Category::Classification,
        Category::Extraction,
        Category::ClosedQa,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Generation => "generation",
            Category::OpenQa => "open_qa",
            Category::Brainstorming => "brainstorming",
            Category::Rewrite => "rewrite",
            Category::Summarization => "summarization",
            Category::Classification => "classification",
            Category::Extraction => "extraction",
            Category::ClosedQa => "closed_qa",
        }
    }

    /// The share of the category in the paper's API prompt distribution (Table 1), in percent.
    pub fn paper_share(self) -> f64 {
        match self {
            Category::Generation => 45.6,
            Category::OpenQa => 12.4,
            Category::Brainstorming => 11.2,
            Category::Rewrite => 6.6,
            Category::Summarization => 4.2,
            Category::Classification => 3.5,
            Category::Extraction => 1.9,
            Category::ClosedQa => 2.6,
        }
    }

    /// The task kinds of this category.
    pub fn kinds(self) -> &'static [TaskKind] {
        match self {
            Category::Generation => &[TaskKind::Sentence, TaskKind::Continue],
            Category::OpenQa => &[TaskKind::NameOne],
            Category::Brainstorming => &[TaskKind::List],
            Category::Rewrite => &[TaskKind::Reverse, TaskKind::Sort, TaskKind::Replace],
            Category::Summarization => &[TaskKind::Summarize],
            Category::Classification => &[TaskKind::Classify],
            Category::Extraction => &[TaskKind::Pick, TaskKind::Extract],
            Category::ClosedQa => &[TaskKind::Count],
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a prompt is phrased (the paper's plain / few-shot / instruction prompts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// A terse query ending in `=>`, e.g. `reverse : a b c =>`.
    Plain,
    /// One or two solved examples (`query answer ;`) before a plain query.
    FewShot,
    /// A natural-language instruction, e.g. `write a b c in reverse order .`.
    Instruction,
}

impl Style {
    /// All styles.
    pub const ALL: [Style; 3] = [Style::Plain, Style::FewShot, Style::Instruction];
}

/// Which item `pick` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// The first item.
    First,
    /// The second item.
    Second,
    /// The third item.
    Third,
    /// The last item.
    Last,
}

impl Position {
    const ALL: [Position; 4] = [
        Position::First,
        Position::Second,
        Position::Third,
        Position::Last,
    ];

    fn word(self) -> &'static str {
        match self {
            Position::First => "first",
            Position::Second => "second",
            Position::Third => "third",
            Position::Last => "last",
        }
    }

    fn from_word(w: &str) -> Option<Position> {
        Position::ALL.into_iter().find(|p| p.word() == w)
    }

    fn index(self, len: usize) -> Option<usize> {
        let i = match self {
            Position::First => 0,
            Position::Second => 1,
            Position::Third => 2,
            Position::Last => len.checked_sub(1)?,
        };
        (i < len).then_some(i)
    }
}

/// The kind of a toy task (one per template pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Reverse a list.
    Reverse,
    /// Sort letters or digits.
    Sort,
    /// Copy a list, replacing one item by another.
    Replace,
    /// Collapse runs of repeated items.
    Summarize,
    /// Continue an alphabetic or numeric run with the next three items.
    Continue,
    /// Count occurrences of an item.
    Count,
    /// Pick the item at a position.
    Pick,
    /// Extract the words of one kind, in order.
    Extract,
    /// Name the kind of a word.
    Classify,
    /// Name any word of a kind except one.
    NameOne,
    /// List N different words of a kind.
    List,
    /// Write a grammatical sentence about a topic noun.
    Sentence,
}

impl TaskKind {
    /// All kinds.
    pub const ALL: [TaskKind; 12] = [
        TaskKind::Reverse,
        TaskKind::Sort,
        TaskKind::Replace,
        TaskKind::Summarize,
        TaskKind::Continue,
        TaskKind::Count,
        TaskKind::Pick,
        TaskKind::Extract,
        TaskKind::Classify,
        TaskKind::NameOne,
        TaskKind::List,
        TaskKind::Sentence,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Reverse => "reverse",
            TaskKind::Sort => "sort",
            TaskKind::Replace => "replace",
            TaskKind::Summarize => "summarize",
            TaskKind::Continue => "continue",
            TaskKind::Count => "count",
            TaskKind::Pick => "pick",
            TaskKind::Extract => "extract",
            TaskKind::Classify => "classify",
            TaskKind::NameOne => "name_one",
            TaskKind::List => "list",
            TaskKind::Sentence => "sentence",
        }
    }

    /// The paper category this kind stands for.
    pub fn category(self) -> Category {
        match self {
            TaskKind::Sentence | TaskKind::Continue => Category::Generation,
            TaskKind::NameOne => Category::OpenQa,
            TaskKind::List => Category::Brainstorming,
            TaskKind::Reverse | TaskKind::Sort | TaskKind::Replace => Category::Rewrite,
            TaskKind::Summarize => Category::Summarization,
            TaskKind::Classify => Category::Classification,
            TaskKind::Pick | TaskKind::Extract => Category::Extraction,
            TaskKind::Count => Category::ClosedQa,
        }
    }

    /// True when many different responses are fully correct.
    pub fn is_open_ended(self) -> bool {
        matches!(
            self,
            TaskKind::NameOne | TaskKind::List | TaskKind::Sentence
        )
    }

    /// `(plain, instruction)` templates; `{slot}` marks a value.
    fn templates(self) -> (&'static str, &'static str) {
        match self {
            TaskKind::Reverse => ("reverse : {items} =>", "write {items} in reverse order ."),
            TaskKind::Sort => ("sort : {items} =>", "write {items} in sorted order ."),
            TaskKind::Replace => (
                "replace {from} with {to} : {items} =>",
                "copy {items} but write {to} instead of {from} .",
            ),
            TaskKind::Summarize => (
                "summarize : {items} =>",
                "write {items} without the repeats .",
            ),
            TaskKind::Continue => ("continue : {items} =>", "write what comes after {items} ."),
            TaskKind::Count => (
                "count {target} : {items} =>",
                "how many times does {target} appear in {items} ?",
            ),
            TaskKind::Pick => ("{pos} of : {items} =>", "which item is {pos} in {items} ?"),
            TaskKind::Extract => (
                "extract {kinds} : {items} =>",
                "which of {items} are {kinds} ?",
            ),
            TaskKind::Classify => (
                "classify {word} =>",
                "is {word} an animal , a color or a fruit ?",
            ),
            TaskKind::NameOne => (
                "name a {kind} not {exclude} =>",
                "name a {kind} that is not {exclude} .",
            ),
            TaskKind::List => ("list {n} {kinds} =>", "name {n} different {kinds} ."),
            TaskKind::Sentence => (
                "sentence about {topic} =>",
                "write a short sentence about the {topic} .",
            ),
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A toy task with its arguments. Its prompt can be rendered in any [`Style`] and parsed back
/// ([`ToyTask::from_prompt`]); [`gold_score`] scores any response to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToyTask {
    /// Reverse `items`.
    Reverse {
        /// The list.
        items: Vec<String>,
    },
    /// Sort `items` (letters alphabetically, digits numerically).
    Sort {
        /// The list.
        items: Vec<String>,
    },
    /// Copy `items`, writing `to` for every `from`.
    Replace {
        /// The list.
        items: Vec<String>,
        /// Item to replace.
        from: String,
        /// Its replacement.
        to: String,
    },
    /// Collapse runs of equal items.
    Summarize {
        /// The list.
        items: Vec<String>,
    },
    /// The next three items after an alphabetic or numeric run.
    Continue {
        /// The run.
        items: Vec<String>,
    },
    /// How many times `target` occurs in `items` (a digit).
    Count {
        /// The list.
        items: Vec<String>,
        /// The item to count.
        target: String,
    },
    /// The item at `position`.
    Pick {
        /// The list.
        items: Vec<String>,
        /// Which item.
        position: Position,
    },
    /// The items of `word_kind`, in order.
    Extract {
        /// The list.
        items: Vec<String>,
        /// The kind to keep.
        word_kind: WordKind,
    },
    /// The kind of `word`.
    Classify {
        /// The word.
        word: String,
    },
    /// Any word of `word_kind` except `exclude`.
    NameOne {
        /// The kind.
        word_kind: WordKind,
        /// The excluded word.
        exclude: String,
    },
    /// `n` different words of `word_kind`.
    List {
        /// The kind.
        word_kind: WordKind,
        /// How many.
        n: usize,
    },
    /// A grammatical sentence (`the [adj] noun verb the [adj] noun .`) mentioning `topic`.
    Sentence {
        /// A noun (animal or fruit).
        topic: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Items,
    From,
    To,
    Target,
    Pos,
    Kinds,
    Word,
    Kind,
    Exclude,
    N,
    Topic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Lit(&'static str),
    Slot(Slot),
}

fn compile(template: &'static str) -> Vec<Piece> {
    template
        .split(' ')
        .map(|w| match w {
            "{items}" => Piece::Slot(Slot::Items),
            "{from}" => Piece::Slot(Slot::From),
            "{to}" => Piece::Slot(Slot::To),
            "{target}" => Piece::Slot(Slot::Target),
            "{pos}" => Piece::Slot(Slot::Pos),
            "{kinds}" => Piece::Slot(Slot::Kinds),
            "{word}" => Piece::Slot(Slot::Word),
            "{kind}" => Piece::Slot(Slot::Kind),
            "{exclude}" => Piece::Slot(Slot::Exclude),
            "{n}" => Piece::Slot(Slot::N),
            "{topic}" => Piece::Slot(Slot::Topic),
            lit => {
                debug_assert!(!lit.starts_with('{'), "unknown slot {lit}");
                Piece::Lit(lit)
            }
        })
        .collect()
}

struct Compiled {
    kind: TaskKind,
    plain: Vec<Piece>,
    instruction: Vec<Piece>,
}

static TEMPLATES: LazyLock<Vec<Compiled>> = LazyLock::new(|| {
    TaskKind::ALL
        .iter()
        .map(|&kind| {
            let (p, i) = kind.templates();
            Compiled {
                kind,
                plain: compile(p),
                instruction: compile(i),
            }
        })
        .collect()
});

/// Every literal word used by the templates (for vocabulary checks).
pub fn template_words() -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in TEMPLATES.iter() {
        for p in c.plain.iter().chain(&c.instruction) {
            if let Piece::Lit(l) = p {
                if !out.contains(l) {
                    out.push(*l);
                }
            }
        }
    }
    out
}

type Captures<'a> = Vec<(Slot, &'a [&'a str])>;

fn match_pieces<'a>(pieces: &[Piece], toks: &'a [&'a str], caps: &mut Captures<'a>) -> bool {
    match pieces.split_first() {
        None => toks.is_empty(),
        Some((Piece::Lit(l), rest)) => {
            toks.first() == Some(l) && match_pieces(rest, &toks[1..], caps)
        }
        Some((Piece::Slot(Slot::Items), rest)) => {
            for n in 1..=toks.len() {
                caps.push((Slot::Items, &toks[..n]));
                if match_pieces(rest, &toks[n..], caps) {
                    return true;
                }
                caps.pop();
            }
            false
        }
        Some((Piece::Slot(s), rest)) => {
            if toks.is_empty() {
                return false;
            }
            caps.push((*s, &toks[..1]));
            if match_pieces(rest, &toks[1..], caps) {
                return true;
            }
            caps.pop();
            false
        }
    }
}

fn cap<'a>(caps: &Captures<'a>, slot: Slot) -> Option<&'a [&'a str]> {
    caps.iter().find(|(s, _)| *s == slot).map(|(_, v)| *v)
}

fn cap1<'a>(caps: &Captures<'a>, slot: Slot) -> Option<&'a str> {
    cap(caps, slot).and_then(|v| v.first().copied())
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn all_items(items: &[&str]) -> bool {
    !items.is_empty() && items.iter().all(|i| Pool::of_item(i).is_some())
}

fn build(kind: TaskKind, caps: &Captures<'_>) -> Option<ToyTask> {
    let items = cap(caps, Slot::Items);
    let task = match kind {
        TaskKind::Reverse => ToyTask::Reverse {
            items: owned(items.filter(|i| all_items(i))?),
        },
        TaskKind::Sort => {
            let items = items?;
            let pool = Pool::ordinal(items.first()?)?.0;
            if !items
                .iter()
                .all(|i| Pool::ordinal(i).map(|p| p.0) == Some(pool))
            {
                return None;
            }
            ToyTask::Sort {
                items: owned(items),
            }
        }
        TaskKind::Replace => {
            let items = items.filter(|i| all_items(i))?;
            let from = cap1(caps, Slot::From).filter(|w| Pool::of_item(w).is_some())?;
            let to = cap1(caps, Slot::To).filter(|w| Pool::of_item(w).is_some())?;
            if from == to {
                return None;
            }
            ToyTask::Replace {
                items: owned(items),
                from: from.to_string(),
                to: to.to_string(),
            }
        }
        TaskKind::Summarize => ToyTask::Summarize {
            items: owned(items.filter(|i| all_items(i))?),
        },
        TaskKind::Continue => {
            let items = items?;
            let (pool, start) = Pool::ordinal(items.first()?)?;
            let consecutive = items
                .iter()
                .enumerate()
                .all(|(j, i)| Pool::ordinal(i) == Some((pool, start + j)));
            if !consecutive {
                return None;
            }
            ToyTask::Continue {
                items: owned(items),
            }
        }
        TaskKind::Count => ToyTask::Count {
            items: owned(items.filter(|i| all_items(i))?),
            target: cap1(caps, Slot::Target)
                .filter(|w| Pool::of_item(w).is_some())?
                .to_string(),
        },
        TaskKind::Pick => {
            let items = items.filter(|i| all_items(i))?;
            let position = Position::from_word(cap1(caps, Slot::Pos)?)?;
            position.index(items.len())?;
            ToyTask::Pick {
                items: owned(items),
                position,
            }
        }
        TaskKind::Extract => ToyTask::Extract {
            items: owned(items.filter(|i| i.iter().all(|w| WordKind::of_word(w).is_some()))?),
            word_kind: WordKind::from_plural(cap1(caps, Slot::Kinds)?)?,
        },
        TaskKind::Classify => {
            let word = cap1(caps, Slot::Word)?;
            WordKind::of_word(word)?;
            ToyTask::Classify {
                word: word.to_string(),
            }
        }
        TaskKind::NameOne => {
            let word_kind = WordKind::from_singular(cap1(caps, Slot::Kind)?)?;
            let exclude = cap1(caps, Slot::Exclude)?;
            if !word_kind.words().contains(&exclude) {
                return None;
            }
            ToyTask::NameOne {
                word_kind,
                exclude: exclude.to_string(),
            }
        }
        TaskKind::List => {
            let word_kind = WordKind::from_plural(cap1(caps, Slot::Kinds)?)?;
            let n: usize = cap1(caps, Slot::N)?.parse().ok()?;
            if n == 0 || n > word_kind.words().len() || !DIGITS.contains(&cap1(caps, Slot::N)?) {
                return None;
            }
            ToyTask::List { word_kind, n }
        }
        TaskKind::Sentence => {
            let topic = cap1(caps, Slot::Topic)?;
            if !nouns().any(|n| n == topic) {
                return None;
            }
            ToyTask::Sentence {
                topic: topic.to_string(),
            }
        }
    };
    Some(task)
}

// ---------------------------------------------------------------------------------------------
// ToyTask
// ---------------------------------------------------------------------------------------------

fn tokens(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

impl ToyTask {
    /// The task's kind.
    pub fn kind(&self) -> TaskKind {
        match self {
            ToyTask::Reverse { .. } => TaskKind::Reverse,
            ToyTask::Sort { .. } => TaskKind::Sort,
            ToyTask::Replace { .. } => TaskKind::Replace,
            ToyTask::Summarize { .. } => TaskKind::Summarize,
            ToyTask::Continue { .. } => TaskKind::Continue,
            ToyTask::Count { .. } => TaskKind::Count,
            ToyTask::Pick { .. } => TaskKind::Pick,
            ToyTask::Extract { .. } => TaskKind::Extract,
            ToyTask::Classify { .. } => TaskKind::Classify,
            ToyTask::NameOne { .. } => TaskKind::NameOne,
            ToyTask::List { .. } => TaskKind::List,
            ToyTask::Sentence { .. } => TaskKind::Sentence,
        }
    }

    /// The paper category of the task.
    pub fn category(&self) -> Category {
        self.kind().category()
    }

    /// The label stored in `PromptRecord::task`: `category/kind`, e.g. `rewrite/reverse`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.category(), self.kind())
    }

    fn slot_values(&self, slot: Slot) -> Vec<String> {
        let one = |s: &str| vec![s.to_string()];
        match (self, slot) {
            (
                ToyTask::Reverse { items }
                | ToyTask::Sort { items }
                | ToyTask::Replace { items, .. }
                | ToyTask::Summarize { items }
                | ToyTask::Continue { items }
                | ToyTask::Count { items, .. }
                | ToyTask::Pick { items, .. }
                | ToyTask::Extract { items, .. },
                Slot::Items,
            ) => items.clone(),
            (ToyTask::Replace { from, .. }, Slot::From) => one(from),
            (ToyTask::Replace { to, .. }, Slot::To) => one(to),
            (ToyTask::Count { target, .. }, Slot::Target) => one(target),
            (ToyTask::Pick { position, .. }, Slot::Pos) => one(position.word()),
            (ToyTask::Extract { word_kind, .. }, Slot::Kinds)
            | (ToyTask::List { word_kind, .. }, Slot::Kinds) => one(word_kind.plural()),
            (ToyTask::Classify { word }, Slot::Word) => one(word),
            (ToyTask::NameOne { word_kind, .. }, Slot::Kind) => one(word_kind.singular()),
            (ToyTask::NameOne { exclude, .. }, Slot::Exclude) => one(exclude),
            (ToyTask::List { n, .. }, Slot::N) => one(&n.to_string()),
            (ToyTask::Sentence { topic }, Slot::Topic) => one(topic),
            _ => unreachable!(
                "template slot {slot:?} does not belong to {:?}",
                self.kind()
            ),
        }
    }

    fn render_pieces(&self, pieces: &[Piece]) -> String {
        let mut words: Vec<String> = Vec::new();
        for p in pieces {
            match p {
                Piece::Lit(l) => words.push(l.to_string()),
                Piece::Slot(s) => words.extend(self.slot_values(*s)),
            }
        }
        words.join(" ")
    }

    fn compiled(&self) -> &'static Compiled {
        let kind = self.kind();
        TEMPLATES
            .iter()
            .find(|c| c.kind == kind)
            .expect("every kind has templates")
    }

    /// The plain-style query, e.g. `reverse : a b c =>`.
    pub fn plain_prompt(&self) -> String {
        self.render_pieces(&self.compiled().plain)
    }

    /// The instruction-style prompt, e.g. `write a b c in reverse order .`.
    pub fn instruction_prompt(&self) -> String {
        self.render_pieces(&self.compiled().instruction)
    }

    /// A few-shot prompt: each example as `query answer ;`, then this task's plain query.
    /// Examples that would push the prompt past [`TOY_MAX_PROMPT_TOKENS`] are dropped from the
    /// front.
    pub fn few_shot_prompt(&self, examples: &[ToyTask]) -> String {
        let query = self.plain_prompt();
        let segments: Vec<String> = examples
            .iter()
            .map(|e| format!("{} {} ;", e.plain_prompt(), e.canonical_response()))
            .collect();
        let mut start = 0;
        loop {
            let text = segments[start..]
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(query.as_str()))
                .collect::<Vec<_>>()
                .join(" ");
            if tokens(&text).len() <= TOY_MAX_PROMPT_TOKENS || start == segments.len() {
                return text;
            }
            start += 1;
        }
    }

    /// Renders the prompt in a style; `examples` are used by [`Style::FewShot`] only.
    pub fn render(&self, style: Style, examples: &[ToyTask]) -> String {
        match style {
            Style::Plain => self.plain_prompt(),
            Style::Instruction => self.instruction_prompt(),
            Style::FewShot => self.few_shot_prompt(examples),
        }
    }

    /// Parses a prompt made by the toy world (any style) back into its task and style.
    ///
    /// For few-shot prompts the task is the last query (after the last `;`).
    /// A leading constraint (`answer only :`, see [`super::ToyPrompt`]) is skipped.
    pub fn parse_prompt(prompt: &str) -> Result<(ToyTask, Style)> {
        let all = tokens(prompt);
        let (_, toks) = super::conduct::strip_constraint(&all);
        let (query, style) = match toks.iter().rposition(|&t| t == ";") {
            Some(i) => (&toks[i + 1..], Style::FewShot),
            None => (toks, Style::Plain),
        };
        for c in TEMPLATES.iter() {
            let candidates: &[(&[Piece], Style)] = if style == Style::FewShot {
                &[(&c.plain, Style::FewShot)]
            } else {
                &[
                    (&c.plain, Style::Plain),
                    (&c.instruction, Style::Instruction),
                ]
            };
            for (pieces, st) in candidates {
                let mut caps = Vec::new();
                if match_pieces(pieces, query, &mut caps) {
                    if let Some(task) = build(c.kind, &caps) {
                        return Ok((task, *st));
                    }
                }
            }
        }
        Err(Error::Task(format!(
            "cannot parse {prompt:?}: expected a prompt made by the toy world (plain, few-shot or instruction style)"
        )))
    }

    /// Parses a prompt made by the toy world back into its task (see [`ToyTask::parse_prompt`]).
    pub fn from_prompt(prompt: &str) -> Result<ToyTask> {
        Self::parse_prompt(prompt).map(|(t, _)| t)
    }

    /// The unique correct answer of a closed task (`None` for open-ended kinds).
    pub fn ideal_tokens(&self) -> Option<Vec<String>> {
        Some(match self {
            ToyTask::Reverse { items } => items.iter().rev().cloned().collect(),
            ToyTask::Sort { items } => {
                let mut v = items.clone();
                v.sort_by_key(|i| Pool::ordinal(i).map(|p| p.1).unwrap_or(usize::MAX));
                v
            }
            ToyTask::Replace { items, from, to } => items
                .iter()
                .map(|i| if i == from { to.clone() } else { i.clone() })
                .collect(),
            ToyTask::Summarize { items } => {
                let mut v: Vec<String> = items.clone();
                v.dedup();
                v
            }
            ToyTask::Continue { items } => {
                let last = items.last().and_then(|l| Pool::ordinal(l));
                match last {
                    Some((pool, idx)) => {
                        let all = pool.items();
                        (idx + 1..(idx + 4).min(all.len()))
                            .map(|j| all[j].to_string())
                            .collect()
                    }
                    None => Vec::new(),
                }
            }
            ToyTask::Count { items, target } => {
                vec![items.iter().filter(|i| *i == target).count().to_string()]
            }
            ToyTask::Pick { items, position } => match position.index(items.len()) {
                Some(i) => vec![items[i].clone()],
                None => Vec::new(),
            },
            ToyTask::Extract { items, word_kind } => items
                .iter()
                .filter(|i| word_kind.words().contains(&i.as_str()))
                .cloned()
                .collect(),
            ToyTask::Classify { word } => match WordKind::of_word(word) {
                Some(k) => vec![k.singular().to_string()],
                None => Vec::new(),
            },
            ToyTask::NameOne { .. } | ToyTask::List { .. } | ToyTask::Sentence { .. } => {
                return None
            }
        })
    }

    /// A fixed fully-correct response (the first valid answer for open-ended tasks).
    pub fn canonical_response(&self) -> String {
        if let Some(t) = self.ideal_tokens() {
            return t.join(" ");
        }
        match self {
            ToyTask::NameOne { word_kind, exclude } => word_kind
                .words()
                .iter()
                .find(|w| *w != exclude)
                .map(|w| w.to_string())
                .unwrap_or_default(),
            ToyTask::List { word_kind, n } => {
                word_kind.words()[..(*n).min(word_kind.words().len())].join(" ")
            }
            ToyTask::Sentence { topic } => format!("the {topic} sees the big cat ."),
            _ => unreachable!("closed tasks have ideal tokens"),
        }
    }

    /// A random fully-correct response (varied for open-ended tasks).
    pub fn reference_response<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        match self {
            ToyTask::NameOne { word_kind, exclude } => {
                let choices: Vec<&str> = word_kind
                    .words()
                    .iter()
                    .copied()
                    .filter(|w| w != exclude)
                    .collect();
                choices
                    .choose(rng)
                    .map(|w| w.to_string())
                    .unwrap_or_default()
            }
            ToyTask::List { word_kind, n } => {
                let mut words = word_kind.words().to_vec();
                words.shuffle(rng);
                words.truncate(*n);
                words.join(" ")
            }
            ToyTask::Sentence { topic } => random_sentence(rng, Some(topic)),
            _ => self.canonical_response(),
        }
    }

    /// A random task of the given kind. `max_items` (3..=8) bounds list lengths.
    pub fn random<R: Rng + ?Sized>(kind: TaskKind, rng: &mut R, max_items: usize) -> ToyTask {
        let max_items = max_items.clamp(3, 8);
        let pick_pool = |rng: &mut R, pools: &[Pool]| *pools.choose(rng).expect("non-empty");
        let sample = |rng: &mut R, pool: Pool, n: usize| -> Vec<String> {
            let all = pool.items();
            (0..n)
                .map(|_| all.choose(rng).expect("non-empty pool").to_string())
                .collect()
        };
        let distinct = |rng: &mut R, pool: &[&str], n: usize| -> Vec<String> {
            rand::seq::index::sample(rng, pool.len(), n.min(pool.len()))
                .into_iter()
                .map(|i| pool[i].to_string())
                .collect()
        };
        match kind {
            TaskKind::Reverse => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Digits, Pool::Words]);
                let n = rng.gen_range(2..=max_items.min(6));
                ToyTask::Reverse {
                    items: sample(rng, pool, n),
                }
            }
            TaskKind::Sort => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Digits]);
                let n = rng.gen_range(2..=max_items.min(6));
                ToyTask::Sort {
                    items: sample(rng, pool, n),
                }
            }
            TaskKind::Replace => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Digits]);
                let n = rng.gen_range(2..=max_items.min(6));
                let items = sample(rng, pool, n);
                let from = items.choose(rng).expect("n >= 2").clone();
                let all = pool.items();
                let to = loop {
                    let c = all.choose(rng).expect("non-empty");
                    if *c != from {
                        break c.to_string();
                    }
                };
                ToyTask::Replace { items, from, to }
            }
            TaskKind::Summarize => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Words]);
                let all = pool.items();
                let groups = rng.gen_range(2..=(max_items - 1).min(4));
                let mut items: Vec<String> = Vec::new();
                let mut prev: Option<&str> = None;
                for _ in 0..groups {
                    let w = loop {
                        let c = *all.choose(rng).expect("non-empty");
                        if Some(c) != prev {
                            break c;
                        }
                    };
                    prev = Some(w);
                    let reps = rng.gen_range(1..=3usize);
                    items.extend(std::iter::repeat_n(w.to_string(), reps));
                }
                if items.len() == groups {
                    // Make sure there is at least one repeat to remove.
                    let i = rng.gen_range(0..items.len());
                    let w = items[i].clone();
                    items.insert(i, w);
                }
                while items.len() > max_items {
                    // Shorten the longest run (keeping at least one item of it).
                    let (mut best_len, mut best_start, mut start) = (0, 0, 0);
                    while start < items.len() {
                        let end = (start..items.len())
                            .find(|&e| items[e] != items[start])
                            .unwrap_or(items.len());
                        if end - start > best_len {
                            (best_len, best_start) = (end - start, start);
                        }
                        start = end;
                    }
                    items.remove(best_start);
                }
                ToyTask::Summarize { items }
            }
            TaskKind::Continue => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Digits]);
                let all = pool.items();
                let n = rng.gen_range(2..=max_items.min(4));
                let start = rng.gen_range(0..=all.len() - n - 3);
                ToyTask::Continue {
                    items: all[start..start + n]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                }
            }
            TaskKind::Count => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Words]);
                let symbols = distinct(rng, &pool.items(), 3);
                let n = rng.gen_range(3..=max_items);
                let items: Vec<String> = (0..n)
                    .map(|_| symbols.choose(rng).expect("3 symbols").clone())
                    .collect();
                let target = symbols.choose(rng).expect("3 symbols").clone();
                ToyTask::Count { items, target }
            }
            TaskKind::Pick => {
                let pool = pick_pool(rng, &[Pool::Letters, Pool::Digits, Pool::Words]);
                let n = rng.gen_range(3..=max_items.min(6));
                ToyTask::Pick {
                    items: sample(rng, pool, n),
                    position: *Position::ALL.choose(rng).expect("non-empty"),
                }
            }
            TaskKind::Extract => {
                let word_kind = *WordKind::ALL.choose(rng).expect("non-empty");
                let n = rng.gen_range(3..=max_items.min(7));
                let words = Pool::Words.items();
                let mut items = distinct(rng, &words, n);
                if !items
                    .iter()
                    .any(|w| word_kind.words().contains(&w.as_str()))
                {
                    let i = rng.gen_range(0..items.len());
                    let candidates: Vec<&str> = word_kind
                        .words()
                        .iter()
                        .copied()
                        .filter(|w| !items.iter().any(|x| x == w))
                        .collect();
                    items[i] = candidates.choose(rng).expect("8 words").to_string();
                }
                ToyTask::Extract { items, word_kind }
            }
            TaskKind::Classify => {
                let words = Pool::Words.items();
                ToyTask::Classify {
                    word: words.choose(rng).expect("non-empty").to_string(),
                }
            }
            TaskKind::NameOne => {
                let word_kind = *WordKind::ALL.choose(rng).expect("non-empty");
                ToyTask::NameOne {
                    word_kind,
                    exclude: word_kind
                        .words()
                        .choose(rng)
                        .expect("non-empty")
                        .to_string(),
                }
            }
            TaskKind::List => ToyTask::List {
                word_kind: *WordKind::ALL.choose(rng).expect("non-empty"),
                n: rng.gen_range(2..=4),
            },
            TaskKind::Sentence => {
                let all: Vec<&str> = nouns().collect();
                ToyTask::Sentence {
                    topic: all.choose(rng).expect("non-empty").to_string(),
                }
            }
        }
    }
}

/// A random grammatical sentence `the [adj] noun verb the [adj] noun .`, mentioning `topic`
/// (as subject or object) when given.
pub fn random_sentence<R: Rng + ?Sized>(rng: &mut R, topic: Option<&str>) -> String {
    let all_nouns: Vec<&str> = nouns().collect();
    let adjs: Vec<&str> = adjectives().collect();
    let mut subj = *all_nouns.choose(rng).expect("non-empty");
    let mut obj = *all_nouns.choose(rng).expect("non-empty");
    if let Some(t) = topic {
        if rng.gen_bool(0.6) {
            subj = t;
        } else {
            obj = t;
        }
    }
    let mut words: Vec<&str> = vec!["the"];
    if rng.gen_bool(0.5) {
        words.push(adjs.choose(rng).expect("non-empty"));
    }
    words.push(subj);
    words.push(VERBS.choose(rng).expect("non-empty"));
    words.push("the");
    if rng.gen_bool(0.5) {
        words.push(adjs.choose(rng).expect("non-empty"));
    }
    words.push(obj);
    words.push(".");
    words.join(" ")
}

/// How many leading tokens follow the sentence grammar, and whether the whole input is one
/// complete sentence.
fn grammar_prefix(toks: &[&str]) -> (usize, bool) {
    let is_adj = |w: &str| adjectives().any(|a| a == w);
    let is_noun = |w: &str| nouns().any(|n| n == w);
    let is_verb = |w: &str| VERBS.contains(&w);
    let mut state = 0;
    for (i, &w) in toks.iter().enumerate() {
        let next = match state {
            0 | 4 if w == "the" => state + 1,
            1 | 5 if is_adj(w) => state + 1,
            1 | 2 if is_noun(w) => 3,
            5 | 6 if is_noun(w) => 7,
            3 if is_verb(w) => 4,
            7 if w == "." => 8,
            _ => return (i, false),
        };
        state = next;
    }
    (toks.len(), state == 8)
}

fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Score for a single-token answer: exact 1.0; right first token followed by extra tokens
/// 0.7; a plausible wrong first token `partial(token)`; 0.1 less per extra token, floored at 0.
fn single_token_score(
    resp: &[&str],
    ok: impl Fn(&str) -> bool,
    partial: impl Fn(&str) -> f64,
) -> f64 {
    match resp.split_first() {
        None => 0.0,
        Some((first, rest)) => {
            let extra = rest.len() as f64;
            if ok(first) {
                if rest.is_empty() {
                    1.0
                } else {
                    (0.7 - 0.1 * extra).max(0.0)
                }
            } else {
                (partial(first) - 0.1 * extra).max(0.0)
            }
        }
    }
}

/// The programmatic "true" quality of a response, in `[0, 1]`.
///
/// * A fully correct response scores exactly 1.0 and every other response scores less
///   (at most 0.95).
/// * Closed list tasks (reverse, sort, replace, summarize, continue, extract) give partial
///   credit `0.85 * (1 - edit_distance / max_len)` over tokens, so a near miss beats a far miss.
/// * Single-token answers (count, pick, classify, name_one) give partial credit for a plausible
///   but wrong answer (a near count, an item of the list, another label) and lose 0.1 per
///   extra token.
/// * `list` credits each distinct valid word and loses points for duplicates, invalid and
///   surplus words; `sentence` credits the grammatical prefix and the topic word.
/// * Every imperfect, non-empty response also gets a format bonus of up to 0.1: up to 0.05 for
///   a length close to the expected one and up to 0.05 for using the task's vocabulary (the
///   listed items, digits for counts, the kind's words, ...). It orders otherwise equally
///   wrong answers, so RL and the reward model have a gradient to climb everywhere.
///
/// Whitespace is normalized (the response is split on whitespace). Never panics.
pub fn gold_score(task: &ToyTask, response: &str) -> f64 {
    let resp = tokens(response);
    let main = main_score(task, &resp);
    if main >= 1.0 {
        1.0
    } else {
        (main + format_bonus(task, &resp)).min(0.95)
    }
}

/// Expected length range of a correct answer, in tokens.
fn expected_len(task: &ToyTask) -> (usize, usize) {
    match task {
        ToyTask::NameOne { .. } => (1, 1),
        ToyTask::List { n, .. } => (*n, *n),
        ToyTask::Sentence { .. } => (5, 9),
        _ => {
            let n = task.ideal_tokens().map_or(1, |t| t.len());
            (n, n)
        }
    }
}

fn relevant_token(task: &ToyTask, w: &str) -> bool {
    match task {
        ToyTask::Reverse { items }
        | ToyTask::Sort { items }
        | ToyTask::Summarize { items }
        | ToyTask::Extract { items, .. }
        | ToyTask::Pick { items, .. } => items.iter().any(|i| i == w),
        ToyTask::Replace { items, to, .. } => w == to || items.iter().any(|i| i == w),
        ToyTask::Continue { items } => match (
            items.first().and_then(|i| Pool::ordinal(i)),
            Pool::ordinal(w),
        ) {
            (Some((p, _)), Some((q, _))) => p == q,
            _ => false,
        },
        ToyTask::Count { .. } => DIGITS.contains(&w),
        ToyTask::Classify { .. } => WordKind::from_singular(w).is_some(),
        ToyTask::NameOne { word_kind, .. } | ToyTask::List { word_kind, .. } => {
            word_kind.words().contains(&w)
        }
        ToyTask::Sentence { .. } => {
            w == "the"
                || w == "."
                || VERBS.contains(&w)
                || adjectives().any(|a| a == w)
                || nouns().any(|n| n == w)
        }
    }
}

fn format_bonus(task: &ToyTask, resp: &[&str]) -> f64 {
    if resp.is_empty() {
        return 0.0;
    }
    let (lo, hi) = expected_len(task);
    let len = resp.len();
    let gap = if len < lo {
        lo - len
    } else {
        len.saturating_sub(hi)
    };
    let length = 1.0 - gap as f64 / len.max(lo).max(1) as f64;
    let vocab = resp.iter().filter(|w| relevant_token(task, w)).count() as f64 / len as f64;
    0.05 * length + 0.05 * vocab
}

/// The main part of [`gold_score`] (1.0 exactly when fully correct).
fn main_score(task: &ToyTask, resp: &[&str]) -> f64 {
    if let Some(ideal) = task.ideal_tokens() {
        match task {
            ToyTask::Count { .. } => {
                let target: i64 = ideal[0].parse().unwrap_or(0);
                return single_token_score(
                    resp,
                    |w| w == ideal[0],
                    |w| match w.parse::<i64>() {
                        Ok(d) if DIGITS.contains(&w) => {
                            0.5 * 0.5f64.powi(((d - target).abs() - 1).max(0) as i32)
                        }
                        _ => 0.0,
                    },
                );
            }
            ToyTask::Pick { items, .. } => {
                if ideal.is_empty() {
                    return 0.0;
                }
                return single_token_score(
                    resp,
                    |w| w == ideal[0],
                    |w| {
                        if items.iter().any(|i| i == w) {
                            0.3
                        } else {
                            0.0
                        }
                    },
                );
            }
            ToyTask::Classify { .. } => {
                if ideal.is_empty() {
                    return 0.0;
                }
                return single_token_score(
                    resp,
                    |w| w == ideal[0],
                    |w| {
                        if WordKind::from_singular(w).is_some() {
                            0.2
                        } else {
                            0.0
                        }
                    },
                );
            }
            _ => {}
        }
        if resp.len() == ideal.len() && resp.iter().zip(&ideal).all(|(a, b)| *a == b) {
            return 1.0;
        }
        if resp.is_empty() || ideal.is_empty() {
            return 0.0;
        }
        let ideal_refs: Vec<&str> = ideal.iter().map(String::as_str).collect();
        let d = levenshtein(resp, &ideal_refs) as f64;
        let m = resp.len().max(ideal.len()) as f64;
        return 0.85 * (1.0 - d / m);
    }
    match task {
        ToyTask::NameOne { word_kind, exclude } => single_token_score(
            resp,
            |w| w != exclude && word_kind.words().contains(&w),
            |w| {
                if w == exclude {
                    0.35
                } else if WordKind::of_word(w).is_some() {
                    0.15
                } else {
                    0.0
                }
            },
        ),
        ToyTask::List { word_kind, n } => {
            let mut seen = HashSet::new();
            let mut valid = 0usize;
            for w in resp {
                if word_kind.words().contains(w) && seen.insert(*w) {
                    valid += 1;
                }
            }
            let bad = resp.len() - valid;
            let surplus = valid.saturating_sub(*n);
            if valid == *n && bad == 0 {
                return 1.0;
            }
            let n = (*n).max(1) as f64;
            (0.85 * (valid.min(n as usize) as f64) / n - 0.1 * (bad + surplus) as f64)
                .clamp(0.0, 0.85)
        }
        ToyTask::Sentence { topic } => {
            let (prefix, complete) = grammar_prefix(resp);
            let has_topic = resp.iter().any(|w| w == topic);
            match (complete, has_topic) {
                (true, true) => 1.0,
                (true, false) => 0.55,
                _ => {
                    let denom = resp.len().max(5) as f64;
                    0.4 * prefix as f64 / denom + if has_topic { 0.3 } else { 0.0 }
                }
            }
        }
        _ => unreachable!("closed tasks are scored above"),
    }
}

/// Ways [`corrupt`] damages a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// Remove one token.
    Drop,
    /// Insert a random vocabulary token.
    Insert,
    /// Replace one token by a different random token.
    Substitute,
    /// Swap two adjacent, different tokens.
    Swap,
    /// Cut the response short.
    Truncate,
    /// Repeat one token.
    Repeat,
}

impl Corruption {
    /// All corruptions.
    pub const ALL: [Corruption; 6] = [
        Corruption::Drop,
        Corruption::Insert,
        Corruption::Substitute,
        Corruption::Swap,
        Corruption::Truncate,
        Corruption::Repeat,
    ];
}

fn junk_token<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    match rng.gen_range(0..5) {
        0 => LETTERS.choose(rng).expect("non-empty"),
        1 => DIGITS.choose(rng).expect("non-empty"),
        2 => PUNCTUATION.choose(rng).expect("non-empty"),
        3 => VERBS.choose(rng).expect("non-empty"),
        _ => {
            let words = Pool::Words.items();
            words[rng.gen_range(0..words.len())]
        }
    }
}

/// Applies one corruption to a response (whitespace-separated tokens). The result differs
/// from the input unless the corruption cannot apply (e.g. `Swap` on equal tokens), in which
/// case a token is inserted instead.
pub fn corrupt<R: Rng + ?Sized>(response: &str, how: Corruption, rng: &mut R) -> String {
    let mut toks: Vec<String> = tokens(response).into_iter().map(String::from).collect();
    let original = toks.clone();
    match how {
        Corruption::Drop if !toks.is_empty() => {
            let i = rng.gen_range(0..toks.len());
            toks.remove(i);
        }
        Corruption::Substitute if !toks.is_empty() => {
            let i = rng.gen_range(0..toks.len());
            loop {
                let t = junk_token(rng);
                if t != toks[i] {
                    toks[i] = t.to_string();
                    break;
                }
            }
        }
        Corruption::Swap => {
            let swappable: Vec<usize> = (0..toks.len().saturating_sub(1))
                .filter(|&i| toks[i] != toks[i + 1])
                .collect();
            if let Some(&i) = swappable.choose(rng) {
                toks.swap(i, i + 1);
            }
        }
        Corruption::Truncate if !toks.is_empty() => {
            let keep = rng.gen_range(0..toks.len());
            toks.truncate(keep);
        }
        Corruption::Repeat if !toks.is_empty() => {
            let i = rng.gen_range(0..toks.len());
            let t = toks[i].clone();
            toks.insert(i, t);
        }
        _ => {}
    }
    if toks == original {
        let i = rng.gen_range(0..=toks.len());
        toks.insert(i, junk_token(rng).to_string());
    }
    toks.join(" ")
}

/// Applies `n` random corruptions.
pub fn corrupt_n<R: Rng + ?Sized>(response: &str, n: usize, rng: &mut R) -> String {
    let mut out = response.to_string();
    for _ in 0..n {
        let how = *Corruption::ALL.choose(rng).expect("non-empty");
        out = corrupt(&out, how, rng);
    }
    out
}

/// Samples `k` **distinct** candidate responses to a task, as a simulated policy of mixed
/// quality would: fully correct answers (about 30%), correct answers with 1-3 corruptions
/// (45%), well-formed answers to a different task (15%) and random tokens (10%).
///
/// This is the reference distribution the labelers are calibrated on.
pub fn sample_candidates<R: Rng + ?Sized>(task: &ToyTask, k: usize, rng: &mut R) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(k);
    let mut attempts = 0;
    while out.len() < k {
        attempts += 1;
        let cand = if attempts > 50 * k {
            // Fallback that always terminates: random token strings grow with attempts.
            let len = 1 + attempts / (50 * k);
            (0..len)
                .map(|_| junk_token(rng))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            let u: f64 = rng.gen();
            if u < 0.30 {
                task.reference_response(rng)
            } else if u < 0.75 {
                let n = rng.gen_range(1..=3);
                corrupt_n(&task.reference_response(rng), n, rng)
            } else if u < 0.90 {
                let other = ToyTask::random(*TaskKind::ALL.choose(rng).expect("non-empty"), rng, 6);
                other.reference_response(rng)
            } else {
                let len = rng.gen_range(1..=6);
                (0..len)
                    .map(|_| junk_token(rng))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        if seen.insert(cand.clone()) {
            out.push(cand);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_known_values() {
        assert_eq!(levenshtein::<&str>(&[], &[]), 0);
        assert_eq!(levenshtein(&["a"], &[]), 1);
        assert_eq!(levenshtein(&["a", "b", "c"], &["a", "b", "c"]), 0);
        assert_eq!(levenshtein(&["a", "b", "c"], &["a", "c"]), 1);
        assert_eq!(levenshtein(&["a", "b"], &["b", "a"]), 2);
        assert_eq!(levenshtein(&["k", "i", "t"], &["s", "i", "t", "s"]), 2);
    }

    #[test]
    fn grammar_prefix_follows_the_automaton() {
        let g = |s: &str| grammar_prefix(&tokens(s));
        assert_eq!(g("the cat sees the dog ."), (6, true));
        assert_eq!(g("the big red"), (2, false));
        assert_eq!(g("the red fox eats the small plum ."), (8, true));
        assert_eq!(g("the fox sees the dog"), (5, false));
        assert_eq!(g("fox"), (0, false));
        assert_eq!(g("the cat sees the dog . ."), (6, false));
        assert_eq!(g(""), (0, false));
    }

    #[test]
    fn format_bonus_is_bounded_and_orders_junk() {
        let task = ToyTask::Reverse {
            items: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(format_bonus(&task, &[]), 0.0);
        assert!((format_bonus(&task, &["c", "a", "b"]) - 0.1).abs() < 1e-12);
        assert!(format_bonus(&task, &["x", "y", "z"]) < format_bonus(&task, &["c", "y", "z"]));
        assert!(format_bonus(&task, &["x"]) < format_bonus(&task, &["x", "y", "z"]));
    }

    #[test]
    fn positions_index_safely() {
        assert_eq!(Position::Third.index(2), None);
        assert_eq!(Position::Last.index(0), None);
        assert_eq!(Position::Last.index(4), Some(3));
        assert_eq!(Position::Second.index(2), Some(1));
    }
}
