//! Newline-delimited watch frames, read with a size limit: a peer (or a proxy) that never sends a
//! newline must not grow our memory without bound. An over-long line is skipped to its end and
//! reported, like any other malformed frame.

use std::pin::Pin;
use std::time::Duration;

use futures::{AsyncBufRead, AsyncBufReadExt, FutureExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Far above any real frame: etcd refuses objects over 1.5 MiB.
pub const MAX_LINE: usize = 16 << 20;

#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    /// Borrowed from the reader's buffer, reused for every line (no allocation per frame).
    Text(&'a str),
    /// Longer than the limit: skipped, `bytes` long.
    TooLong { bytes: usize },
    /// Not UTF-8 (JSON must be).
    NotUtf8 { bytes: usize },
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    /// Bytes of `inner`'s buffer the last line was borrowed from, consumed on the next read.
    lent: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max,
            lent: 0,
        }
    }

    /// The next line without its newline; None at the end of the stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.inner.consume_unpin(std::mem::take(&mut self.lent));
        // A whole line in the reader's buffer (an API server writes a frame and its newline
        // in one chunk) is lent from there, not copied.
        let whole = newline(self.inner.fill_buf().await?).filter(|i| *i <= self.max);
        if let Some(i) = whole {
            self.lent = i + 1;
            // The buffer is still filled: this returns at once, with the same bytes.
            let available = self.inner.fill_buf().await?;
            return Ok(Some(text(&available[..i])));
        }
        self.buf.clear();
        let mut too_long: Option<usize> = None;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if self.buf.is_empty() && too_long.is_none() {
                    return Ok(None);
                }
                break;
            }
            let (chunk, used, end) = match newline(available) {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            match too_long.as_mut() {
                Some(skipped) => *skipped += chunk.len(),
                None if self.buf.len() + chunk.len() > self.max => {
                    too_long = Some(self.buf.len() + chunk.len());
                    // Give the memory back: a normal line needs far less.
                    self.buf = Vec::new();
                }
                None => self.buf.extend_from_slice(chunk),
            }
            self.inner.consume_unpin(used);
            if end {
                break;
            }
        }
        if let Some(bytes) = too_long {
            return Ok(Some(Line::TooLong { bytes }));
        }
        Ok(Some(text(&self.buf)))
    }
}

fn text(bytes: &[u8]) -> Line<'_> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::NotUtf8 { bytes: bytes.len() },
    }
}

/// What [`Bounded::next`] read.
#[derive(Debug)]
pub enum Next<'a> {
    Line(Line<'a>),
    /// The stream ended.
    End,
    Failed(std::io::Error),
    /// No line came for the whole idle limit.
    Silent,
    Cancelled,
}

/// A [`LineReader`] whose reads give up when `cancel` fires or no line comes for `idle`.
///
/// A line already in the buffer (many are: a network read can bring several) is returned without
/// waiting. Otherwise the wait uses a timer and a cancellation waiter made once per reader, not
/// per wait: a live watch brings about one frame per read, and a `timeout` and a `cancelled()`
/// made per frame cost a clock read, a timer entry and waiter-list updates each time, about 2.5%
/// of the exporter's CPU in the profile. The timer is lazy: it is not moved as lines come; when
/// it fires before the current wait's end (lines came since it was set), it is moved there.
pub struct Bounded<R> {
    lines: LineReader<R>,
    cancel: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<R: AsyncBufRead + Unpin> Bounded<R> {
    pub fn new(lines: LineReader<R>, cancel: &CancellationToken, idle: Duration) -> Self {
        Self {
            lines,
            cancel: cancel.clone(),
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// The next line, or why there is none. A reader cancelled before the call returns
    /// `Cancelled` even with a line ready; one cancelled while it waits returns `Cancelled`
    /// unless a line comes at the same moment.
    pub async fn next(&mut self) -> Next<'_> {
        if self.cancel.is_cancelled() {
            return Next::Cancelled;
        }
        let mut line = std::pin::pin!(self.lines.next_line());
        let read = match line.as_mut().now_or_never() {
            Some(read) => read,
            None => {
                let end = Instant::now() + self.idle;
                loop {
                    // The cancellation last: polling its waiter takes a lock, and when the
                    // line is what woke the task it is not polled at all.
                    tokio::select! {
                        biased;
                        read = line.as_mut() => break read,
                        () = self.timer.as_mut() => {
                            if Instant::now() >= end {
                                return Next::Silent;
                            }
                            self.timer.as_mut().reset(end);
                        }
                        _ = self.cancelled.as_mut() => return Next::Cancelled,
                    }
                }
            }
        };
        match read {
            Ok(Some(l)) => Next::Line(l),
            Ok(None) => Next::End,
            Err(e) => Next::Failed(e),
        }
    }
}

/// The index of the first `\n` in `bytes`: memchr's vectorised search (a frame is a kilobyte or
/// more, and a byte-by-byte search showed in the profile at about 3% of the exporter's CPU).
fn newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Owned {
        Text(String),
        TooLong { bytes: usize },
        NotUtf8 { bytes: usize },
    }

    async fn all(input: &[u8], max: usize, chunk: usize) -> Vec<Owned> {
        // A reader that hands out `chunk` bytes at a time, as a network stream does.
        let chunks: Vec<std::io::Result<Vec<u8>>> =
            input.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
        let stream = futures::stream::iter(chunks);
        let mut r = LineReader::new(futures::TryStreamExt::into_async_read(stream), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            out.push(match l {
                Line::Text(s) => Owned::Text(s.to_string()),
                Line::TooLong { bytes } => Owned::TooLong { bytes },
                Line::NotUtf8 { bytes } => Owned::NotUtf8 { bytes },
            });
        }
        out
    }

    fn text(s: &str) -> Owned {
        Owned::Text(s.to_string())
    }

    #[tokio::test]
    async fn splits_lines_across_chunks_and_keeps_a_last_partial_line() {
        for chunk in [1, 3, 64] {
            assert_eq!(
                all(b"ab\n\ncde\nf", 10, chunk).await,
                [text("ab"), text(""), text("cde"), text("f")]
            );
        }
    }

    #[tokio::test]
    async fn skips_an_over_long_line_and_goes_on() {
        for chunk in [1, 4, 100] {
            assert_eq!(
                all(b"ok\n0123456789abcdef\nnext\n", 8, chunk).await,
                [text("ok"), Owned::TooLong { bytes: 16 }, text("next")]
            );
        }
    }

    #[tokio::test]
    async fn an_endless_line_is_bounded() {
        let endless = vec![b'x'; 1 << 16];
        assert_eq!(
            all(&endless, 1024, 4096).await,
            [Owned::TooLong { bytes: 1 << 16 }]
        );
    }

    #[test]
    fn newline_is_found_in_every_position_of_and_across_blocks() {
        for len in 0..100 {
            let mut bytes = vec![b'x'; len];
            assert_eq!(newline(&bytes), None, "{len}");
            for at in 0..len {
                bytes[at] = b'\n';
                assert_eq!(newline(&bytes), Some(at), "{len} {at}");
                if at + 3 < len {
                    bytes[at + 3] = b'\n';
                    assert_eq!(newline(&bytes), Some(at), "{len} {at} (two)");
                    bytes[at + 3] = b'x';
                }
                bytes[at] = b'x';
            }
        }
    }

    fn text_of(next: Next<'_>) -> String {
        match next {
            Next::Line(Line::Text(s)) => s.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_returns_lines_then_goes_silent_or_stops() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<std::io::Result<Vec<u8>>>();
        let cancel = CancellationToken::new();
        let idle = Duration::from_secs(5);
        let lines = LineReader::new(futures::TryStreamExt::into_async_read(rx), 100);
        let mut r = Bounded::new(lines, &cancel, idle);
        tx.unbounded_send(Ok(b"a\nb\n".to_vec())).unwrap();
        for want in ["a", "b"] {
            assert_eq!(text_of(r.next().await), want);
        }
        // A line that comes after 4 s: the timer, set for 5 s after the reader was made, has
        // not fired.
        let send_later = |after: u64, bytes: &'static [u8]| {
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(after)).await;
                tx.unbounded_send(Ok(bytes.to_vec())).unwrap();
            }
        };
        let (got, ()) = tokio::join!(r.next(), send_later(4, b"c\n"));
        assert_eq!(text_of(got), "c");
        // Nothing more comes: silent after the whole idle limit from the start of this wait,
        // though the timer first fires 1 s into it.
        let started = Instant::now();
        assert!(matches!(r.next().await, Next::Silent));
        assert_eq!(started.elapsed(), idle);
        // A line split across reads arrives while waiting.
        tx.unbounded_send(Ok(b"d".to_vec())).unwrap();
        let (got, ()) = tokio::join!(r.next(), send_later(1, b"e\n"));
        assert_eq!(text_of(got), "de");
        // Cancelled while waiting, then with a line ready: Cancelled both times.
        let stop = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        };
        let (got, ()) = tokio::join!(r.next(), stop);
        assert!(matches!(got, Next::Cancelled), "{got:?}");
        tx.unbounded_send(Ok(b"f\n".to_vec())).unwrap();
        assert!(matches!(r.next().await, Next::Cancelled));
        drop(tx);
    }

    #[tokio::test]
    async fn bounded_reports_the_end_and_read_errors() {
        let chunks: Vec<std::io::Result<Vec<u8>>> = vec![
            Ok(b"a\n".to_vec()),
            Err(std::io::Error::other("reset by peer")),
        ];
        let stream = futures::TryStreamExt::into_async_read(futures::stream::iter(chunks));
        let cancel = CancellationToken::new();
        let mut r = Bounded::new(
            LineReader::new(stream, 100),
            &cancel,
            Duration::from_secs(5),
        );
        assert_eq!(text_of(r.next().await), "a");
        assert!(matches!(r.next().await, Next::Failed(e) if e.to_string() == "reset by peer"));
        let stream = futures::TryStreamExt::into_async_read(futures::stream::iter(Vec::<
            std::io::Result<Vec<u8>>,
        >::new(
        )));
        let mut r = Bounded::new(
            LineReader::new(stream, 100),
            &cancel,
            Duration::from_secs(5),
        );
        assert!(matches!(r.next().await, Next::End));
    }

    #[tokio::test]
    async fn reports_invalid_utf8() {
        assert_eq!(
            all(b"\xff\xfe\nok\n", 10, 2).await,
            [Owned::NotUtf8 { bytes: 2 }, text("ok")]
        );
    }
}
