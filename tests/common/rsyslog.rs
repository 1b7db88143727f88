//! A real rsyslog (Debian package) for the syslog receiver's tests: started in the foreground
//! with its own config, listening on an ephemeral port (imtcp: octet-counted framing; over TLS
//! with the ossl driver; or imudp), writing every message of our tag as one JSON line: the parsed
//! RFC 5424 header, the structured data (parsed by rsyslog's own mmpstrucdata) and MSG.
//!
//! rsyslogd is installed with apt-get on first use when missing (`common::debian`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_event_exporter::event::Event;

/// Where the TLS listener's files are, and whether it requires a client certificate.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `x509/certvalid`: the client must present a certificate signed by `ca`.
    pub client_certificates: bool,
}

#[derive(Clone)]
pub enum Listener {
    Tcp,
    Tls(TlsFiles),
    Udp,
}

pub struct Rsyslog {
    dir: PathBuf,
    tag: String,
    listener: Listener,
    pub port: u16,
    child: Option<Child>,
}

/// One message as rsyslog parsed it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Record {
    pub pri: String,
    pub time: String,
    pub host: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    /// STRUCTURED-DATA as received.
    pub sd: String,
    /// The parameters of our SD element, unescaped by rsyslog.
    pub key: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// MSG, the BOM still in front.
    pub msg: String,
}

impl Record {
    /// MSG without its BOM, which must be there.
    pub fn body(&self) -> &str {
        self.msg
            .strip_prefix('\u{feff}')
            .unwrap_or_else(|| panic!("MSG without the UTF-8 BOM: {:?}", self.msg))
    }

    /// The event in MSG (the default document).
    pub fn event(&self) -> Event {
        serde_json::from_str(self.body())
            .unwrap_or_else(|e| panic!("MSG is not an event: {e}: {}", self.body()))
    }
}

const PACKAGES: &[&str] = &["rsyslog", "rsyslog-openssl"];

fn rsyslogd() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()]);
    for dir in candidates {
        let exe = dir.join("rsyslogd");
        if exe.is_file() {
            return Some(exe);
        }
    }
    None
}

/// The ossl network stream driver (package rsyslog-openssl).
fn has_ossl() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
        "/usr/lib64",
    ]
    .iter()
    .any(|d| Path::new(d).join("rsyslog/lmnsd_ossl.so").exists())
        || std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("rsyslog/lmnsd_ossl.so").exists())
}

/// The rsyslogd binary, installed first if missing. Panics with what to do when it cannot be.
pub fn ensure_installed() -> PathBuf {
    super::debian::ensure(PACKAGES, "rsyslog-install.lock", "the syslog tests", || {
        rsyslogd().filter(|_| has_ossl())
    })
}

impl Rsyslog {
    /// Starts rsyslogd in `dir` (which it owns), writing the messages whose APP-NAME is `tag`.
    pub fn start(dir: &Path, tag: &str, listener: Listener) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = match listener {
            // imudp cannot report an ephemeral port: take one that is free now.
            Listener::Udp => std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            _ => 0,
        };
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            tag: tag.to_owned(),
            listener,
            port,
            child: None,
        };
        r.spawn();
        r
    }

    pub fn output(&self) -> PathBuf {
        self.dir.join("messages.json")
    }

    fn config(&self) -> String {
        let dir = self.dir.display();
        let port = self.port;
        let input = match &self.listener {
            Listener::Tcp => format!(
                "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" listenPortFileName=\"{dir}/port\" maxFrameSize=\"1000000\")"
            ),
            Listener::Tls(t) => format!(
                "module(load=\"imtcp\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"{}\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" listenPortFileName=\"{dir}/port\" maxFrameSize=\"1000000\" streamDriver.CAFile=\"{}\" streamDriver.CertFile=\"{}\" streamDriver.KeyFile=\"{}\")",
                if t.client_certificates {
                    "x509/certvalid"
                } else {
                    "anon"
                },
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ),
            Listener::Udp => format!(
                "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")"
            ),
        };
        let sd = |p: &str| {
            format!(
                "  property(outname=\"{p}\" name=\"$!rfc5424-sd!kee@32473!{p}\" format=\"jsonf\")\n"
            )
        };
        format!(
            "global(workDirectory=\"{dir}\" maxMessageSize=\"1m\")\n\
             module(load=\"mmpstrucdata\")\n\
             {input}\n\
             template(name=\"record\" type=\"list\" option.jsonf=\"on\") {{\n\
             \x20 property(outname=\"pri\" name=\"pri\" format=\"jsonf\")\n\
             \x20 property(outname=\"time\" name=\"timereported\" dateFormat=\"rfc3339\" format=\"jsonf\")\n\
             \x20 property(outname=\"host\" name=\"hostname\" format=\"jsonf\")\n\
             \x20 property(outname=\"app\" name=\"app-name\" format=\"jsonf\")\n\
             \x20 property(outname=\"procid\" name=\"procid\" format=\"jsonf\")\n\
             \x20 property(outname=\"msgid\" name=\"msgid\" format=\"jsonf\")\n\
             \x20 property(outname=\"sd\" name=\"structured-data\" format=\"jsonf\")\n\
             {}{}{}{}\
             \x20 property(outname=\"msg\" name=\"msg\" format=\"jsonf\")\n\
             }}\n\
             if $app-name == \"kee-probe\" then action(type=\"omfile\" file=\"{dir}/probe.log\")\n\
             if $app-name == \"{}\" then {{\n\
             \x20 action(type=\"mmpstrucdata\")\n\
             \x20 action(type=\"omfile\" file=\"{}\" template=\"record\")\n\
             }}\n",
            sd("key"),
            sd("namespace"),
            sd("kind"),
            sd("name"),
            self.tag,
            self.output().display(),
        )
    }

    /// Starts rsyslogd (again, on the same port) and waits until it listens.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let exe = ensure_installed();
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(&conf, self.config()).unwrap();
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.log"))
            .unwrap();
        let child = Command::new(exe)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rsyslogd exited at start ({status}):\n{}", self.log());
            }
            let ready = match self.listener {
                // imudp has no port file: a probe datagram shows it reads.
                Listener::Udp => {
                    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let _ = probe.send_to(
                        b"<134>1 - - kee-probe - - - ready",
                        ("127.0.0.1", self.port),
                    );
                    std::fs::metadata(self.dir.join("probe.log")).is_ok_and(|m| m.len() > 0)
                }
                _ => {
                    // The port file is written for port 0 only; a restart reuses the port.
                    let port = if self.port != 0 {
                        Some(self.port)
                    } else {
                        std::fs::read_to_string(&port_file)
                            .ok()
                            .and_then(|s| s.trim().parse::<u16>().ok())
                    };
                    match port {
                        Some(p) if p > 0 => {
                            self.port = p;
                            TcpStream::connect(("127.0.0.1", p)).is_ok()
                        }
                        _ => false,
                    }
                }
            };
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd not listening after 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
    }

    fn signal(&mut self, sig: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "rsyslogd ignored SIG{sig}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and wait until it has exited.
    pub fn stop(&mut self) {
        self.signal("TERM");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Every complete line written so far.
    pub fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(self.output()).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rsyslog line {e}: {l}")))
            .collect()
    }

    /// The occurrence key of every message, from the structured data.
    pub fn keys(&self) -> Vec<String> {
        self.records().into_iter().map(|r| r.key).collect()
    }

    /// Waits until every key of `want` arrived; panics after `limit` with what is missing.
    pub async fn wait_for_keys(&self, want: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let have: std::collections::BTreeSet<String> = self.keys().into_iter().collect();
            let missing: Vec<&String> = want.iter().filter(|k| !have.contains(*k)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {limit:?}, rsyslog still lacks {} of {} keys, e.g. {:?}; rsyslogd log:\n{}",
                missing.len(),
                want.len(),
                &missing[..missing.len().min(5)],
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`:
/// (ca, server cert, server key, client cert, client key).
pub fn pki(dir: &Path) -> [PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: another test's CA is then an unknown issuer, not a bad signature.
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("kee syslog test CA {:016x}", rand::random::<u64>()),
    );
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "rsyslog",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(vec![], "exporter", ExtendedKeyUsagePurpose::ClientAuth);
    let files = [
        ("ca.pem", ca_pem),
        ("server.pem", server),
        ("server.key", server_key),
        ("client.pem", client),
        ("client.key", client_key),
    ];
    files.map(|(name, text)| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    })
}
