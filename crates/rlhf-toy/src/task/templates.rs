//! Prompt templates: how each task kind is worded in each style, compiled once.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
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
pub(super) enum Piece {
    Lit(&'static str),
    Slot(Slot),
}

pub(super) fn compile(template: &'static str) -> Vec<Piece> {
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

pub(super) struct Compiled {
    pub(super) kind: TaskKind,
    pub(super) plain: Vec<Piece>,
    pub(super) instruction: Vec<Piece>,
}

pub(super) static TEMPLATES: LazyLock<Vec<Compiled>> = LazyLock::new(|| {
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

pub(super) type Captures<'a> = Vec<(Slot, &'a [&'a str])>;

pub(super) fn match_pieces<'a>(
    pieces: &[Piece],
    toks: &'a [&'a str],
    caps: &mut Captures<'a>,
) -> bool {
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

pub(super) fn cap<'a>(caps: &Captures<'a>, slot: Slot) -> Option<&'a [&'a str]> {
    caps.iter().find(|(s, _)| *s == slot).map(|(_, v)| *v)
}

pub(super) fn cap1<'a>(caps: &Captures<'a>, slot: Slot) -> Option<&'a str> {
    cap(caps, slot).and_then(|v| v.first().copied())
}

pub(super) fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(super) fn all_items(items: &[&str]) -> bool {
    !items.is_empty() && items.iter().all(|i| Pool::of_item(i).is_some())
}

pub(super) fn build(kind: TaskKind, caps: &Captures<'_>) -> Option<ToyTask> {
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
