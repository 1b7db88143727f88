//! Newline-delimited watch frames, read with a size limit: a peer (or a proxy) that never sends a
//! newline must not grow our memory without bound. An over-long line is skipped to its end and
//! reported, like any other malformed frame.

use std::time::Duration;

use futures::{AsyncBufRead, AsyncBufReadExt, FutureExt};
use tokio::time::error::Elapsed;
use tokio_util::sync::CancellationToken;

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
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max,
        }
    }

    /// `next_line` bounded by `idle` and `cancel`: None if cancelled (checked first, as a
    /// biased select does), `Err(Elapsed)` if no line came within `idle`. A line already in
    /// the buffer (most are: a network read brings many) is returned without arming a timer
    /// or registering for the cancellation, which cost a clock read, a timer entry and two
    /// waiter-list updates per frame in the profile.
    pub async fn next_line_within(
        &mut self,
        cancel: &CancellationToken,
        idle: Duration,
    ) -> Option<Result<std::io::Result<Option<Line<'_>>>, Elapsed>> {
        if cancel.is_cancelled() {
            return None;
        }
        let mut line = std::pin::pin!(self.next_line());
        if let Some(ready) = line.as_mut().now_or_never() {
            return Some(Ok(ready));
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            l = tokio::time::timeout(idle, line) => Some(l),
        }
    }

    /// The next line without its newline; None at the end of the stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
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
        Ok(Some(match std::str::from_utf8(&self.buf) {
            Ok(s) => Line::Text(s),
            Err(_) => Line::NotUtf8 {
                bytes: self.buf.len(),
            },
        }))
    }
}

/// The index of the first `\n` in `bytes`. A byte-by-byte `position` cannot be vectorised (it
/// exits early), and it showed up in the profile at about 3% of the exporter's CPU: whole blocks
/// are tested for a newline first (a loop the compiler vectorises), and only the block that
/// holds one is searched byte by byte.
fn newline(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut start = 0;
    for block in blocks.by_ref() {
        if block.iter().fold(false, |seen, b| seen | (*b == b'\n')) {
            break;
        }
        start += BLOCK;
    }
    bytes[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map(|i| start + i)
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

    #[tokio::test(start_paused = true)]
    async fn next_line_within_returns_lines_then_times_out_or_stops() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<std::io::Result<Vec<u8>>>();
        let mut r = LineReader::new(futures::TryStreamExt::into_async_read(rx), 100);
        let cancel = CancellationToken::new();
        let idle = Duration::from_secs(5);
        tx.unbounded_send(Ok(b"a\nb\n".to_vec())).unwrap();
        for want in ["a", "b"] {
            match r.next_line_within(&cancel, idle).await {
                Some(Ok(Ok(Some(Line::Text(s))))) => assert_eq!(s, want),
                other => panic!("{other:?}"),
            }
        }
        // Nothing more comes: the idle limit.
        let started = tokio::time::Instant::now();
        assert!(matches!(
            r.next_line_within(&cancel, idle).await,
            Some(Err(_))
        ));
        assert_eq!(started.elapsed(), idle);
        // A line split across reads arrives while waiting.
        tx.unbounded_send(Ok(b"c".to_vec())).unwrap();
        let send_rest = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.unbounded_send(Ok(b"d\n".to_vec())).unwrap();
        };
        let (got, ()) = tokio::join!(r.next_line_within(&cancel, idle), send_rest);
        assert!(
            matches!(got, Some(Ok(Ok(Some(Line::Text("cd")))))),
            "{got:?}"
        );
        // Cancelled: None, whether a line is ready or not.
        tx.unbounded_send(Ok(b"e\n".to_vec())).unwrap();
        cancel.cancel();
        assert!(r.next_line_within(&cancel, idle).await.is_none());
        drop(tx);
    }

    #[tokio::test]
    async fn reports_invalid_utf8() {
        assert_eq!(
            all(b"\xff\xfe\nok\n", 10, 2).await,
            [Owned::NotUtf8 { bytes: 2 }, text("ok")]
        );
    }
}
