//! pipe: NDJSON (layout and deDot as for `file`) written to something that already exists: a FIFO
//! another process reads, a character device, `/dev/stdout`, `/proc/self/fd/N`, a file.
//!
//! Unlike resmoio (`O_CREATE|O_TRUNC`), the path is never created or truncated: `check-config` and
//! the start fail if it does not exist or is not writable, and a regular file is appended to (use
//! the `file` receiver for files). It is opened at the first send, not at start:
//!
//! - a FIFO is opened without blocking. With no reader yet the open fails (ENXIO): the batch is
//!   retried with the worker's backoff until a reader appears, instead of the exporter hanging in
//!   `open`. A reader that goes away (EPIPE) is handled the same way: the FIFO is opened again and
//!   the batch written whole to the next reader. A slow reader slows the receiver down (and, once
//!   its queue is full, the source): nothing is dropped;
//! - anything else is opened for appending and written like `file`.
//!
//! A batch interrupted part-way on a FIFO that is still open (the worker's timeout, a reader too
//! slow to take it) is continued where it stopped, so the reader never sees a torn or repeated
//! line from it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::{Doc, SendError, Sink, stdout::ndjson};
use crate::config::yaml::{Ctx, Fields};

/// `receivers[].pipe`.
#[derive(Debug, Clone, PartialEq)]
pub struct PipeConfig {
    pub path: PathBuf,
    pub encoding: Encoding,
}

impl ReceiverKind for PipeConfig {
    const NAME: &'static str = "pipe";
    const CONCURRENCY: Concurrency = Concurrency::Serial("it writes to one pipe, in order");
    const KEYS: &'static [&'static str] = &["path", "deDot", "layout"];

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let path = ctx.opt_string(f, "path");
        if path.is_none() {
            ctx.error(&f.path("path"), f.line, "is required");
        }
        let encoding = Encoding::parse(ctx, f, true);
        Some(PipeConfig {
            path: PathBuf::from(path?),
            encoding: encoding?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// Looks at the path (exists, writable); opens nothing, so a FIFO's reader sees no open or
    /// close.
    fn check(&self, _: &BuildEnv) -> Vec<Problem> {
        check_existing_writable(&self.path)
            .err()
            .map(|why| ("path", why))
            .into_iter()
            .collect()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        check_existing_writable(&self.path).map_err(|why| vec![("path", why)])?;
        Ok(Box::new(PipeSink::new(env.receiver, &self.path)))
    }
}

/// Whether `path` exists and this process may write to it, found without opening it.
pub fn check_existing_writable(path: &Path) -> Result<(), String> {
    let cannot = |why: String| format!("cannot write {}: {why}", path.display());
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(cannot("it is a directory".into())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(cannot(
                "it does not exist (pipe never creates it: make the FIFO with mkfifo first, or \
                 use the file receiver for files)"
                    .into(),
            ));
        }
        Err(e) => return Err(cannot(e.to_string())),
    }
    writable(path).map_err(|e| cannot(e.to_string()))
}

/// faccessat(W_OK) with the effective ids, as `open` will check them.
fn writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in the path"))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; faccessat only reads it.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

enum Out {
    Fifo(pipe::Sender),
    Other(File),
}

pub struct PipeSink {
    receiver: String,
    path: PathBuf,
    out: Option<Out>,
    /// The bytes being written and how many of them are out; `written < buf.len()` only while a
    /// batch is interrupted part-way on a FIFO that is still open.
    buf: Vec<u8>,
    written: usize,
    /// The batch `buf` holds: (first key, last key, length).
    batch: Option<(String, String, usize)>,
    /// Whether the last attempt failed, so the next open is logged.
    failing: bool,
}

fn transient(reason: String) -> SendError {
    SendError::Transient {
        reason,
        retry_after: None,
    }
}

fn identity(batch: &[Doc]) -> Option<(String, String, usize)> {
    Some((
        batch.first()?.key.to_string(),
        batch.last()?.key.to_string(),
        batch.len(),
    ))
}

impl PipeSink {
    pub fn new(receiver: &str, path: &Path) -> Self {
        Self {
            receiver: receiver.to_owned(),
            path: path.to_path_buf(),
            out: None,
            buf: Vec::new(),
            written: 0,
            batch: None,
            failing: false,
        }
    }

    fn open(&self) -> Result<Out, SendError> {
        let is_fifo = std::fs::metadata(&self.path).map(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_fifo()
        });
        let out = match is_fifo {
            Ok(true) => pipe::OpenOptions::new()
                .open_sender(&self.path)
                .map(Out::Fifo)
                .map_err(|e| {
                    if e.raw_os_error() == Some(libc::ENXIO) {
                        transient(format!(
                            "no process has the FIFO {} open for reading yet (ENXIO); waiting for a reader",
                            self.path.display()
                        ))
                    } else {
                        transient(format!("opening {}: {e}", self.path.display()))
                    }
                })?,
            Ok(false) => std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map(Out::Other)
                .map_err(|e| transient(format!("opening {}: {e}", self.path.display())))?,
            Err(e) => return Err(transient(format!("{}: {e}", self.path.display()))),
        };
        if self.failing {
            tracing::info!(receiver = %self.receiver, path = %self.path.display(), "pipe: opened again");
        }
        Ok(out)
    }

    async fn send_batch(&mut self, batch: &[Doc]) -> Result<(), SendError> {
        let id = identity(batch);
        if self.written > 0 && self.batch == id {
            // The same batch again after an interruption: continue where it stopped.
        } else if self.written > 0 {
            // Another batch (the worker gave up on the interrupted one): finish the torn line
            // first, then the new batch.
            self.buf.drain(..self.written);
            self.written = 0;
            let mut next = Vec::new();
            ndjson(&mut next, batch);
            self.buf.extend_from_slice(&next);
            self.batch = id;
        } else {
            ndjson(&mut self.buf, batch);
            self.batch = id;
        }
        if self.out.is_none() {
            self.out = Some(self.open()?);
        }
        // The output stays in `self` while written to: a send abandoned at an await (the
        // worker's timeout) keeps the FIFO open, so its reader sees no end of file, and
        // `written` says exactly what went out.
        let Self {
            out, buf, written, ..
        } = self;
        let result = match out.as_mut().expect("opened above") {
            Out::Fifo(sender) => loop {
                if *written == buf.len() {
                    break Ok(());
                }
                match sender.write(&buf[*written..]).await {
                    Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => *written += n,
                    Err(e) => break Err(e),
                }
            },
            Out::Other(file) => loop {
                if *written == buf.len() {
                    break file.flush();
                }
                match file.write(&buf[*written..]) {
                    Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            },
        };
        match result {
            Ok(()) => {
                self.written = 0;
                self.batch = None;
                self.failing = false;
                Ok(())
            }
            Err(e) => {
                // The reader that took part of the batch is gone (or the device failed): the next
                // one gets the whole batch.
                self.out = None;
                self.written = 0;
                self.failing = true;
                let why = if e.kind() == std::io::ErrorKind::BrokenPipe {
                    "the reader closed the pipe".to_owned()
                } else {
                    e.to_string()
                };
                Err(transient(format!("writing {}: {why}", self.path.display())))
            }
        }
    }
}

impl Sink for PipeSink {
    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let r = self.send_batch(batch).await;
            if r.is_err() {
                self.failing = true;
            }
            r
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;

    use crate::event::{Event, Occurrence};

    fn docs(range: std::ops::Range<usize>, pad: usize) -> Vec<Doc> {
        range
            .map(|i| {
                let occ = Arc::new(Occurrence::new(
                    serde_json::from_value::<Event>(serde_json::json!({
                        "metadata": {"uid": format!("u{i}")}, "count": 1,
                        "message": "x".repeat(pad),
                    }))
                    .unwrap(),
                ));
                Doc {
                    key: occ.key.clone(),
                    body: occ.json().clone(),
                    occ,
                }
            })
            .collect()
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo");
        assert!(status.success());
    }

    /// Keys of the lines a reader thread got from `path`, until the writer closes it.
    fn reader(path: PathBuf) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let f = File::open(&path).unwrap();
            BufReader::new(f)
                .lines()
                .map(|l| {
                    let e: Event = serde_json::from_str(&l.unwrap()).expect("a whole line");
                    e.occurrence_key()
                })
                .collect()
        })
    }

    #[test]
    fn check_needs_an_existing_writable_path_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("events.fifo");
        let why = check_existing_writable(&missing).unwrap_err();
        assert!(
            why.contains("does not exist") && why.contains("mkfifo"),
            "{why}"
        );
        assert!(!missing.exists());
        assert!(
            check_existing_writable(dir.path())
                .unwrap_err()
                .contains("directory")
        );
        mkfifo(&missing);
        // No reader: the check must neither block nor fail (it does not open the FIFO).
        check_existing_writable(&missing).unwrap();
        check_existing_writable(Path::new("/dev/null")).unwrap();
    }

    #[tokio::test]
    async fn a_fifo_without_a_reader_is_a_transient_error_then_a_reader_gets_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.fifo");
        mkfifo(&path);
        let mut sink = PipeSink::new("p", &path);
        let batch = docs(0..5, 10);
        match sink.send(&batch).await {
            Err(SendError::Transient { reason, .. }) => {
                assert!(reason.contains("ENXIO"), "{reason}")
            }
            other => panic!("expected a transient ENXIO, got {other:?}"),
        }
        let got = reader(path.clone());
        // The reader's open may come a moment later: retry as the worker would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.send(&batch).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "no reader appeared");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        sink.send(&docs(5..8, 10)).await.unwrap();
        drop(sink);
        let keys = got.join().unwrap();
        let want: Vec<String> = (0..8).map(|i| format!("u{i}:1")).collect();
        assert_eq!(keys, want);
    }

    #[tokio::test]
    async fn a_batch_interrupted_on_a_full_fifo_is_continued_not_torn_or_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.fifo");
        mkfifo(&path);
        // Open the read end (non-blocking, so no thread is needed yet) but read nothing: the
        // pipe's 64 KiB buffer fills and the write waits.
        let rx = pipe::OpenOptions::new().open_receiver(&path).unwrap();
        let mut sink = PipeSink::new("p", &path);
        let batch = docs(0..40, 4000); // about 160 KB
        let first = tokio::time::timeout(std::time::Duration::from_millis(200), sink.send(&batch));
        assert!(first.await.is_err(), "the write should wait for the reader");
        assert!(sink.written > 0 && sink.written < sink.buf.len());
        // Now read everything while the same batch is sent again, then a second batch.
        let reading = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut rx = rx;
            let mut all = Vec::new();
            rx.read_to_end(&mut all).await.unwrap();
            all
        });
        sink.send(&batch).await.unwrap();
        sink.send(&docs(40..42, 10)).await.unwrap();
        drop(sink);
        let all = reading.await.unwrap();
        let keys: Vec<String> = String::from_utf8(all)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Event>(l)
                    .expect("whole lines only")
                    .occurrence_key()
            })
            .collect();
        let want: Vec<String> = (0..42).map(|i| format!("u{i}:1")).collect();
        assert_eq!(keys, want);
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_is_transient_and_the_next_reader_gets_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.fifo");
        mkfifo(&path);
        let rx = pipe::OpenOptions::new().open_receiver(&path).unwrap();
        let mut sink = PipeSink::new("p", &path);
        sink.send(&docs(0..1, 10)).await.unwrap();
        drop(rx);
        match sink.send(&docs(1..3, 10)).await {
            Err(SendError::Transient { reason, .. }) => {
                assert!(reason.contains("closed the pipe"), "{reason}")
            }
            other => panic!("expected a transient EPIPE, got {other:?}"),
        }
        let got = reader(path.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.send(&docs(1..3, 10)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "no reader appeared");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        drop(sink);
        assert_eq!(got.join().unwrap(), ["u1:1", "u2:1"]);
    }

    #[tokio::test]
    async fn a_regular_file_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "{\"kept\":true}\n").unwrap();
        let mut sink = PipeSink::new("p", &path);
        sink.send(&docs(0..2, 1)).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with("{\"kept\":true}\n"));
    }
}
