//! file: NDJSON appended to `path`, rotated by size like lumberjack (the Go exporter's library):
//! before a write that would pass `maxsize` MB the file is renamed to
//! `<stem>-<UTC time>.<ext>` and a new one started; backups beyond `maxbackups` or older than
//! `maxage` days are removed.
//!
//! Writes are plain blocking `write` calls on purpose: a batch goes to the page cache in
//! microseconds, and an fsync per batch would cost more than the whole pipeline. The ack means "in
//! the OS", as for lumberjack; a host crash can lose what the kernel had not flushed.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::{Doc, SendError, Sink, SinkError};
use crate::config::yaml::{Ctx, Fields};

/// `receivers[].file`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    pub path: PathBuf,
    pub encoding: Encoding,
    /// Rotate when the file would exceed this many megabytes (resmoio/lumberjack default 100).
    pub max_size_mb: u64,
    /// Remove backups older than this many days; 0 keeps them regardless of age.
    pub max_age_days: u64,
    /// Keep at most this many backups; 0 keeps them all.
    pub max_backups: usize,
}

impl ReceiverKind for FileConfig {
    const NAME: &'static str = "file";
    const CONCURRENCY: Concurrency = Concurrency::Serial("it appends to one file, in order");
    const KEYS: &'static [&'static str] =
        &["path", "layout", "maxsize", "maxage", "maxbackups", "deDot"];

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let path = ctx.opt_string(f, "path");
        if path.is_none() {
            ctx.error(&f.path("path"), f.line, "is required");
        }
        let max_size_mb = ctx
            .int(f, "maxsize", 0, i64::MAX)
            .filter(|m| *m > 0)
            .unwrap_or(100) as u64;
        let max_age_days = ctx.int(f, "maxage", 0, i64::MAX).unwrap_or(0) as u64;
        let max_backups = ctx.int(f, "maxbackups", 0, i64::MAX).unwrap_or(0) as usize;
        let encoding = Encoding::parse(ctx, f, true);
        Some(FileConfig {
            path: PathBuf::from(path?),
            encoding: encoding?,
            max_size_mb,
            max_age_days,
            max_backups,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn check(&self, _: &BuildEnv) -> Vec<Problem> {
        check_writable(&self.path)
            .err()
            .map(|why| ("path", why))
            .into_iter()
            .collect()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        match FileSink::open(env.receiver, self) {
            Ok(sink) => Ok(Box::new(sink)),
            Err(SinkError::File { path, source, .. }) => {
                Err(vec![("path", format!("cannot write {path}: {source}"))])
            }
            Err(e) => Err(vec![("path", e.to_string())]),
        }
    }
}

pub struct FileSink {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_backups: usize,
    max_age: Option<Duration>,
}

fn open(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// Whether `path` can be appended to, found without creating or changing anything the receiver
/// owns: an existing file is opened for appending; otherwise its directory must exist and accept a
/// new file (a probe file, created and removed at once).
pub fn check_writable(path: &Path) -> Result<(), String> {
    let cannot = |why: String| format!("cannot write {}: {why}", path.display());
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(cannot("it is a directory".into())),
        Ok(_) => {
            return OpenOptions::new()
                .append(true)
                .open(path)
                .map(drop)
                .map_err(|e| cannot(e.to_string()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(cannot(e.to_string())),
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(cannot(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(cannot(format!(
                "directory {} does not exist",
                dir.display()
            )));
        }
        Err(e) => return Err(cannot(format!("directory {}: {e}", dir.display()))),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe = dir.join(format!(".{name}.check-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(cannot(format!(
            "cannot create a file in {}: {e}",
            dir.display()
        ))),
    }
}

impl FileSink {
    pub fn open(receiver: &str, cfg: &FileConfig) -> Result<Self, SinkError> {
        let (file, size) = open(&cfg.path).map_err(|source| SinkError::File {
            receiver: receiver.to_string(),
            path: cfg.path.display().to_string(),
            source,
        })?;
        Ok(Self {
            path: cfg.path.clone(),
            file,
            size,
            max_size: cfg.max_size_mb.max(1).saturating_mul(1024 * 1024),
            max_backups: cfg.max_backups,
            max_age: (cfg.max_age_days > 0).then(|| Duration::from_secs(cfg.max_age_days * 86_400)),
        })
    }

    #[cfg(test)]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    fn write_batch(&mut self, batch: &[Doc]) -> std::io::Result<()> {
        let len: u64 = batch.iter().map(|d| d.body.len() as u64 + 1).sum();
        // Rotate between whole lines only, so no line is ever split across files. A single batch
        // larger than the limit still goes to one file.
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        let written = write_lines(&mut self.file, batch).and_then(|()| self.file.flush());
        if let Err(e) = written {
            // Cut a partial batch off, so the retry does not leave a torn line or a duplicate.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H-%M-%S%.3f")
            .to_string();
        let backup = self.backup_name(&stamp);
        std::fs::rename(&self.path, &backup)?;
        let (file, size) = open(&self.path)?;
        self.file = file;
        self.size = size;
        self.prune();
        Ok(())
    }

    fn stem_ext(&self) -> (String, String) {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|s| format!(".{}", s.to_string_lossy()))
            .unwrap_or_default();
        (stem, ext)
    }

    fn backup_name(&self, stamp: &str) -> PathBuf {
        let (stem, ext) = self.stem_ext();
        let mut candidate = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        let mut n = 1;
        while candidate.exists() {
            candidate = self.path.with_file_name(format!("{stem}-{stamp}.{n}{ext}"));
            n += 1;
        }
        candidate
    }

    /// Removes backups beyond `maxbackups` (oldest first) and older than `maxage`. Failures are
    /// logged, never fatal: they cost disk, not events.
    fn prune(&self) {
        let (stem, ext) = self.stem_ext();
        let prefix = format!("{stem}-");
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut backups: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&prefix) && name.ends_with(&ext) && e.path() != self.path
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        backups.sort();
        let now = SystemTime::now();
        let excess = if self.max_backups > 0 {
            backups.len().saturating_sub(self.max_backups)
        } else {
            0
        };
        for (i, (modified, path)) in backups.iter().enumerate() {
            let too_old = self
                .max_age
                .is_some_and(|age| now.duration_since(*modified).unwrap_or_default() > age);
            if (i < excess || too_old)
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an old backup");
            }
        }
    }
}

/// Writes each document and a newline, in order, straight from the documents: one `writev` of up
/// to 1024 slices (Linux's IOV_MAX) at a time, not a copy of the batch into one buffer first.
fn write_lines(out: &mut impl Write, batch: &[Doc]) -> std::io::Result<()> {
    const DOCS_PER_WRITE: usize = 512;
    let mut slices = Vec::with_capacity(2 * batch.len().min(DOCS_PER_WRITE));
    for docs in batch.chunks(DOCS_PER_WRITE) {
        slices.clear();
        for d in docs {
            slices.push(IoSlice::new(&d.body));
            slices.push(IoSlice::new(b"\n"));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match out.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl Sink for FileSink {
    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            self.write_batch(batch).map_err(|e| SendError::Transient {
                reason: format!("writing {}: {e}", self.path.display()),
                retry_after: None,
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes from at most two slices per call, and is
    /// interrupted every third call, as a slow disk or a signal may leave a `writev`.
    struct Stingy {
        written: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let mut n = 0;
            for b in bufs.iter().take(2) {
                let take = b.len().min(self.max - n);
                self.written.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_document_is_written_whole_and_in_order_whatever_each_write_takes() {
        let batch = crate::sink::testing::docs(1100);
        let want: Vec<u8> = batch
            .iter()
            .flat_map(|d| d.body.iter().copied().chain([b'\n']))
            .collect();
        for max in [1, 7, 200, 1 << 20] {
            let mut out = Stingy {
                written: Vec::new(),
                max,
                calls: 0,
            };
            write_lines(&mut out, &batch).unwrap();
            assert!(out.written == want, "max {max}: the bytes differ");
        }
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = write_lines(&mut Full, &crate::sink::testing::docs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    }
}
