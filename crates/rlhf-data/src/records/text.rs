//! Plain-text pretraining files cut into documents.

use super::*;

/// How a plain-text file is cut into pretraining documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextSplit {
    /// The whole file is one document.
    WholeFile,
    /// Each non-blank line is a document.
    Lines,
    /// Blocks separated by blank lines are documents (their lines joined with `\n`).
    #[default]
    Paragraphs,
}

/// Reads a UTF-8 plain-text file as pretraining documents.
///
/// Documents get ids `FILE_NAME#N` (N from 0) and `user_id` = the file name, so splitting by
/// user keeps a file's documents together. Blank lines only separate documents; no
/// non-whitespace text is dropped. Invalid UTF-8 is an error naming the line.
pub fn read_text_documents(path: impl AsRef<Path>, split: TextSplit) -> Result<Vec<PretrainText>> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    read_text_documents_from(
        BufReader::new(file),
        &path.display().to_string(),
        &name,
        split,
    )
}

/// Like [`read_text_documents`] for any reader: `file` is used in errors, `user_id` for the
/// documents' `user_id` and id prefix.
pub fn read_text_documents_from<Rd: Read>(
    reader: Rd,
    file: &str,
    user_id: &str,
    split: TextSplit,
) -> Result<Vec<PretrainText>> {
    let mut reader = BufReader::new(reader);
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut line_bytes = Vec::new();
    let mut line_no = 0usize;
    let push = |docs: &mut Vec<PretrainText>, text: &mut String| {
        let trimmed = text.trim_end_matches(['\n', '\r']);
        if !is_blank(trimmed) {
            docs.push(PretrainText {
                id: format!("{user_id}#{}", docs.len()),
                user_id: user_id.to_string(),
                text: trimmed.to_string(),
            });
        }
        text.clear();
    };
    loop {
        line_bytes.clear();
        let n = reader
            .read_until(b'\n', &mut line_bytes)
            .map_err(|e| Error::io(file, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = std::str::from_utf8(&line_bytes).map_err(|e| {
            Error::Record(RecordError::new(
                file,
                line_no,
                FieldProblem::line(Problem::InvalidUtf8 {
                    byte: e.valid_up_to(),
                }),
            ))
        })?;
        let line = if line_no == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        match split {
            TextSplit::WholeFile => current.push_str(line),
            TextSplit::Lines => {
                current.push_str(line);
                push(&mut docs, &mut current);
            }
            TextSplit::Paragraphs => {
                if is_blank(line) {
                    push(&mut docs, &mut current);
                } else {
                    current.push_str(line.trim_end_matches(['\n', '\r']));
                    current.push('\n');
                }
            }
        }
    }
    push(&mut docs, &mut current);
    Ok(docs)
}
