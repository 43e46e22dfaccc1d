//! Reading the stage binaries' inputs with clear errors.

use anyhow::Context;
use rlhf_data::records::{read_jsonl, read_text_documents, Mode, ReadOptions, Record, TextSplit};
use std::path::{Path, PathBuf};

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

/// Reads records from several JSONL files (as [`read_records`] each), keeping ids unique across
/// them, as they are within a file: a record repeated in two files would count twice. Strict
/// mode stops at the first repeated id, naming both files; lenient mode skips the later copy
/// and reports how many were skipped.
pub fn read_records_from<R: Record>(paths: &[PathBuf], lenient: bool) -> anyhow::Result<Vec<R>> {
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let mut skipped = 0usize;
        for r in read_records::<R>(path, lenient)? {
            // Ids are unique within a file (read_jsonl refuses or skips a repeat), so an id
            // seen before comes from an earlier file.
            if let Some(&first) = seen.get(r.id()) {
                if !lenient {
                    anyhow::bail!(
                        "{}: id {:?} is also in {}: expected ids unique across the files (the \
                         record would count twice); remove one copy, or set lenient = true to \
                         skip the later ones",
                        path.display(),
                        r.id(),
                        paths[first].display()
                    );
                }
                skipped += 1;
                continue;
            }
            seen.insert(r.id().to_string(), i);
            out.push(r);
        }
        if skipped > 0 {
            tracing::warn!(
                "warning: {}: skipped {skipped} records whose id an earlier file has",
                path.display()
            );
        }
    }
    Ok(out)
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
