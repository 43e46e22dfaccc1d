//! Atomic writes, the one implementation every rlhf crate uses, and the recovery of a
//! directory tree after a process writing into it was killed.
//!
//! Every temporary name has one shape, `.NAME.KIND-PID-N` beside the target `NAME` (`KIND`:
//! `tmp` for a file or directory being written, `old` for a directory moved aside while it is
//! replaced), so [`recover_interrupted_writes`] knows every temporary any writer can leave.
//! Names of earlier versions (`.NAME.tmp-PID`, `.NAME.building-PID`, `.NAME.old-PID`) are
//! recognized too.
//!
//! * [`AtomicFile`]: a streaming writer to a temporary file, renamed over the target on
//!   [`AtomicFile::commit`] (after an fsync) and removed if dropped before;
//! * [`write_atomic`]: a whole file at once;
//! * [`write_dir_atomic`]: a directory filled in a temporary sibling, then swapped in (the
//!   previous copy is moved aside first; [`moved_aside`] finds it after a crash between the
//!   two renames). An existing folder holding a name the new one lacks is never replaced.
//! * [`link_dir_atomic`]: such a directory of hard links to another's files;
//! * [`write_files_atomic`]: such a directory from `(name, bytes)` pairs. A large file whose
//!   bytes equal those of one it wrote earlier in the process (a LoRA run's frozen base
//!   weights, saved in every checkpoint) becomes a hard link to it instead of a second copy;
//!   [`write_contents_atomic`] the same with files that are made piece by piece
//!   ([`Streamed`]: a model's weights, never whole in memory).

#![warn(missing_docs)]

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// An IO error with the path it happened on.
#[derive(Debug)]
pub struct Error {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub source: std::io::Error,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

/// The message names `source` already, so it is not also returned by `source()` (error
/// reports, `anyhow`'s among them, would print it twice).
impl std::error::Error for Error {}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_path_buf(),
        source,
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The folder of `target` (`.` for a bare name) and its file name.
fn split(target: &Path) -> Result<(PathBuf, String)> {
    let name = target.file_name().ok_or_else(|| Error {
        path: target.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected a path that names a file or directory",
        ),
    })?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// A fresh temporary name of `kind` beside `target`: `.NAME.KIND-PID-N`.
pub fn temp_path(target: &Path, kind: TempKind) -> Result<PathBuf> {
    let (dir, name) = split(target)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(
        ".{name}.{}-{}-{n}",
        kind.as_str(),
        std::process::id()
    )))
}

/// What a temporary name is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempKind {
    /// A file or directory being written: garbage after a crash.
    Tmp,
    /// A directory's previous copy, moved aside while the new one is renamed in: the copy to
    /// restore if the new one never arrived.
    Old,
}

impl TempKind {
    fn as_str(self) -> &'static str {
        match self {
            TempKind::Tmp => "tmp",
            TempKind::Old => "old",
        }
    }
}

/// Whether `name` is a temporary name, and of what (`NAME`, kind). Accepts this crate's
/// `.NAME.KIND-PID-N` and the older `.NAME.KIND-PID` (with `building` as an older `tmp`).
pub fn temp_name(name: &str) -> Option<(&str, TempKind)> {
    let rest = name.strip_prefix('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (mut head, last) = rest.rsplit_once('-')?;
    if !digits(last) {
        return None;
    }
    // `.NAME.KIND-PID-N`: drop the PID too when the part before it ends in `-DIGITS`.
    if let Some((h, pid)) = head.rsplit_once('-') {
        if digits(pid) && [".tmp", ".old", ".building"].iter().any(|k| h.ends_with(k)) {
            head = h;
        }
    }
    for (kind, k) in [
        ("tmp", TempKind::Tmp),
        ("building", TempKind::Tmp),
        ("old", TempKind::Old),
    ] {
        if let Some(orig) = head.strip_suffix(&format!(".{kind}")) {
            if !orig.is_empty() {
                return Some((orig, k));
            }
        }
    }
    None
}

/// A temporary file next to `target`, renamed over it by [`AtomicFile::commit`] and removed
/// if dropped before that.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `target` (its folder must exist).
    pub fn create(target: &Path) -> Result<Self> {
        let tmp = temp_path(target, TempKind::Tmp)?;
        let file = File::create(&tmp).map_err(err(&tmp))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 16, file)),
        })
    }

    /// Where the bytes go until the commit.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.file.as_mut().expect("AtomicFile used after commit")
    }

    /// The temporary file's path (for error messages).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, fsyncs and renames the file into place (and fsyncs the folder, best effort).
    pub fn commit(mut self) -> Result<()> {
        let writer = self.file.take().expect("AtomicFile committed twice");
        let file = writer
            .into_inner()
            .map_err(|e| err(&self.tmp)(e.into_error()))?;
        file.sync_all().map_err(err(&self.tmp))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(err(&self.target))?;
        sync_parent(&self.target);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn sync_parent(target: &Path) {
    if let Ok((dir, _)) = split(target) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `bytes` to `path` atomically, creating its folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, _) = split(path)?;
    std::fs::create_dir_all(&dir).map_err(err(&dir))?;
    let mut f = AtomicFile::create(path)?;
    let tmp = f.tmp_path().to_path_buf();
    f.writer().write_all(bytes).map_err(err(&tmp))?;
    f.commit()
}

/// Builds the directory `dir` atomically: `fill` writes into a fresh temporary sibling, which
/// then replaces `dir` (an existing `dir` is moved aside first and removed after the swap).
/// If `fill` fails, the temporary is removed and `dir` is untouched.
///
/// An existing `dir` is replaced only when the new contents have every name it holds (an
/// earlier version of the same checkpoint, say): one that holds anything else (a user's
/// folder given by mistake) is an error, and is left as it was.
pub fn write_dir_atomic<E: From<Error>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let (parent, _) = split(dir)?;
    std::fs::create_dir_all(&parent).map_err(err(&parent))?;
    let tmp = temp_path(dir, TempKind::Tmp)?;
    std::fs::create_dir_all(&tmp).map_err(err(&tmp))?;
    if let Err(e) = fill(&tmp).and_then(|()| Ok(check_replaceable(dir, &tmp)?)) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = temp_path(dir, TempKind::Old)?;
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(err(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(err(dir))?;
    sync_parent(dir);
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Errors when `dir` exists and holds an entry that `new` (its replacement) does not.
fn check_replaceable(dir: &Path, new: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "is a file, not a folder: refusing to replace it (remove it, or choose \
                     another path)",
                ),
            })
        }
        Err(e) => return Err(err(dir)(e)),
    };
    for e in entries {
        let name = e.map_err(err(dir))?.file_name();
        if std::fs::symlink_metadata(new.join(&name)).is_err() {
            return Err(Error {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "holds {:?}, which the folder written in its place would not: \
                         refusing to replace it (remove it, or choose another path)",
                        name.to_string_lossy()
                    ),
                ),
            });
        }
    }
    Ok(())
}

/// Files at least this large written by [`write_files_atomic`] are remembered, and a later
/// file with the same bytes is hard-linked to one of them instead of written again.
pub const LINK_MIN_BYTES: usize = 1 << 20;

/// How many such files are remembered (the most recent ones).
const REMEMBERED: usize = 16;

/// Large files written by this process, the most recent first.
static WRITTEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// True when the file at `path` holds exactly `bytes`. Its last MiB is compared first (a
/// checkpoint whose trained tensors sort last, as a LoRA reward model's score head, differs
/// there), then the whole file in chunks, stopping at the first difference.
fn holds(path: &Path, bytes: &[u8]) -> bool {
    use std::io::{Seek, SeekFrom};
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == bytes.len() as u64 => {}
        _ => return false,
    }
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 20];
    let tail = bytes.len().min(buf.len());
    let from = bytes.len() - tail;
    if f.seek(SeekFrom::Start(from as u64)).is_err()
        || f.read_exact(&mut buf[..tail]).is_err()
        || buf[..tail] != bytes[from..]
        || f.seek(SeekFrom::Start(0)).is_err()
    {
        return false;
    }
    let mut at = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return at == bytes.len(),
            Ok(n) if at + n <= bytes.len() && buf[..n] == bytes[at..at + n] => at += n,
            _ => return false,
        }
    }
}

/// A file's contents made piece by piece, so that a large file (a model's weights) is never
/// whole in memory: [`Streamed::stream`] hands the bytes to a sink in order, as often as it is
/// called, the same bytes each time.
pub trait Streamed {
    /// The file's length in bytes.
    fn len(&self) -> u64;

    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the file's bytes to `sink`, in order, in pieces of any size; stops at the sink's
    /// first error and returns it.
    fn stream(&self, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>;
}

/// The contents of one file of [`write_contents_atomic`].
pub enum Contents<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// Bytes made piece by piece while the file is written (or compared).
    Streamed(&'a dyn Streamed),
}

impl Contents<'_> {
    fn len(&self) -> u64 {
        match self {
            Contents::Bytes(b) => b.len() as u64,
            Contents::Streamed(s) => s.len(),
        }
    }
}

/// True when the file at `path` holds exactly what `s` streams; stops at the first
/// difference.
fn holds_streamed(path: &Path, s: &dyn Streamed) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == s.len() => {}
        _ => return false,
    }
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut f = std::io::BufReader::with_capacity(1 << 20, f);
    let mut buf = Vec::new();
    let same = s.stream(&mut |piece| {
        buf.resize(piece.len(), 0);
        f.read_exact(&mut buf)?;
        match buf[..] == *piece {
            true => Ok(()),
            false => Err(std::io::Error::other("differs")),
        }
    });
    same.is_ok()
}

/// Writes `contents` as `path` (a new file), or hard-links it to a remembered file with the
/// same bytes.
fn write_or_link(path: &Path, contents: &Contents) -> Result<()> {
    if contents.len() >= LINK_MIN_BYTES as u64 {
        let known = WRITTEN.lock().map(|w| w.clone()).unwrap_or_default();
        for src in known {
            let same = match contents {
                Contents::Bytes(b) => holds(&src, b),
                Contents::Streamed(s) => holds_streamed(&src, *s),
            };
            if same && std::fs::hard_link(&src, path).is_ok() {
                return Ok(());
            }
        }
    }
    let f = File::create(path).map_err(err(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    match contents {
        Contents::Bytes(b) => w.write_all(b),
        Contents::Streamed(s) => s.stream(&mut |piece| w.write_all(piece)),
    }
    .map_err(err(path))?;
    let f = w.into_inner().map_err(|e| err(path)(e.into_error()))?;
    f.sync_all().map_err(err(path))
}

/// The files `(name, bytes)` as the directory `dir`, atomically (see [`write_dir_atomic`]).
///
/// A file of at least [`LINK_MIN_BYTES`] whose bytes equal those of a file this function wrote
/// earlier in the process (one of the last 16, where it still is) is hard-linked to it rather
/// than written: a LoRA run saves its frozen base weights in every checkpoint, and they then
/// take the disk (and the time) of one copy. The comparison is byte for byte; writes always
/// make new files (never rewrite one in place), so the linked names cannot diverge through
/// this crate. Where linking fails (another file system), the file is written.
pub fn write_files_atomic(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let contents: Vec<(&str, Contents)> = files
        .iter()
        .map(|(name, bytes)| (*name, Contents::Bytes(bytes)))
        .collect();
    write_contents_atomic(dir, &contents)
}

/// [`write_files_atomic`] with files that may be [`Contents::Streamed`]: such a file is written
/// (or compared with a remembered file before it is linked) piece by piece, so it is never
/// whole in memory.
pub fn write_contents_atomic(dir: &Path, files: &[(&str, Contents)]) -> Result<()> {
    write_dir_atomic(dir, |tmp| {
        for (name, contents) in files {
            write_or_link(&tmp.join(name), contents)?;
        }
        Ok::<(), Error>(())
    })?;
    let big = files
        .iter()
        .filter(|(_, c)| c.len() >= LINK_MIN_BYTES as u64);
    let big: Vec<PathBuf> = big.map(|(name, _)| dir.join(name)).collect();
    if !big.is_empty() {
        if let Ok(mut w) = WRITTEN.lock() {
            w.retain(|p| !big.contains(p));
            for p in big.into_iter().rev() {
                w.insert(0, p);
            }
            w.truncate(REMEMBERED);
        }
    }
    Ok(())
}

/// `dst` as a copy of the directory `src` (its files; not recursive), made of hard links to
/// `src`'s files (copies where linking fails), atomically (see [`write_dir_atomic`]). For
/// directories whose files are never rewritten in place, as every checkpoint written here:
/// `dst` then costs no disk and stays valid when `src` is removed.
pub fn link_dir_atomic(src: &Path, dst: &Path) -> Result<()> {
    let entries = std::fs::read_dir(src).map_err(err(src))?;
    let mut files = vec![];
    for e in entries {
        let e = e.map_err(err(src))?;
        if e.file_type().map_err(err(&e.path()))?.is_file() {
            files.push((e.path(), e.file_name()));
        }
    }
    write_dir_atomic(dst, |tmp| {
        for (path, name) in &files {
            let to = tmp.join(name);
            if std::fs::hard_link(path, &to).is_err() {
                std::fs::copy(path, &to).map_err(err(path))?;
            }
        }
        Ok::<(), Error>(())
    })
}

/// The previous copy of `dir` that [`write_dir_atomic`] moved aside, when a crash came
/// between its two renames (`dir` is then missing). `complete` says whether a candidate is a
/// whole copy (e.g. has its config file).
pub fn moved_aside(dir: &Path, complete: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let (parent, name) = split(dir).ok()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            temp_name(&n) == Some((name.as_str(), TempKind::Old))
        })
        .map(|e| e.path())
        .filter(|p| complete(p))
        .collect();
    found.sort();
    found.pop()
}

/// Repairs a directory tree after a process writing into it was killed (SIGKILL, power loss)
/// in the middle of an atomic write: removes temporary files and half-built directories, and
/// puts back a directory that was moved aside while being replaced when the new copy never
/// arrived (else removes it). Returns the paths it removed or restored. Only for a tree that
/// no other process is writing to.
pub fn recover_interrupted_writes(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut fixed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(fixed);
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let remove = |p: &Path| -> Result<()> {
        if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        }
        .map_err(err(p))
    };
    // Temporaries first, so that a moved-aside copy is judged against what is really there.
    let mut olds = Vec::new();
    for p in &entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref().and_then(temp_name) {
            Some((_, TempKind::Old)) => olds.push(p.clone()),
            Some((_, TempKind::Tmp)) => {
                remove(p)?;
                fixed.push(p.clone());
            }
            None => {}
        }
    }
    for p in olds {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let (orig, _) = temp_name(&name).expect("an old-copy name");
        let target = dir.join(orig);
        if target.exists() {
            remove(&p)?;
        } else {
            std::fs::rename(&p, &target).map_err(err(&target))?;
        }
        fixed.push(p);
    }
    for p in entries {
        if p.is_dir()
            && !p
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
        {
            fixed.extend(recover_interrupted_writes(&p)?);
        }
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_old_and_new() {
        assert_eq!(temp_name(".state.tmp-123"), Some(("state", TempKind::Tmp)));
        assert_eq!(
            temp_name(".metrics.jsonl.tmp-9-4"),
            Some(("metrics.jsonl", TempKind::Tmp))
        );
        assert_eq!(
            temp_name("..latest.building-42"),
            Some((".latest", TempKind::Tmp))
        );
        assert_eq!(
            temp_name(".policy.old-7-0"),
            Some(("policy", TempKind::Old))
        );
        assert_eq!(temp_name(".policy.old-7"), Some(("policy", TempKind::Old)));
        assert_eq!(
            temp_name(".epoch-1.old-7"),
            Some(("epoch-1", TempKind::Old))
        );
        assert_eq!(
            temp_name("..latest.building-42.tmp-42"),
            Some((".latest.building-42", TempKind::Tmp))
        );
        for bad in [
            "state",
            "epoch-1",
            ".hidden",
            ".x.tmp-",
            ".x.tmp-1a",
            "..tmp-1",
            ".tmp-1",
            "x.tmp-1",
            ".notes-2024",
            ".a.b-1-2",
        ] {
            assert_eq!(temp_name(bad), None, "{bad}");
        }
        let p = temp_path(Path::new("run/rankings.jsonl"), TempKind::Tmp).unwrap();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            temp_name(&n),
            Some(("rankings.jsonl", TempKind::Tmp)),
            "{n}"
        );
    }

    #[test]
    fn files_and_dirs_are_written_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/a.json");
        write_atomic(&f, b"1").unwrap();
        write_atomic(&f, b"2").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"2");
        // A dropped AtomicFile leaves the target and no temporary.
        let mut w = AtomicFile::create(&f).unwrap();
        w.writer().write_all(b"3").unwrap();
        drop(w);
        assert_eq!(std::fs::read(&f).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(d.path().join("sub")).unwrap().count(), 1);
        let dir = d.path().join("ckpt");
        write_files_atomic(&dir, &[("x", b"1".to_vec())]).unwrap();
        let failed: std::result::Result<(), Error> = write_dir_atomic(&dir, |tmp| {
            std::fs::write(tmp.join("x"), "half").unwrap();
            Err(err(tmp)(std::io::Error::other("boom")))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"1");
        write_files_atomic(&dir, &[("x", b"2".to_vec())]).unwrap();
        assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"2");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            2,
            "no temporaries left"
        );
    }

    #[test]
    fn a_folder_with_other_contents_is_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("mine");
        std::fs::create_dir_all(dir.join("photos")).unwrap();
        std::fs::write(dir.join("notes.txt"), "keep").unwrap();
        std::fs::write(dir.join("x"), "old").unwrap();
        let e = write_files_atomic(&dir, &[("x", b"1".to_vec())]).unwrap_err();
        assert!(e.to_string().contains("refusing to replace it"), "{e}");
        assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"keep");
        assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "{e}");
        // With the same names (an earlier copy of the same checkpoint), or more, it is.
        std::fs::remove_dir(dir.join("photos")).unwrap();
        let new = [("x", b"1".to_vec()), ("notes.txt", b"new".to_vec())];
        write_files_atomic(&dir, &new).unwrap();
        assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"new");
        write_files_atomic(&dir, &[new[0].clone(), ("y", b"2".to_vec())]).unwrap_err();
        // A file in the way is not replaced by a folder.
        let file = d.path().join("file");
        std::fs::write(&file, "text").unwrap();
        let e = write_files_atomic(&file, &[("x", b"1".to_vec())]).unwrap_err();
        assert!(e.to_string().contains("is a file"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"text");
    }

    #[test]
    fn recovery_removes_temporaries_and_restores_moved_aside_copies() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("ckpt/.value.tmp-3-1")).unwrap();
        std::fs::write(p.join(".rankings.jsonl.tmp-11-0"), "x").unwrap();
        std::fs::write(p.join(".metrics.jsonl.tmp-11"), "x").unwrap();
        std::fs::create_dir_all(p.join(".policy.old-5-2")).unwrap();
        std::fs::write(p.join(".policy.old-5-2/config.json"), "{}").unwrap();
        std::fs::create_dir_all(p.join("value")).unwrap();
        std::fs::create_dir_all(p.join(".value.old-5-3")).unwrap();
        std::fs::write(p.join(".keep-me"), "x").unwrap();
        assert_eq!(
            moved_aside(&p.join("policy"), |c| c.join("config.json").exists()),
            Some(p.join(".policy.old-5-2"))
        );
        let fixed = recover_interrupted_writes(p).unwrap();
        assert_eq!(fixed.len(), 5, "{fixed:?}");
        assert!(p.join("policy/config.json").exists(), "restored");
        assert!(
            !p.join(".value.old-5-3").exists(),
            "the new copy exists: removed"
        );
        assert!(p.join(".keep-me").exists());
        assert!(!p.join(".rankings.jsonl.tmp-11-0").exists());
    }

    #[test]
    fn identical_large_files_become_hard_links() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        let big: Vec<u8> = (0..LINK_MIN_BYTES + 7).map(|i| (i % 251) as u8).collect();
        let mut other = big.clone();
        *other.last_mut().unwrap() ^= 1; // same length, differs in its last byte
        let mut head = big.clone();
        head[0] ^= 1; // same length and last MiB, differs in its first byte
        let small = b"config".to_vec();
        let write = |name: &str, weights: &Vec<u8>| {
            let files = [
                ("model.bin", weights.clone()),
                ("config.json", small.clone()),
            ];
            write_files_atomic(&d.path().join(name), &files).unwrap();
        };
        write("epoch-1", &big);
        write("epoch-2", &big);
        write("epoch-3", &other);
        write("head", &head);
        let p = |dir: &str, f: &str| d.path().join(dir).join(f);
        assert_ne!(ino(p("epoch-1", "model.bin")), ino(p("head", "model.bin")));
        assert_eq!(std::fs::read(p("head", "model.bin")).unwrap(), head);
        assert_eq!(
            ino(p("epoch-1", "model.bin")),
            ino(p("epoch-2", "model.bin"))
        );
        assert_ne!(
            ino(p("epoch-2", "model.bin")),
            ino(p("epoch-3", "model.bin"))
        );
        // Small files are always written.
        assert_ne!(
            ino(p("epoch-1", "config.json")),
            ino(p("epoch-2", "config.json"))
        );
        assert_eq!(std::fs::read(p("epoch-3", "model.bin")).unwrap(), other);
        // Replacing a directory keeps the other names' bytes: epoch-1 gets new weights,
        // epoch-2 still holds the old ones.
        write("epoch-1", &other);
        assert_eq!(std::fs::read(p("epoch-1", "model.bin")).unwrap(), other);
        assert_eq!(std::fs::read(p("epoch-2", "model.bin")).unwrap(), big);
        // A remembered file that was removed is not linked to (and nothing fails).
        std::fs::remove_dir_all(d.path().join("epoch-2")).unwrap();
        write("epoch-4", &big);
        assert_eq!(std::fs::read(p("epoch-4", "model.bin")).unwrap(), big);
    }

    /// Bytes streamed in pieces of 1,000.
    struct Pieces(Vec<u8>);

    impl Streamed for Pieces {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn stream(
            &self,
            sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
        ) -> std::io::Result<()> {
            self.0.chunks(1000).try_for_each(sink)
        }
    }

    #[test]
    fn streamed_files_are_written_and_linked_as_bytes_are() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        let big: Vec<u8> = (0..LINK_MIN_BYTES + 7).map(|i| (i % 253) as u8).collect();
        let mut other = big.clone();
        other[LINK_MIN_BYTES / 2] ^= 1; // same length, differs in the middle
        let write = |name: &str, weights: &Vec<u8>| {
            let s = Pieces(weights.clone());
            let files = [
                ("model.bin", Contents::Streamed(&s)),
                ("config.json", Contents::Bytes(b"config")),
            ];
            write_contents_atomic(&d.path().join(name), &files).unwrap();
        };
        write("a", &big);
        write("b", &big);
        write("c", &other);
        let p = |dir: &str, f: &str| d.path().join(dir).join(f);
        assert_eq!(std::fs::read(p("a", "model.bin")).unwrap(), big);
        assert_eq!(std::fs::read(p("c", "model.bin")).unwrap(), other);
        assert_eq!(std::fs::read(p("a", "config.json")).unwrap(), b"config");
        assert_eq!(ino(p("a", "model.bin")), ino(p("b", "model.bin")));
        assert_ne!(ino(p("b", "model.bin")), ino(p("c", "model.bin")));
        // A file written from bytes is linked to by an equal streamed one, and back.
        write_files_atomic(&d.path().join("d"), &[("model.bin", other.clone())]).unwrap();
        assert_eq!(ino(p("c", "model.bin")), ino(p("d", "model.bin")));
        write("e", &other);
        assert_eq!(ino(p("d", "model.bin")), ino(p("e", "model.bin")));
    }

    #[test]
    fn linked_directories_share_the_files_and_survive_the_source() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("iter-2/policy"), d.path().join("final"));
        write_files_atomic(&src, &[("a", b"1".to_vec()), ("b", b"22".to_vec())]).unwrap();
        link_dir_atomic(&src, &dst).unwrap();
        let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(src.join("a")), ino(dst.join("a")));
        // Replaced atomically by a later link; the source's removal leaves the copy whole.
        write_files_atomic(&src, &[("a", b"3".to_vec()), ("b", b"4".to_vec())]).unwrap();
        link_dir_atomic(&src, &dst).unwrap();
        std::fs::remove_dir_all(d.path().join("iter-2")).unwrap();
        assert_eq!(std::fs::read(dst.join("a")).unwrap(), b"3");
        assert_eq!(std::fs::read(dst.join("b")).unwrap(), b"4");
        assert!(link_dir_atomic(&d.path().join("nothing"), &dst).is_err());
        assert_eq!(std::fs::read(dst.join("a")).unwrap(), b"3");
        // A copy without one of dst's files would lose it: refused, dst as it was.
        let other = d.path().join("other");
        write_files_atomic(&other, &[("a", b"5".to_vec())]).unwrap();
        assert!(link_dir_atomic(&other, &dst).is_err());
        assert_eq!(std::fs::read(dst.join("b")).unwrap(), b"4");
    }
}
