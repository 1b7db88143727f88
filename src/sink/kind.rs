//! What a receiver kind is: the contract every kind implements ([`ReceiverKind`]) and what
//! building one may use ([`BuildEnv`]). The table of kinds is `sink::registry`.
//!
//! A kind owns everything about itself in its own module: its config struct, the keys it accepts,
//! their parsing from the YAML node (with the loader's path-aware helpers), its compiled templates,
//! the checks `run` would otherwise fail on, and its [`Sink`].

use std::fmt::Debug;

use super::{Sink, layout::Encoding, stdout};
use crate::config::DeliveryConfig;
use crate::config::yaml::{Ctx, Fields};

/// A problem with a receiver's settings found before it runs: the key under the kind
/// (`tls.caFile`) and what is wrong with it.
pub type Problem = (&'static str, String);

/// What building a sink may need besides its own config.
pub struct BuildEnv<'a> {
    pub receiver: &'a str,
    pub delivery: &'a DeliveryConfig,
    /// Where stdout receivers write (tests capture it).
    pub stdout: &'a dyn Fn() -> stdout::Writer,
    /// Per-receiver metrics a kind updates itself (e.g. already-delivered documents).
    pub metrics: &'a crate::telemetry::Metrics,
}

/// One receiver kind: `webhook`, `file`, … (see `webhook.rs` for a worked example).
pub trait ReceiverKind: Debug + Clone + PartialEq + Send + Sync + Sized + 'static {
    /// The key that selects the kind in a receiver entry.
    const NAME: &'static str;
    /// Keys accepted in the kind's map; anything else is an error with a suggestion.
    const KEYS: &'static [&'static str];
    /// Keys of nested maps (`("tls", TLS_KEYS)`), for the key reference.
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[];
    /// `batch.maxEvents` when the receiver does not set it.
    const DEFAULT_MAX_EVENTS: usize = 256;
    /// Whether requests may be in flight at once, and how many by default (`concurrency`).
    const CONCURRENCY: Concurrency = Concurrency::Serial("it writes through one stream, in order");

    /// The kind's map, its keys already checked against `KEYS`. Every problem goes to `ctx` with
    /// its path; `None` when there was any.
    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self>;

    /// How occurrences become documents (layout / deDot), compiled at load time.
    fn encoding(&self) -> &Encoding;

    /// Every other template of the kind, as (key under the kind, source), for check-config's lint.
    fn templates(&self) -> Vec<(String, &str)> {
        Vec::new()
    }

    /// Settings that work but deserve a warning (check-config and the start print them), as
    /// (key under the kind, why): e.g. syslog over UDP, which can lose messages silently.
    fn warnings(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// What `run` would refuse, found without starting, sending or creating anything (files that
    /// cannot be written, TLS files that do not parse, a client that does not build). By
    /// default what building the sink finds: a kind whose `build` starts, connects or creates
    /// something checks without building.
    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        self.build(env).err().unwrap_or_default()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>>;
}

/// A kind's [`ReceiverKind::KEYS`]: its own keys, then those its family parses for each of its
/// kinds (`gcp::GoogleCommon::KEYS`), so the family's keys are written once, next to the code
/// that reads them. `N` is the number of both; a wrong one fails the build.
pub const fn keys<const N: usize>(
    own: &[&'static str],
    family: &[&'static str],
) -> [&'static str; N] {
    assert!(
        own.len() + family.len() == N,
        "N must be the number of keys"
    );
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < own.len() {
            own[i]
        } else {
            family[i - own.len()]
        };
        i += 1;
    }
    out
}

/// A kind's config behind `&dyn`, for code that handles every kind alike.
pub trait Receiver {
    fn encoding(&self) -> &Encoding;
    fn templates(&self) -> Vec<(String, &str)>;
    fn warnings(&self) -> Vec<Problem>;
    fn check(&self, env: &BuildEnv) -> Vec<Problem>;
    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>>;
}

impl<K: ReceiverKind> Receiver for K {
    fn encoding(&self) -> &Encoding {
        ReceiverKind::encoding(self)
    }
    fn templates(&self) -> Vec<(String, &str)> {
        ReceiverKind::templates(self)
    }
    fn warnings(&self) -> Vec<Problem> {
        ReceiverKind::warnings(self)
    }
    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        ReceiverKind::check(self, env)
    }
    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        ReceiverKind::build(self, env)
    }
}

/// How a kind sends: through one stream, or in concurrent lanes (`sink::worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// One request at a time, always: why (`concurrency` above 1 is a load error).
    Serial(&'static str),
    /// Lanes, this many by default: a request/response API whose round trip, not its
    /// throughput, bounds one lane.
    Lanes(usize),
}

impl Concurrency {
    pub fn default_lanes(self) -> usize {
        match self {
            Concurrency::Serial(_) => 1,
            Concurrency::Lanes(n) => n,
        }
    }
}
