//! # rlhf-data
//!
//! The data half of InstructGPT-style RLHF, without any dependency on LibTorch:
//!
//! * [`records`] — the record kinds (prompts, demonstrations, K-wise rankings, pretraining
//!   text), their JSONL format with line-accurate validation errors, a streaming reader with
//!   strict and lenient modes, and an atomic writer.
//! * [`hygiene`] — the paper's dataset hygiene: prompt dedup (exact after normalization and
//!   long shared prefixes), PII scrubbing with a report, a per-user cap (default 200), and a
//!   deterministic train/valid/test split **by user id**.
//! * [`collate`] — tokenization with an HF `tokenizer.json`, truncation, padding, attention
//!   and loss masks, reward-model grouping and pretraining packing, as plain row-major
//!   buffers (`Vec<i64>` / `Vec<f32>` with explicit shapes) that trainers turn into tensors.
//! * [`chat`] — chat templates (the Jinja `chat_template` of Hugging Face checkpoints),
//!   rendered as `transformers`' `apply_chat_template` does; a [`collate::Collator`] can render
//!   every prompt through one.
//!
//! The toy world built on these (tasks, users, demonstrators, labelers) is the `rlhf-toy`
//! crate.
//!
//! Errors are one [`Error`] enum; a bad JSONL line is a [`RecordError`] whose message names
//! the file, the line, the field and what was expected.

#![warn(missing_docs)]

pub mod chat;
pub mod collate;
pub mod error;
pub mod hygiene;
pub mod records;
pub mod seed;

pub use error::{Error, FieldProblem, Problem, RecordError, Result, SkipReason};
