//! Reading the stage binaries' inputs with clear errors.

use anyhow::Context;
use rlhf_data::records::{read_jsonl, read_text_documents, Mode, ReadOptions, Record, TextSplit};
use std::path::Path;

/// Reads a JSONL file of records. Strict mode stops at the first bad line (the error names the
/// file, line and field); lenient mode skips bad lines and prints how many and why.
pub fn read_records<R: Record>(path: &Path, lenient: bool) -> anyhow::Result<Vec<R>> {
    if !path.exists() {
        anyhow::bail!("{}: no such file", path.display());
    }
    let opts = ReadOptions {
        mode: if lenient { Mode::Lenient } else { Mode::Strict },
        ..Default::default()
    };
    let (records, report) = read_jsonl::<R>(path, &opts)?;
    if !report.is_clean() {
        tracing::warn!("warning: {}: {report}", path.display());
    }
    if records.is_empty() {
        anyhow::bail!("{}: no records", path.display());
    }
    Ok(records)
}

/// Reads pretraining text: JSONL `{id, user_id, text}` records (`.jsonl`), or a plain text file
/// where blank lines separate documents.
pub fn read_texts(path: &Path, lenient: bool) -> anyhow::Result<Vec<String>> {
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let texts: Vec<String> = if is_jsonl {
        read_records::<rlhf_data::records::PretrainText>(path, lenient)?
            .into_iter()
            .map(|r| r.text)
            .collect()
    } else {
        read_text_documents(path, TextSplit::Paragraphs)
            .with_context(|| format!("reading {}", path.display()))?
            .into_iter()
            .map(|r| r.text)
            .collect()
    };
    if texts.is_empty() {
        anyhow::bail!("{}: no documents", path.display());
    }
    Ok(texts)
}
