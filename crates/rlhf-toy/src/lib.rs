//! The toy world: a small synthetic language, instruction tasks a tiny model can learn,
//! synthetic users, labeler demonstrations, a pretraining corpus, simulated labelers and a
//! word-level tokenizer.
//!
//! * Tasks ([`ToyTask`], [`TaskKind`]) stand for the paper's prompt categories
//!   ([`Category`]): generation (`sentence`, `continue`), open QA (`name_one`), brainstorming
//!   (`list`), rewrite (`reverse`, `sort`, `replace`), summarization (`summarize`),
//!   classification (`classify`), extraction (`pick`, `extract`) and closed QA (`count`).
//!   Each is phrased in plain, few-shot or instruction style ([`Style`]); prompts stay within
//!   [`TOY_MAX_PROMPT_TOKENS`] tokens and ideal responses within [`TOY_MAX_RESPONSE_TOKENS`].
//! * [`gold_score`] scores any response in `[0, 1]` with partial credit; only a fully correct
//!   response scores 1. The task of any prompt the world made is recoverable from its text
//!   ([`ToyTask::from_prompt`]).
//! * [`ToyWorld::generate`] makes users with a heavy-tailed number of prompts, demonstrations
//!   (mostly right: a fraction `demo_error_rate` carries one mistake), held-out users, and a
//!   pretraining corpus in the same language, whose solved tasks are written by the same kind
//!   of people as the demonstrations, habits included ([`ToyConfig::pretrain_habits`]).
//! * [`LabelerPool`] simulates labelers calibrated to the paper's ~73% agreement.
//! * [`toy_tokenizer`] is the HF tokenizer of the language; `<|endoftext|>` is EOS and pad.
//!
//! ```
//! use rlhf_toy::{gold_score, ToyConfig, ToyTask, ToyWorld};
//! let world = ToyWorld::generate(&ToyConfig { num_users: 20, heldout_users: 5, pretrain_docs: 10,
//!     heldout_pretrain_docs: 2, ..ToyConfig::default() }).unwrap();
//! let p = &world.prompts[0];
//! let task = ToyTask::from_prompt(&p.prompt).unwrap();
//! assert_eq!(gold_score(&task, &task.canonical_response()), 1.0);
//! ```

#![warn(missing_docs)]

mod conduct;
pub mod eval;
mod labeler;
pub mod rm;
mod task;
mod vocab;
mod world;

pub use conduct::{
    conduct_words, with_habits, without_habits, Constraint, Judgement, ToyPrompt,
    ANSWER_ONLY_PREFIX, BROKEN_CONSTRAINT_PENALTY, FILLERS, FILLER_PENALTY, SIGNOFFS,
    SIGN_OFF_PENALTY,
};
pub use labeler::{
    expected_agreement, gold_pairs, noise_ceiling, reference_samples, AgreementMeasurement,
    Labeler, LabelerConfig, LabelerPool, PAPER_AGREEMENT,
};
pub use task::{
    corrupt, corrupt_n, gold_score, random_sentence, sample_candidates, template_words, Category,
    Corruption, Position, Style, TaskKind, ToyTask, TOY_MAX_PROMPT_TOKENS, TOY_MAX_RESPONSE_TOKENS,
};
pub use vocab::{
    save_toy_tokenizer, toy_tokenizer, toy_tokenizer_json, toy_vocab, Pool, WordKind, ANIMALS,
    COLORS, DIGITS, FRUITS, LETTERS, TOY_EOS, TOY_EOS_ID, TOY_UNK, TOY_UNK_ID, VERBS,
};
pub use world::{simulate_rankings, HabitConfig, StyleWeights, ToyConfig, ToyWorld};
