//! Conduct: what labelers judge besides correctness, and the habits of the people who write
//! demonstrations.
//!
//! InstructGPT's labelers rated, besides overall quality, whether an answer follows the
//! explicit constraints of the instruction and is appropriate; its demonstrations were written by
//! people with habits. The toy world reproduces that mechanism, which is what lets RL beat
//! supervised fine-tuning: **what labelers prefer is not what demonstrators reliably do, and it
//! is easy to judge from the text.**
//!
//! * A prompt may carry an explicit constraint ([`Constraint::AnswerOnly`], rendered as the
//!   prefix `answer only :`): the answer and nothing else.
//! * Demonstrators have persistent habits: opening with a filler phrase ([`FILLERS`], e.g.
//!   `sure`) and closing with a sign-off ([`SIGNOFFS`], e.g. `hope this helps`). Some of them
//!   ignore the constraint at times (see `crate::HabitConfig`).
//! * Labelers dislike both habits, and an answer that breaks an explicit constraint most:
//!   [`ToyPrompt::judge`] scores a response as its correctness ([`super::gold_score`] of the
//!   response without the habit words) minus [`FILLER_PENALTY`], [`SIGN_OFF_PENALTY`] and
//!   [`BROKEN_CONSTRAINT_PENALTY`] where they apply. Without habits and constraints the gold
//!   is the correctness, exactly (the correctness-only world).
//!
//! A supervised model imitates the demonstrators, habits included; a reward model learns from
//! rankings that habit words cost, which is easy to see in the text; PPO then drops them.

use serde::{Deserialize, Serialize};

use super::task::{gold_score, Style, ToyTask};
use rlhf_data::error::Result;

/// Filler phrases a demonstrator may open with.
pub const FILLERS: [&[&str]; 4] = [
    &["sure"],
    &["okay", "so"],
    &["well"],
    &["great", "question"],
];
/// Sign-off phrases a demonstrator may close with.
pub const SIGNOFFS: [&[&str]; 3] = [
    &["hope", "this", "helps"],
    &["thanks", "for", "asking"],
    &["cheers"],
];
/// The rendering of [`Constraint::AnswerOnly`]: a prefix of the prompt.
pub const ANSWER_ONLY_PREFIX: [&str; 3] = ["answer", "only", ":"];

/// Gold-score cost of a filler phrase.
pub const FILLER_PENALTY: f64 = 0.3;
/// Gold-score cost of a sign-off.
pub const SIGN_OFF_PENALTY: f64 = 0.3;
/// Further cost of a habit in an answer to a prompt that asked for the answer only.
pub const BROKEN_CONSTRAINT_PENALTY: f64 = 0.4;

fn is_filler_word(w: &str) -> bool {
    FILLERS.iter().any(|p| p.contains(&w))
}

fn is_sign_off_word(w: &str) -> bool {
    SIGNOFFS.iter().any(|p| p.contains(&w))
}

/// Every word of the conduct vocabulary (habit phrases and the constraint prefix), for the
/// tokenizer. None of them occurs in a task or in a correct answer.
pub fn conduct_words() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for w in FILLERS
        .iter()
        .chain(SIGNOFFS.iter())
        .flat_map(|p| p.iter().copied())
        .chain(ANSWER_ONLY_PREFIX)
    {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// An explicit constraint a prompt may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// `answer only :` — the answer, with no filler and no sign-off.
    AnswerOnly,
}

/// Splits a constraint prefix off prompt tokens.
pub(crate) fn strip_constraint<'a, 'b>(toks: &'b [&'a str]) -> (Option<Constraint>, &'b [&'a str]) {
    if toks.starts_with(&ANSWER_ONLY_PREFIX) {
        (
            Some(Constraint::AnswerOnly),
            &toks[ANSWER_ONLY_PREFIX.len()..],
        )
    } else {
        (None, toks)
    }
}

/// A toy-world prompt: its task, style and constraint, all recoverable from the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToyPrompt {
    /// The task asked.
    pub task: ToyTask,
    /// How it is phrased.
    pub style: Style,
    /// The explicit constraint, if any.
    pub constraint: Option<Constraint>,
}

/// How a labeler sees a response: its correctness, its habits and the resulting gold score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// [`gold_score`] of the response with the habit words removed (in `[0, 1]`).
    pub correctness: f64,
    /// The response contains filler words.
    pub filler: bool,
    /// The response contains sign-off words.
    pub sign_off: bool,
    /// The prompt asked for the answer only and the response has filler or a sign-off.
    pub broke_constraint: bool,
    /// `correctness` minus the penalties that apply (in `[-1, 1]`).
    pub gold: f64,
}

impl ToyPrompt {
    /// Parses a prompt made by the toy world (any style, with or without a constraint).
    pub fn parse(prompt: &str) -> Result<ToyPrompt> {
        let toks: Vec<&str> = prompt.split_whitespace().collect();
        let (constraint, _) = strip_constraint(&toks);
        let (task, style) = ToyTask::parse_prompt(prompt)?;
        Ok(ToyPrompt {
            task,
            style,
            constraint,
        })
    }

    /// A prompt without a constraint.
    pub fn plain(task: ToyTask, style: Style) -> ToyPrompt {
        ToyPrompt {
            task,
            style,
            constraint: None,
        }
    }

    /// Renders the prompt text (`examples` are used by few-shot prompts only).
    pub fn render(&self, examples: &[ToyTask]) -> String {
        let body = self.task.render(self.style, examples);
        match self.constraint {
            Some(Constraint::AnswerOnly) => format!("{} {body}", ANSWER_ONLY_PREFIX.join(" ")),
            None => body,
        }
    }

    /// Judges a response (see the module docs).
    pub fn judge(&self, response: &str) -> Judgement {
        let toks: Vec<&str> = response.split_whitespace().collect();
        let filler = toks.iter().any(|w| is_filler_word(w));
        let sign_off = toks.iter().any(|w| is_sign_off_word(w));
        let correctness = gold_score(&self.task, &without_habits(response));
        let broke_constraint =
            self.constraint == Some(Constraint::AnswerOnly) && (filler || sign_off);
        let mut gold = correctness;
        if filler {
            gold -= FILLER_PENALTY;
        }
        if sign_off {
            gold -= SIGN_OFF_PENALTY;
        }
        if broke_constraint {
            gold -= BROKEN_CONSTRAINT_PENALTY;
        }
        Judgement {
            correctness,
            filler,
            sign_off,
            broke_constraint,
            gold,
        }
    }

    /// The gold score of a response: [`ToyPrompt::judge`]'s `gold`.
    pub fn gold(&self, response: &str) -> f64 {
        self.judge(response).gold
    }
}

/// The response with every filler and sign-off word deleted: what correctness is judged on,
/// and the same answer with perfect conduct.
pub fn without_habits(response: &str) -> String {
    response
        .split_whitespace()
        .filter(|w| !is_filler_word(w) && !is_sign_off_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wraps an answer in a filler phrase and/or a sign-off.
pub fn with_habits(answer: &str, filler: Option<usize>, sign_off: Option<usize>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(i) = filler {
        parts.extend(FILLERS[i % FILLERS.len()]);
    }
    parts.extend(answer.split_whitespace());
    if let Some(i) = sign_off {
        parts.extend(SIGNOFFS[i % SIGNOFFS.len()]);
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reverse_abc(constraint: Option<Constraint>) -> ToyPrompt {
        ToyPrompt {
            task: ToyTask::Reverse {
                items: vec!["a".into(), "b".into(), "c".into()],
            },
            style: Style::Plain,
            constraint,
        }
    }

    #[test]
    fn habits_cost_and_a_broken_constraint_costs_more() {
        let free = reverse_abc(None);
        let only = reverse_abc(Some(Constraint::AnswerOnly));
        assert_eq!(free.gold("c b a"), 1.0);
        assert_eq!(only.gold("c b a"), 1.0);
        let j = free.judge("sure c b a hope this helps");
        assert!(j.filler && j.sign_off && !j.broke_constraint);
        assert_eq!(j.correctness, 1.0);
        assert!((j.gold - (1.0 - FILLER_PENALTY - SIGN_OFF_PENALTY)).abs() < 1e-12);
        let j = only.judge("well c b a");
        assert!(j.filler && !j.sign_off && j.broke_constraint);
        assert!((j.gold - (1.0 - FILLER_PENALTY - BROKEN_CONSTRAINT_PENALTY)).abs() < 1e-12);
        // Correctness is judged without the habit words.
        assert_eq!(
            free.judge("okay so c a b").correctness,
            gold_score(&free.task, "c a b")
        );
        assert_eq!(
            without_habits("great question c b a thanks for asking"),
            "c b a"
        );
        let clean = free.judge(&without_habits("sure c b a cheers"));
        assert!(!clean.filler && !clean.sign_off && clean.gold == 1.0);
    }

    #[test]
    fn prompts_round_trip_with_and_without_constraint() {
        for c in [None, Some(Constraint::AnswerOnly)] {
            for style in [Style::Plain, Style::Instruction] {
                let p = ToyPrompt {
                    style,
                    ..reverse_abc(c)
                };
                let text = p.render(&[]);
                assert_eq!(ToyPrompt::parse(&text).unwrap(), p, "{text}");
                assert_eq!(ToyTask::from_prompt(&text).unwrap(), p.task);
            }
        }
    }

    #[test]
    fn habit_words_are_new_words() {
        let task_words = super::super::template_words();
        for w in conduct_words() {
            if w == ":" {
                continue;
            }
            assert!(!task_words.contains(&w), "{w} is a template word");
        }
        assert_eq!(
            with_habits("c b a", Some(1), Some(0)),
            "okay so c b a hope this helps"
        );
    }
}
