//! The soak's webhook receiver, in-process on 127.0.0.1: records every occurrence it accepted
//! (with the replica that sent it, from the `X-Soak-Replica` header each replica's config sets)
//! and can be made down, slow, failing or hanging.
//!
//! An occurrence is recorded only when the request is answered 200: a request the exporter gave
//! up on (timeout) is never counted as delivered, as a real receiver that never answered would
//! not have committed it either. So a webhook duplicate always means the exporter sent an
//! occurrence again after a success, never a retry of a failure.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::observe::{Clock, Delivery, Observations, Receiver, occurrences_in_body};
use super::schedule::HookMode;

pub const REPLICA_HEADER: &str = "x-soak-replica";

/// How long the webhook takes to answer when it is up, as a receiver in another region would:
/// the exporter keeps several requests in flight (`concurrency: 4`) to keep up.
const ROUND_TRIP: Duration = Duration::from_millis(20);

struct Shared {
    mode: Mutex<HookMode>,
    /// Takes precedence over `mode` while set (a fault of the process track that needs a hanging
    /// webhook, whatever the environment track does meanwhile).
    forced: Mutex<Option<HookMode>>,
    /// Bumped each time the webhook goes down: connections accepted before are cut.
    generation: AtomicU64,
    down: AtomicBool,
    /// How long a hanging request is held: past the exporter's timeout.
    hang: Duration,
    clock: Clock,
    obs: Arc<Observations>,
}

impl Shared {
    fn mode(&self) -> HookMode {
        let forced = *self.forced.lock().unwrap_or_else(|p| p.into_inner());
        forced.unwrap_or_else(|| *self.mode.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn apply(&self) {
        let down = self.mode() == HookMode::Down;
        if down && !self.down.swap(true, Ordering::SeqCst) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        } else if !down {
            self.down.store(false, Ordering::SeqCst);
        }
    }
}

pub struct Webhook {
    pub url: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Webhook {
    /// Serves until dropped. `hang` should exceed the exporter's webhook timeout.
    pub async fn start(
        clock: Clock,
        obs: Arc<Observations>,
        hang: Duration,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the webhook on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(HookMode::Up),
            forced: Mutex::new(None),
            generation: AtomicU64::new(0),
            down: AtomicBool::new(false),
            hang,
            clock,
            obs,
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(shared.clone());
        let gated = Gated {
            inner: listener,
            shared: shared.clone(),
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(gated, app).with_graceful_shutdown(token.cancelled_owned());
            if let Err(e) = serve.await {
                eprintln!("soak: the webhook server failed: {e}");
            }
        });
        Ok(Self {
            url: format!("http://{addr}/hook"),
            shared,
            stop,
        })
    }

    pub fn set_mode(&self, mode: HookMode) {
        *self.shared.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        self.shared.apply();
    }

    pub fn force(&self, mode: Option<HookMode>) {
        *self.shared.forced.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        self.shared.apply();
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn hook(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let arrived = s.clock.now();
    let generation = s.generation.load(Ordering::SeqCst);
    match s.mode() {
        // A remote receiver: every answer takes a round trip.
        HookMode::Up => tokio::time::sleep(ROUND_TRIP).await,
        // A request read just before the cut.
        HookMode::Down => return StatusCode::SERVICE_UNAVAILABLE,
        HookMode::Slow(d) => tokio::time::sleep(d).await,
        HookMode::Errors(code) => {
            return StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        }
        HookMode::Hang => {
            tokio::time::sleep(s.hang).await;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    if s.generation.load(Ordering::SeqCst) != generation {
        // Went down while this request waited: its connection is cut, the answer never arrives.
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let replica = header(REPLICA_HEADER);
    let occurrences = match occurrences_in_body(&body) {
        Ok(o) if !o.is_empty() => o,
        Ok(_) => return StatusCode::OK,
        Err(e) => {
            s.obs.violation(
                arrived,
                format!("{replica} sent a webhook body that is not events: {e}"),
            );
            return StatusCode::BAD_REQUEST;
        }
    };
    check_idempotency_key(
        &s,
        &replica,
        &header("idempotency-key"),
        &occurrences,
        arrived,
    );
    let t = s.clock.now();
    s.obs
        .record(occurrences.into_iter().map(|(key, rv)| Delivery {
            receiver: Receiver::Webhook,
            replica: replica.clone(),
            key,
            rv,
            lo: arrived,
            t,
        }));
    StatusCode::OK
}

/// Every request names its occurrences: `{key}` for one, `{first}..{last}` for a batch (docs
/// "webhook"), so a replay carries the same key as its original.
fn check_idempotency_key(
    s: &Shared,
    replica: &str,
    got: &str,
    occurrences: &[(String, u64)],
    t: f64,
) {
    let want = match occurrences {
        [one] => one.0.clone(),
        [first, .., last] => format!("{}..{}", first.0, last.0),
        [] => return,
    };
    if got != want {
        s.obs.violation(
            t,
            format!("{replica} sent Idempotency-Key {got:?} for occurrences {want:?}"),
        );
    }
}

/// Accepts connections unless the webhook is down (then they are closed at once).
struct Gated {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for Gated {
    type Io = GatedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) if !self.shared.down.load(Ordering::SeqCst) => {
                    let generation = self.shared.generation.load(Ordering::SeqCst);
                    let shared = self.shared.clone();
                    return (
                        GatedIo {
                            io,
                            generation,
                            shared,
                        },
                        addr,
                    );
                }
                Ok(_) => {}
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that breaks once the webhook has gone down since it was accepted, so pooled
/// keep-alive connections fail like new ones instead of still being served.
struct GatedIo {
    io: TcpStream,
    generation: u64,
    shared: Arc<Shared>,
}

impl GatedIo {
    fn cut(&self) -> bool {
        self.shared.generation.load(Ordering::SeqCst) != self.generation
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the soak's webhook is down")
}

impl AsyncRead for GatedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
