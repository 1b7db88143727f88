//! How long the source has gone without reading from the API server: the signal that a leader is
//! blind (no `list events` permission, an API server it cannot reach) even though it holds the
//! Lease and nothing is pending in its receivers.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::{Duration, Instant};

/// Shared between the source, which reports, and the lag reporter, which reads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reading {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Milliseconds after `start` of the last answer (a list page, a watch answered or ended).
    last_answer_ms: AtomicU64,
    /// A watch stream is open: the source reads continuously, however quiet the cluster.
    open: AtomicBool,
}

impl Default for Reading {
    fn default() -> Self {
        Self::new()
    }
}

impl Reading {
    /// Counts from now: a source that never reads is blind since its run started.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                last_answer_ms: AtomicU64::new(0),
                open: AtomicBool::new(false),
            }),
        }
    }

    /// The API server answered (a list page, a watch's status line, the end of a stream).
    pub fn answered(&self) {
        let ms = self.inner.start.elapsed().as_millis() as u64;
        self.inner.last_answer_ms.store(ms, Ordering::Relaxed);
    }

    /// A watch stream opened.
    pub fn opened(&self) {
        self.answered();
        self.inner.open.store(true, Ordering::Relaxed);
    }

    /// The watch stream that was open ended (nothing if none was: a request that failed is no
    /// answer).
    pub fn closed(&self) {
        if self.inner.open.swap(false, Ordering::Relaxed) {
            self.answered();
        }
    }

    /// Zero while a watch is open; otherwise the time since the last answer.
    pub fn blind_for(&self) -> Duration {
        if self.inner.open.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.inner.last_answer_ms.load(Ordering::Relaxed));
        self.inner.start.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_watch_reads_and_a_closed_one_ages_from_its_end() {
        let r = Reading::new();
        std::thread::sleep(Duration::from_millis(20));
        // A failed request is no answer: blind since the start.
        r.closed();
        assert!(r.blind_for() >= Duration::from_millis(20));
        r.opened();
        assert_eq!(r.blind_for(), Duration::ZERO);
        r.closed();
        // Just ended: far below a second, and it only grows from here.
        let a = r.blind_for();
        assert!(a < Duration::from_secs(1), "{a:?}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(r.blind_for() >= a + Duration::from_millis(20));
    }
}
