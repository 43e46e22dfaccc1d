//! A [`ToyTask`]: rendering and parsing its prompts, its ideal and reference responses, random tasks and sentences.

use super::*;

pub(super) fn tokens(s: &str) -> Vec<&str> {
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
    /// A leading constraint (`answer only :`, see [`crate::ToyPrompt`]) is skipped.
    pub fn parse_prompt(prompt: &str) -> Result<(ToyTask, Style)> {
        let all = tokens(prompt);
        let (_, toks) = crate::conduct::strip_constraint(&all);
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
