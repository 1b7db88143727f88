//! The syslog sink's connections: one TCP or TLS stream, or one UDP socket, made at the first send
//! and again after any error (see the module doc of `syslog`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::FutureExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::message::{self, Header};
use super::{Family, SyslogConfig, Transport};
use crate::sink::kind::Problem;
use crate::sink::{Doc, SendError};

/// The longest UDP datagram sent: under IPv4's 65507-byte payload limit. Longer messages are cut
/// (at a character boundary) and logged.
pub const MAX_DATAGRAM: usize = 65_000;

pub struct SyslogSink {
    receiver: String,
    /// `address` as configured, for messages.
    address: String,
    host: String,
    port: u16,
    family: Family,
    header: Header,
    link: Link,
    /// One message, then the batch's frames.
    msg: Vec<u8>,
    frames: Vec<u8>,
    /// Whether the last attempt failed, so the next connection is logged.
    failing: bool,
}

enum Link {
    Stream {
        tls: Option<(TlsConnector, ServerName<'static>)>,
        conn: Option<Stream>,
    },
    Datagram {
        socket: Option<UdpSocket>,
    },
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

fn transient(reason: String) -> SendError {
    SendError::Transient {
        reason,
        retry_after: None,
    }
}

impl SyslogSink {
    pub fn build(receiver: &str, cfg: &SyslogConfig) -> Result<Self, Vec<Problem>> {
        let link = match cfg.transport {
            Transport::Udp => Link::Datagram { socket: None },
            Transport::Tcp => Link::Stream {
                tls: None,
                conn: None,
            },
            Transport::Tls => {
                let config = super::tls::client_config(&cfg.tls)?;
                let name = super::tls::server_name(&cfg.tls, &cfg.host)
                    .map_err(|why| vec![("address", why)])?;
                Link::Stream {
                    tls: Some((TlsConnector::from(config), name)),
                    conn: None,
                }
            }
        };
        Ok(Self {
            receiver: receiver.to_owned(),
            address: cfg.address.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            family: cfg.family,
            header: Header::new(cfg.facility, &cfg.tag, &host_name()),
            link,
            msg: Vec::new(),
            frames: Vec::new(),
            failing: false,
        })
    }

    pub async fn send_batch(&mut self, batch: &[Doc]) -> Result<(), SendError> {
        let result = match self.link {
            Link::Stream { .. } => self.send_stream(batch).await,
            Link::Datagram { .. } => self.send_datagrams(batch).await,
        };
        self.failing = result.is_err();
        result
    }

    async fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .filter(|a| self.family.admits(a))
            .collect();
        if addrs.is_empty() {
            return Err(format!(
                "{} has no {} address",
                self.host,
                match self.family {
                    Family::V4 => "IPv4",
                    Family::V6 => "IPv6",
                    Family::Any => "IP",
                }
            ));
        }
        Ok(addrs)
    }

    fn connected(&self, peer: SocketAddr) {
        if self.failing {
            tracing::info!(receiver = %self.receiver, address = %self.address, %peer, "syslog: connected again");
        } else {
            tracing::debug!(receiver = %self.receiver, address = %self.address, %peer, "syslog: connected");
        }
    }

    /// A new stream: each address of the host in turn, then the TLS handshake.
    /// `address`, and the IP connected to when that is not the same text.
    fn peer(&self, addr: SocketAddr) -> String {
        let ip = addr.to_string();
        if ip == self.address {
            ip
        } else {
            format!("{} ({ip})", self.address)
        }
    }

    async fn connect(&self) -> Result<Stream, String> {
        let Link::Stream { tls, .. } = &self.link else {
            unreachable!("connect is for streams")
        };
        let mut last = String::new();
        for addr in self.resolve().await? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let stream = match tls {
                        None => Stream::Plain(tcp),
                        Some((connector, name)) => Stream::Tls(Box::new(
                            connector.connect(name.clone(), tcp).await.map_err(|e| {
                                format!("TLS handshake with {}: {e}", self.peer(addr))
                            })?,
                        )),
                    };
                    self.connected(addr);
                    return Ok(stream);
                }
                Err(e) => last = format!("connecting to {}: {e}", self.peer(addr)),
            }
        }
        Err(last)
    }

    async fn send_stream(&mut self, batch: &[Doc]) -> Result<(), SendError> {
        self.frames.clear();
        for doc in batch {
            self.msg.clear();
            message::write_message(&mut self.msg, &self.header, &doc.occ, &doc.body);
            message::write_frame(&mut self.frames, &self.msg);
        }
        // The connection is out of `self` while in use: if this send fails or is abandoned (the
        // worker's timeout), it is dropped, never reused with half a frame written.
        let Link::Stream { conn, .. } = &mut self.link else {
            unreachable!()
        };
        let reusable = match conn.take() {
            Some(mut c) => match c.closed_by_peer() {
                None => Some(c),
                Some(why) => {
                    tracing::debug!(receiver = %self.receiver, address = %self.address, %why, "syslog: connection closed by the collector; reconnecting");
                    None
                }
            },
            None => None,
        };
        let mut stream = match reusable {
            Some(c) => c,
            None => self.connect().await.map_err(transient)?,
        };
        let write = |e: io::Error| transient(format!("writing to {}: {e}", self.address));
        stream.write_all(&self.frames).await.map_err(write)?;
        stream.flush().await.map_err(write)?;
        stream.wait_acknowledged().await.map_err(|e| {
            transient(format!(
                "{} did not acknowledge the batch: {e}",
                self.address
            ))
        })?;
        if let Link::Stream { conn, .. } = &mut self.link {
            *conn = Some(stream);
        }
        Ok(())
    }

    async fn socket(&self) -> Result<UdpSocket, String> {
        let mut last = String::new();
        for addr in self.resolve().await? {
            let local: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = UdpSocket::bind(local)
                .await
                .map_err(|e| format!("binding a UDP socket: {e}"))?;
            match socket.connect(addr).await {
                Ok(()) => {
                    self.connected(addr);
                    return Ok(socket);
                }
                Err(e) => last = format!("UDP to {}: {e}", self.peer(addr)),
            }
        }
        Err(last)
    }

    /// One datagram per message. On an error, what was sent counts as delivered (nothing better is
    /// known of a datagram) and the rest is retried.
    async fn send_datagrams(&mut self, batch: &[Doc]) -> Result<(), SendError> {
        let Link::Datagram { socket } = &mut self.link else {
            unreachable!()
        };
        let s = match socket.take() {
            Some(s) => s,
            None => self.socket().await.map_err(transient)?,
        };
        for (i, doc) in batch.iter().enumerate() {
            self.msg.clear();
            message::write_message(&mut self.msg, &self.header, &doc.occ, &doc.body);
            let datagram = message::truncate(&self.msg, MAX_DATAGRAM);
            if datagram.len() < self.msg.len() {
                tracing::warn!(receiver = %self.receiver, key = %doc.key, bytes = self.msg.len(), sent = datagram.len(), "syslog over UDP: message cut to fit a datagram");
            }
            if let Err(e) = s.send(datagram).await {
                let reason = format!("sending to {}: {e}", self.address);
                return Err(if i == 0 {
                    transient(reason)
                } else {
                    SendError::Partial(
                        (i..batch.len())
                            .map(|j| (j, transient(reason.clone())))
                            .collect(),
                    )
                });
            }
        }
        if let Link::Datagram { socket } = &mut self.link {
            *socket = Some(s);
        }
        Ok(())
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => s.write_all(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
        }
    }

    /// Why the collector is gone, if it closed the connection or reset it since the last batch. A
    /// syslog collector sends nothing, so anything readable is an end of stream or an error (a
    /// TLS stream's reads also consume session tickets and the peer's close_notify).
    fn closed_by_peer(&mut self) -> Option<String> {
        let mut buf = [0u8; 1024];
        for _ in 0..16 {
            let read = match self {
                Stream::Plain(s) => s.read(&mut buf).now_or_never(),
                Stream::Tls(s) => s.read(&mut buf).now_or_never(),
            };
            match read {
                None => return None,
                Some(Ok(0)) => return Some("end of stream".to_owned()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e.to_string()),
            }
        }
        None
    }

    /// Waits until the peer's TCP stack has acknowledged every byte written (Linux: the socket's
    /// send queue, SIOCOUTQ, is empty), or the connection fails. Elsewhere: returns at once.
    async fn wait_acknowledged(&self) -> io::Result<()> {
        let tcp = self.tcp();
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(e) = tcp.take_error()? {
                return Err(e);
            }
            if unacknowledged(tcp)? == 0 {
                return Ok(());
            }
            // Loopback and LAN acknowledgements take microseconds; a slow collector is polled
            // less and less often, up to every 20 ms (the worker's timeout bounds the wait).
            if pause < Duration::from_millis(1) {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Bytes written to `tcp` that the peer has not acknowledged yet.
#[cfg(target_os = "linux")]
fn unacknowledged(tcp: &TcpStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (= SIOCOUTQ on sockets) writes one c_int through the pointer, which points
    // to a live, writable c_int; the fd is open for as long as `tcp` is borrowed.
    let rc = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_: &TcpStream) -> io::Result<usize> {
    Ok(0)
}

/// This machine's name (the pod's, in Kubernetes), for HOSTNAME when the event has no cluster
/// name: what resmoio (Go's `os.Hostname`) sent.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}
