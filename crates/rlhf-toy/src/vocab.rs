//! The toy language's word pools and its word-level tokenizer.

use std::collections::HashSet;
use std::path::Path;

use tokenizers::Tokenizer;

use rlhf_data::error::{Error, Result};

/// The end-of-sequence token, also used for padding.
pub const TOY_EOS: &str = "<|endoftext|>";
/// The unknown-word token (never produced by the toy world).
pub const TOY_UNK: &str = "<unk>";

/// Letters used as list items.
pub const LETTERS: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z",
];
/// Digits used as list items and as counts.
pub const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
/// Animal words.
pub const ANIMALS: [&str; 8] = ["cat", "dog", "fox", "owl", "bee", "cow", "pig", "hen"];
/// Color words.
pub const COLORS: [&str; 8] = [
    "red", "blue", "green", "pink", "gray", "gold", "black", "white",
];
/// Fruit words.
pub const FRUITS: [&str; 8] = [
    "apple", "pear", "plum", "fig", "lime", "kiwi", "grape", "melon",
];
/// Adjectives of the sentence grammar besides the colors.
pub const PLAIN_ADJECTIVES: [&str; 3] = ["big", "small", "old"];
/// Verbs of the sentence grammar.
pub const VERBS: [&str; 6] = ["sees", "likes", "eats", "finds", "chases", "wants"];
/// Punctuation tokens.
pub const PUNCTUATION: [&str; 6] = [":", "=>", ";", ".", "?", ","];

/// Function words used by templates, facts and the grammar.
const FUNCTION_WORDS: &[&str] = &[
    "the",
    "a",
    "an",
    "is",
    "are",
    "of",
    "in",
    "with",
    "but",
    "or",
    "not",
    "that",
    "to",
    "copy",
    "reverse",
    "sort",
    "replace",
    "summarize",
    "continue",
    "count",
    "extract",
    "classify",
    "name",
    "list",
    "sentence",
    "about",
    "write",
    "order",
    "sorted",
    "instead",
    "without",
    "repeats",
    "what",
    "comes",
    "after",
    "how",
    "many",
    "times",
    "does",
    "appear",
    "which",
    "item",
    "different",
    "short",
    "animal",
    "color",
    "fruit",
    "animals",
    "colors",
    "fruits",
    "first",
    "second",
    "third",
    "last",
];

/// The three word kinds of the toy language.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WordKind {
    /// [`ANIMALS`].
    Animal,
    /// [`COLORS`].
    Color,
    /// [`FRUITS`].
    Fruit,
}

impl WordKind {
    /// All kinds.
    pub const ALL: [WordKind; 3] = [WordKind::Animal, WordKind::Color, WordKind::Fruit];

    /// The words of this kind.
    pub fn words(self) -> &'static [&'static str] {
        match self {
            WordKind::Animal => &ANIMALS,
            WordKind::Color => &COLORS,
            WordKind::Fruit => &FRUITS,
        }
    }

    /// The singular name (`animal`), which is also the classification label.
    pub fn singular(self) -> &'static str {
        match self {
            WordKind::Animal => "animal",
            WordKind::Color => "color",
            WordKind::Fruit => "fruit",
        }
    }

    /// The plural name (`animals`).
    pub fn plural(self) -> &'static str {
        match self {
            WordKind::Animal => "animals",
            WordKind::Color => "colors",
            WordKind::Fruit => "fruits",
        }
    }

    /// The kind named by a singular word.
    pub fn from_singular(s: &str) -> Option<WordKind> {
        WordKind::ALL.into_iter().find(|k| k.singular() == s)
    }

    /// The kind named by a plural word.
    pub fn from_plural(s: &str) -> Option<WordKind> {
        WordKind::ALL.into_iter().find(|k| k.plural() == s)
    }

    /// The kind of a word, if it is an animal, color or fruit.
    pub fn of_word(w: &str) -> Option<WordKind> {
        WordKind::ALL.into_iter().find(|k| k.words().contains(&w))
    }

    /// The indefinite article used before the singular name (`an animal`, `a color`).
    pub fn article(self) -> &'static str {
        match self {
            WordKind::Animal => "an",
            _ => "a",
        }
    }
}

/// A pool of list items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// `a`..`z`, ordered alphabetically.
    Letters,
    /// `0`..`9`, ordered numerically.
    Digits,
    /// The animal, color and fruit words.
    Words,
}

impl Pool {
    /// The items of the pool, in their order.
    pub fn items(self) -> Vec<&'static str> {
        match self {
            Pool::Letters => LETTERS.to_vec(),
            Pool::Digits => DIGITS.to_vec(),
            Pool::Words => ANIMALS
                .iter()
                .chain(COLORS.iter())
                .chain(FRUITS.iter())
                .copied()
                .collect(),
        }
    }

    /// The pool an item belongs to.
    pub fn of_item(item: &str) -> Option<Pool> {
        if LETTERS.contains(&item) {
            Some(Pool::Letters)
        } else if DIGITS.contains(&item) {
            Some(Pool::Digits)
        } else if WordKind::of_word(item).is_some() {
            Some(Pool::Words)
        } else {
            None
        }
    }

    /// The position of an item in an ordered pool (letters, digits).
    pub fn ordinal(item: &str) -> Option<(Pool, usize)> {
        if let Some(i) = LETTERS.iter().position(|&l| l == item) {
            Some((Pool::Letters, i))
        } else {
            DIGITS
                .iter()
                .position(|&d| d == item)
                .map(|i| (Pool::Digits, i))
        }
    }
}

/// Nouns of the sentence grammar (animals and fruits).
pub fn nouns() -> impl Iterator<Item = &'static str> {
    ANIMALS.iter().chain(FRUITS.iter()).copied()
}

/// Adjectives of the sentence grammar (plain adjectives and colors).
pub fn adjectives() -> impl Iterator<Item = &'static str> {
    PLAIN_ADJECTIVES.iter().chain(COLORS.iter()).copied()
}

/// The toy vocabulary in id order: `<|endoftext|>` (id 0), `<unk>` (id 1), then every word
/// the toy world can produce.
pub fn toy_vocab() -> Vec<&'static str> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let all = [TOY_EOS, TOY_UNK]
        .into_iter()
        .chain(PUNCTUATION)
        .chain(FUNCTION_WORDS.iter().copied())
        .chain(LETTERS)
        .chain(DIGITS)
        .chain(ANIMALS)
        .chain(COLORS)
        .chain(FRUITS)
        .chain(PLAIN_ADJECTIVES)
        .chain(VERBS)
        // Safety net: any template word missing above (none today) still gets an id.
        .chain(super::task::template_words())
        // Last, so the ids above stay those of the correctness-only world's tokenizer.
        .chain(super::conduct::conduct_words());
    for w in all {
        if seen.insert(w) {
            out.push(w);
        }
    }
    out
}

/// The id of `<|endoftext|>` in [`toy_tokenizer`] (EOS and pad).
pub const TOY_EOS_ID: u32 = 0;
/// The id of `<unk>` in [`toy_tokenizer`].
pub const TOY_UNK_ID: u32 = 1;

/// The `tokenizer.json` text of the toy tokenizer: a WordLevel model over [`toy_vocab`] with a
/// whitespace-split pre-tokenizer and `<|endoftext|>` as a special token.
pub fn toy_tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = toy_vocab()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::Value::from(i as u64)))
        .collect();
    let added = |id: u32, content: &str| {
        serde_json::json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        })
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(TOY_EOS_ID, TOY_EOS), added(TOY_UNK_ID, TOY_UNK)],
        "normalizer": null,
        "pre_tokenizer": { "type": "WhitespaceSplit" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": TOY_UNK }
    })
    .to_string()
}

/// The toy world's tokenizer (HF `tokenizers`, word level).
///
/// Every string the toy world produces is single-space-separated vocabulary words, so
/// `decode(encode(s)) == s`. `<|endoftext|>` (id [`TOY_EOS_ID`]) is both EOS and pad.
pub fn toy_tokenizer() -> Tokenizer {
    toy_tokenizer_json()
        .parse::<Tokenizer>()
        .expect("the built-in toy tokenizer JSON is valid")
}

/// Saves the toy tokenizer as `tokenizer.json` at `path` (atomically).
pub fn save_toy_tokenizer(path: impl AsRef<Path>) -> Result<()> {
    let tok = toy_tokenizer();
    let text = tok.to_string(true).map_err(Error::tokenizer)?;
    rlhf_data::records::write_atomic(path, text.as_bytes())
}
