//! Liveness and readiness, shared by the stages that know and the HTTP server that answers.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::Duration;

use crate::clock::coarse_now;

#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `coarse_now()` at creation: the source loop signals life once per frame.
    start: Duration,
    /// Milliseconds since `start` of the last sign of life of the source loop.
    heartbeat_ms: AtomicU64,
    /// The last API request succeeded.
    api_ok: AtomicBool,
    config_loaded: AtomicBool,
    /// How long without a heartbeat before liveness fails.
    stall_after: Duration,
}

impl Health {
    /// `stall_after`: a source loop that shows no sign of life for this long is stuck (it must be
    /// longer than the watch timeout, since a quiet watch is silent until it times out).
    pub fn new(stall_after: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                start: coarse_now(),
                heartbeat_ms: AtomicU64::new(0),
                api_ok: AtomicBool::new(false),
                config_loaded: AtomicBool::new(false),
                stall_after,
            }),
        }
    }

    pub fn heartbeat(&self) {
        let ms = coarse_now().saturating_sub(self.inner.start).as_millis() as u64;
        self.inner.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    pub fn set_api_ok(&self, ok: bool) {
        self.inner.api_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.heartbeat();
        }
    }

    pub fn set_config_loaded(&self) {
        self.inner.config_loaded.store(true, Ordering::Relaxed);
    }

    /// Live: the source loop turned recently.
    pub fn live(&self) -> bool {
        let last = Duration::from_millis(self.inner.heartbeat_ms.load(Ordering::Relaxed));
        coarse_now()
            .saturating_sub(self.inner.start)
            .saturating_sub(last)
            < self.inner.stall_after
    }

    /// Ready: config loaded and the API server reachable.
    pub fn ready(&self) -> bool {
        self.inner.config_loaded.load(Ordering::Relaxed)
            && self.inner.api_ok.load(Ordering::Relaxed)
    }
}
