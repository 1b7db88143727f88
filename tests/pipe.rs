//! The pipe receiver through a real FIFO read by the test: every occurrence once, a FIFO nobody
//! reads yet, a graceful handover and a SIGKILL with real exporter processes, and check-config.
//! Delivery tests compare the occurrence keys the reader got with the generated ones.

mod common;

use common::scenarios::{self, FAST};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Delivery, Running, init};
use kube_event_exporter::config;
use kube_event_exporter::event::Event;
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig};
use tokio::io::AsyncBufReadExt;
use tokio::net::unix::pipe;

fn mkfifo(dir: &Path) -> PathBuf {
    let path = dir.join("events.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    path
}

/// A reader of the FIFO collecting the occurrence key of every line. It also holds the FIFO
/// open for writing, so it never sees an end of file when a writer (an exporter) goes away.
struct Reader {
    keys: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn open(path: &Path) -> Self {
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .expect("opening the FIFO for reading");
        let keys = Arc::new(Mutex::new(Vec::new()));
        let out = keys.clone();
        let task = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(rx).lines();
            while let Some(line) = lines.next_line().await.expect("reading the FIFO") {
                let e: Event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a whole event line: {e}: {line}"));
                out.lock().unwrap().push(e.occurrence_key());
            }
        });
        Reader { keys, task }
    }

    fn keys(&self) -> Vec<String> {
        assert!(
            !self.task.is_finished(),
            "the reader stopped (a torn line?)"
        );
        self.keys.lock().unwrap().clone()
    }

    async fn wait_for(&self, want: &[String], limit: Duration) {
        common::eventually(limit, "every key through the FIFO", || {
            let have: std::collections::BTreeSet<String> = self.keys().into_iter().collect();
            want.iter().all(|k| have.contains(k))
        })
        .await;
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn receiver(path: &Path) -> String {
    format!(
        "  - name: fifo\n    retry: {{initialBackoff: 20ms, maxBackoff: 200ms}}\n    pipe:\n      path: {}\n",
        path.display()
    )
}

fn exporter_config(path: &Path) -> config::Config {
    let text = format!(
        "omitLookup: true\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: fifo\nreceivers:\n{}",
        receiver(path)
    );
    config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_the_fifo_reader_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path());
    let reader = Reader::open(&fifo);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let run = Running::start(
        &exporter_config(&fifo),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 600, 51);
    g.wait().await;
    let want = g.generated();
    reader.wait_for(&want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &reader.keys());
    eprintln!("pipe: {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_nobody_reads_holds_deliveries_until_a_reader_opens_it() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path());
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // The exporter starts with nobody reading: it does not block in open().
    let run = Running::start(
        &exporter_config(&fifo),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 200, 52);
    g.wait().await;
    common::eventually(
        Duration::from_secs(30),
        "retries while no reader has the FIFO open (ENXIO)",
        || run.metric("kube_event_exporter_sink_retried") >= 2.0,
    )
    .await;
    assert_eq!(run.metric("kube_event_exporter_sink_sent"), 0.0);
    let reader = Reader::open(&fifo);
    let want = g.generated();
    reader.wait_for(&want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &reader.keys());
    eprintln!("pipe without a reader at first: {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handover_through_a_fifo_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path());
    let reader = Reader::open(&fifo);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o =
        common::scenarios::graceful_handover(&sim, &receiver(&fifo), "fifo", &|| reader.keys(), 53)
            .await;
    eprintln!("pipe graceful handover: {}", o.delivery.summary());
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_through_a_fifo_loses_nothing_and_duplicates_at_most_a_retry_period_and_a_batch()
 {
    init();
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path());
    let reader = Reader::open(&fifo);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &receiver(&fifo),
        "fifo",
        &|| reader.keys(),
        54,
    )
    .await;
    o.assert_no_loss_and_bounded_duplicates("pipe SIGKILL", Duration::from_millis(200));
}

fn check_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_passes_resmoios_example_and_refuses_a_path_that_does_not_exist() {
    // resmoio's README example, with a real value for its `deDot: true|false` placeholder.
    let (code, err) = check_config(
        "route:\n  routes:\n    - match:\n        - receiver: \"my_pipe\"\nreceivers:\n  - name: \"my_pipe\"\n    pipe:\n      path: \"/dev/stdout\"\n      deDot: true\n",
    );
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("events.fifo");
    let (code, err) = check_config(&format!(
        "route:\n  routes:\n    - match:\n        - receiver: p\nreceivers:\n  - name: p\n    pipe:\n      path: {}\n",
        missing.display()
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "receivers[0].pipe.path: cannot write {}: it does not exist",
            missing.display()
        )),
        "{err}"
    );
    assert!(!missing.exists(), "check-config created the path");
    // A FIFO nobody reads passes, without blocking: check-config does not open it.
    let fifo = mkfifo(dir.path());
    let (code, err) = check_config(&format!(
        "route:\n  routes:\n    - match:\n        - receiver: p\nreceivers:\n  - name: p\n    pipe:\n      path: {}\n",
        fifo.display()
    ));
    assert_eq!(code, 0, "{err}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipe.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
