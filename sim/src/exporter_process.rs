//! Starting an exporter process against kube-sim — the one way the demo, the integration tests,
//! the benchmark and the soak do it: `run` with a config file written into a working directory,
//! kube-sim's kubeconfig, `/metrics` on an ephemeral port, the pod's name and namespace in the
//! environment as the Deployment's downward API sets them (the name is the identity unless the
//! config gives one), its log (stderr) in a file next to the config, stdout discarded unless asked
//! for, and `RUST_LOG` only when asked for, so the config's `logLevel` applies whatever the
//! caller's environment says.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use kube_sim::exporter_process::ExporterProcess;
//! let a = ExporterProcess::new("target/debug/kube-event-exporter", "/tmp/run", "a", "/tmp/run/kubeconfig");
//! let child = tokio::process::Command::from(a.command("route: {}\nreceivers: []\n")?)
//!     .kill_on_drop(true)
//!     .spawn()?;
//! println!("a logs to {}", a.log().display());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to start one exporter process (see the module docs); [`command`](Self::command) builds it.
#[derive(Debug, Clone)]
pub struct ExporterProcess {
    exe: PathBuf,
    dir: PathBuf,
    name: String,
    kubeconfig: PathBuf,
    namespace: String,
    rust_log: Option<String>,
    inherit_stdout: bool,
}

impl ExporterProcess {
    /// The binary `exe` as pod `name` in namespace `default`: its config is `dir/{name}.yaml`,
    /// its log `dir/{name}.log`.
    pub fn new(
        exe: impl Into<PathBuf>,
        dir: impl Into<PathBuf>,
        name: &str,
        kubeconfig: impl Into<PathBuf>,
    ) -> Self {
        Self {
            exe: exe.into(),
            dir: dir.into(),
            name: name.to_string(),
            kubeconfig: kubeconfig.into(),
            namespace: "default".to_string(),
            rust_log: None,
            inherit_stdout: false,
        }
    }

    /// `RUST_LOG` for the process (it replaces the config's log level and library caps).
    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = Some(filter.to_string());
        self
    }

    /// The process's stdout (its stdout receivers) goes to ours instead of nowhere.
    pub fn inherit_stdout(mut self, inherit: bool) -> Self {
        self.inherit_stdout = inherit;
        self
    }

    /// The pod name (the file stem of its config and log).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file its stderr goes to.
    pub fn log(&self) -> PathBuf {
        self.file("log")
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    /// Writes `config` (the YAML text) to `dir/{name}.yaml`, creates the log, and returns the
    /// command, not started yet (`tokio::process::Command::from` it for an async child).
    pub fn command(&self, config: &str) -> std::io::Result<Command> {
        let config_path = self.file("yaml");
        std::fs::write(&config_path, config).map_err(|e| annotate(e, "writing", &config_path))?;
        let log = self.log();
        let stderr = std::fs::File::create(&log).map_err(|e| annotate(e, "creating", &log))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["run", "--metrics-address", "127.0.0.1:0", "--config"])
            .arg(&config_path)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("POD_NAME", &self.name)
            .env("POD_NAMESPACE", &self.namespace)
            .stdin(Stdio::null())
            .stdout(if self.inherit_stdout {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(stderr);
        match &self.rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        Ok(cmd)
    }
}

fn annotate(e: std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_config_kubeconfig_pod_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            ExporterProcess::new("/bin/exporter", dir.path(), "r0", "/k/config").rust_log("debug");
        let cmd = p.command("route: {}\n").unwrap();
        let config = dir.path().join("r0.yaml");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "route: {}\n");
        assert!(p.log().exists());
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "run",
                "--metrics-address",
                "127.0.0.1:0",
                "--config",
                &config.to_string_lossy(),
                "--kubeconfig",
                "/k/config"
            ]
        );
        let env: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy(), v.map(|v| v.to_string_lossy())))
            .collect();
        for (k, v) in [
            ("POD_NAME", "r0"),
            ("POD_NAMESPACE", "default"),
            ("RUST_LOG", "debug"),
        ] {
            assert!(env.contains(&(k.into(), Some(v.into()))), "{k} in {env:?}");
        }
    }
}
