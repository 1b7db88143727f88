//! A reduced run of the benchmark (`kee_bench::bench`), so it cannot rot: every phase must export
//! exactly what was generated. Speed is not asserted here (shared, noisy machines); the figures come
//! from `exporter-bench` and are written in the README.

use std::time::Duration;

use kee_bench::bench::{BenchOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduced_benchmark_exports_exactly_what_was_generated_in_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BenchOptions {
        exporter: env!("CARGO_BIN_EXE_kube-event-exporter").into(),
        cold_events: 600,
        sustained_events: 3000,
        idle: Duration::from_secs(3),
        work_dir: dir.path().to_path_buf(),
        baseline_exe: None,
        latency_events: 400,
        latency_search_events: 3000,
        steady: Duration::from_secs(2),
    };
    let report = run(&opts, |m| eprintln!("bench: {m}")).await.unwrap();
    eprintln!("{}{}", report.table(), report.last_line());
    for name in [
        "cold-start",
        "sustained-file",
        "sustained-webhook",
        "sustained-search",
        "baseline-decode",
        "remote-webhook-50ms",
        "remote-search-100ms",
        "remote-webhook-live",
        "steady-leader",
    ] {
        let p = report
            .phase(name)
            .unwrap_or_else(|| panic!("phase {name} missing"));
        assert_eq!(
            (p.lost, p.duplicated),
            (0, 0),
            "{name}: lost {}, duplicated {}",
            p.lost,
            p.duplicated
        );
    }
    for name in ["remote-webhook-50ms", "remote-webhook-live"] {
        let p = report.phase(name).unwrap();
        assert_eq!(
            p.out_of_order,
            Some(0),
            "{name}: each object's occurrences in order"
        );
    }
    assert!(
        report.idle_requests.keys().any(|k| k == "update leases"),
        "idle requests are counted: {:?}",
        report.idle_requests
    );
    for name in ["steady-leader", "steady-standby"] {
        let rss = report.phase(name).and_then(|p| p.rss_mib);
        assert!(
            rss.is_some_and(|mib| mib > 0.0),
            "{name}: resident memory read at the end of the steady phase: {rss:?}"
        );
    }
    assert!(report.last_line().starts_with("bench: throughput "));
}
