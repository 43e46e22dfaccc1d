//! Toy tasks: generation, prompt rendering and parsing, ideal responses, the gold score,
//! corruptions, and a simulated policy's candidate responses.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::vocab::{adjectives, nouns, Pool, WordKind, DIGITS, LETTERS, PUNCTUATION, VERBS};
use rlhf_data::error::{Error, Result};

mod corrupt;
mod render;
mod score;
mod templates;

pub use corrupt::*;
pub use render::*;
pub use score::*;
pub use templates::*;

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
