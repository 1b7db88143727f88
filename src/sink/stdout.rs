//! stdout: NDJSON, one line per occurrence, a whole batch in one write.

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};

/// `receivers[].stdout`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StdoutConfig {
    pub encoding: Encoding,
}

impl ReceiverKind for StdoutConfig {
    const NAME: &'static str = "stdout";
    const CONCURRENCY: Concurrency = Concurrency::Serial("it writes to one stream, in order");
    const KEYS: &'static [&'static str] = &["deDot", "layout"];

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        Encoding::parse(ctx, f, true).map(|encoding| StdoutConfig { encoding })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn check(&self, _: &BuildEnv) -> Vec<Problem> {
        Vec::new()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(StdoutSink::new((env.stdout)())))
    }
}

pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

pub struct StdoutSink {
    out: Writer,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new(out: Writer) -> Self {
        Self {
            out,
            buf: Vec::new(),
        }
    }
}

/// Appends the batch as NDJSON to `buf`.
pub fn ndjson(buf: &mut Vec<u8>, batch: &[Doc]) {
    buf.clear();
    for doc in batch {
        buf.extend_from_slice(&doc.body);
        buf.push(b'\n');
    }
}

impl Sink for StdoutSink {
    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            ndjson(&mut self.buf, batch);
            let io = |e: std::io::Error| SendError::Transient {
                reason: format!("writing stdout: {e}"),
                retry_after: None,
            };
            self.out.write_all(&self.buf).await.map_err(io)?;
            self.out.flush().await.map_err(io)
        }
        .boxed()
    }
}
