//! Writing JSONL atomically: [`JsonlWriter`], [`write_jsonl`].

use super::*;

use rlhf_io::AtomicFile;

/// Writes `bytes` to `path` atomically (temp file in the same directory + rename; see
/// `rlhf_io`).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    Ok(rlhf_io::write_atomic(path.as_ref(), bytes)?)
}

/// A streaming, atomic JSONL writer: records go to a temporary file that replaces the target
/// only on [`JsonlWriter::finish`]. Dropping the writer without finishing leaves the target
/// untouched and removes the temporary file.
pub struct JsonlWriter<R> {
    file: AtomicFile,
    count: usize,
    _kind: PhantomData<fn(&R)>,
}

impl<R: Record> JsonlWriter<R> {
    /// Starts writing to `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonlWriter {
            file: AtomicFile::create(path.as_ref())?,
            count: 0,
            _kind: PhantomData,
        })
    }

    /// Validates and writes one record.
    pub fn write(&mut self, record: &R) -> Result<()> {
        record.validate().map_err(|problem| Error::InvalidRecord {
            index: self.count,
            id: record.id().to_string(),
            problem,
        })?;
        let tmp = self.file.tmp_path().to_path_buf();
        let w = self.file.writer();
        serde_json::to_writer(&mut *w, record)
            .map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
        w.write_all(b"\n").map_err(|e| Error::io(&tmp, e))?;
        self.count += 1;
        Ok(())
    }

    /// The number of records written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Flushes, syncs and renames the file into place; returns the number of records.
    pub fn finish(self) -> Result<usize> {
        let count = self.count;
        self.file.commit()?;
        Ok(count)
    }
}

/// Writes records to `path` as JSONL, atomically; returns how many were written.
///
/// Each record is validated first; an invalid one aborts the write (the target is unchanged)
/// with [`Error::InvalidRecord`].
pub fn write_jsonl<'a, R: Record + 'a>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a R>,
) -> Result<usize> {
    let mut w = JsonlWriter::create(path)?;
    for r in records {
        w.write(r)?;
    }
    w.finish()
}
