//! syslog: RFC 5424 messages (see [`message`]) to a collector, with resmoio's keys `network`,
//! `address` and `tag`.
//!
//! - `network: tcp` (the default): octet-counted frames (RFC 6587 §3.4.1) on one connection;
//! - `network: tls`: the same frames over TLS (RFC 5425), configured by the shared `tls:` block;
//! - `network: udp`: one datagram per message (RFC 5426), only when asked: nothing tells the
//!   exporter that a datagram was lost, so `check-config` and the start warn about it.
//!
//! The connection is made at the first send, not at start (a collector that is down does not stop
//! the exporter), and kept. Before each batch it is checked for a close by the collector; any
//! connect or write error drops it and fails the batch as transient, so the worker retries with
//! its backoff on a new connection and the whole batch is sent again: at-least-once, a replayed
//! message carrying the same occurrence key in its structured data. Syslog over TCP has no
//! acknowledgement, so a batch counts as delivered once the collector's TCP stack has
//! acknowledged every byte of it (the socket's send queue is empty): a collector that vanishes
//! with our bytes in flight is noticed and the batch resent, instead of being lost in our send
//! buffer. Bytes acknowledged but not yet read by a collector that then dies are lost, as with
//! every plain syslog sender (RELP exists for that).

pub mod message;
mod tls;
mod transport;

use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::tls::{TLS_KEYS, TlsConfig};
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};

pub use transport::{MAX_DATAGRAM, SyslogSink};

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Udp,
}

/// Which addresses of the host are used (`tcp4`, `udp6`, …, as Go's `net.Dial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    pub fn admits(self, addr: &std::net::SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

/// `receivers[].syslog`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub transport: Transport,
    pub family: Family,
    /// `address` as written, for messages.
    pub address: String,
    /// Its host, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// APP-NAME.
    pub tag: String,
    pub facility: u8,
    pub encoding: Encoding,
    pub tls: TlsConfig,
}

pub const DEFAULT_TAG: &str = "kube-event-exporter";

impl ReceiverKind for SyslogConfig {
    const NAME: &'static str = "syslog";
    const CONCURRENCY: Concurrency = Concurrency::Serial("it writes to one connection, in order");
    const KEYS: &'static [&'static str] = &[
        "network", "address", "tag", "facility", "layout", "deDot", "tls",
    ];
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let line = |key: &str| f.get(key).map_or(f.line, |n| n.line);
        let network = ctx.opt_string(f, "network");
        let (transport, family) = match network.as_deref().map(parse_network) {
            None => (Some(Transport::Tcp), Family::Any),
            Some(Ok((t, fam))) => (Some(t), fam),
            Some(Err(why)) => {
                ctx.error(&f.path("network"), line("network"), why);
                (None, Family::Any)
            }
        };
        let address = ctx.opt_string(f, "address");
        let endpoint = match &address {
            None => {
                ctx.error(
                    &f.path("address"),
                    f.line,
                    "is required: the collector's host:port (resmoio's empty network, the \
                     local /dev/log socket, is not supported)",
                );
                None
            }
            Some(a) => match parse_address(a) {
                Ok(hp) => Some(hp),
                Err(why) => {
                    ctx.error(&f.path("address"), line("address"), why);
                    None
                }
            },
        };
        let tag = ctx
            .opt_string(f, "tag")
            .unwrap_or_else(|| DEFAULT_TAG.to_owned());
        if let Err(why) = message::check_app_name(&tag) {
            ctx.error(&f.path("tag"), line("tag"), why);
        }
        let facility = match ctx.opt_string(f, "facility") {
            None => Some(message::DEFAULT_FACILITY),
            Some(name) => match parse_facility(&name) {
                Ok(n) => Some(n),
                Err(why) => {
                    ctx.error(&f.path("facility"), line("facility"), why);
                    None
                }
            },
        };
        let tls = TlsConfig::parse(ctx, f);
        if f.has("tls") && transport.is_some_and(|t| t != Transport::Tls) {
            ctx.error(
                &f.path("tls"),
                line("tls"),
                format!(
                    "is only used with network: tls (RFC 5425), not {}",
                    network.as_deref().unwrap_or("tcp")
                ),
            );
        }
        if let (Some(Transport::Tls), Some((host, _))) = (transport, &endpoint)
            && let Err(why) = tls::server_name(&tls, host)
        {
            ctx.error(&f.path("address"), line("address"), why);
        }
        let encoding = Encoding::parse(ctx, f, true);
        let (host, port) = endpoint?;
        Some(SyslogConfig {
            transport: transport?,
            family,
            address: address?,
            host,
            port,
            tag,
            facility: facility?,
            encoding: encoding?,
            tls,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        match self.transport {
            Transport::Udp => vec![(
                "network",
                format!(
                    "udp sends each message as a datagram nobody acknowledges: a collector that is \
                     down, restarting or overloaded loses messages silently, and messages over \
                     {MAX_DATAGRAM} bytes are cut; use tcp or tls for a lossless export"
                ),
            )],
            _ => Vec::new(),
        }
    }

    /// Reads the TLS files; connects to nothing and resolves nothing.
    fn check(&self, _: &BuildEnv) -> Vec<Problem> {
        match self.transport {
            Transport::Tls => tls::client_config(&self.tls).err().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(SyslogSink::build(env.receiver, self)?))
    }
}

/// resmoio's `network` (Go's `net.Dial` names) plus `tls`.
fn parse_network(s: &str) -> Result<(Transport, Family), String> {
    Ok(match s {
        "tcp" => (Transport::Tcp, Family::Any),
        "tcp4" => (Transport::Tcp, Family::V4),
        "tcp6" => (Transport::Tcp, Family::V6),
        "tls" => (Transport::Tls, Family::Any),
        "udp" => (Transport::Udp, Family::Any),
        "udp4" => (Transport::Udp, Family::V4),
        "udp6" => (Transport::Udp, Family::V6),
        "unix" | "unixgram" | "unixpacket" => {
            return Err(format!(
                "{s:?}: local syslog sockets are not supported: send to a collector's TCP port \
                 (network: tcp)"
            ));
        }
        _ => {
            return Err(format!(
                "{s:?} is not one of tcp, tls, udp (or tcp4, tcp6, udp4, udp6)"
            ));
        }
    })
}

/// `host:port`, the host a name or an IP address (IPv6 in brackets).
fn parse_address(s: &str) -> Result<(String, u16), String> {
    let example = "e.g. syslog.example.com:514 or [2001:db8::1]:6514";
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port ({example})"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| format!("{s:?}: unbalanced brackets ({example})"))?,
        None if host.contains(':') => {
            return Err(format!(
                "{s:?}: write an IPv6 address in brackets ({example})"
            ));
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host ({example})"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?}: {port:?} is not a port number (1–65535)"))?;
    Ok((host.to_owned(), port))
}

/// A facility name (`local0`, `daemon`, …) or number (0–23).
fn parse_facility(s: &str) -> Result<u8, String> {
    if let Some((_, n)) = message::FACILITIES.iter().find(|(name, _)| *name == s) {
        return Ok(*n);
    }
    match s.parse::<u8>() {
        Ok(n) if n <= 23 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a facility: one of {} or 0–23",
            message::FACILITIES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

impl Sink for SyslogSink {
    fn send<'a>(
        &'a mut self,
        batch: &'a [Doc],
    ) -> futures::future::BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.send_batch(batch))
    }
}

#[cfg(test)]
mod tests;
