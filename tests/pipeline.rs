//! Single-replica delivery against kube-sim over HTTP: every generated occurrence exported exactly
//! once (lost 0, duplicated 0) through cold start, steady watch with repeats, and API faults.

mod common;

use std::time::Duration;

use common::{ROUTE_ALL, Running, config, init};
use kube_event_exporter::source::Start;
use kube_sim::{Generator, GeneratorConfig, Sim, SimConfig};

fn gen_cfg(rate: f64, total: u64) -> GeneratorConfig {
    GeneratorConfig {
        rate_per_sec: rate,
        total: Some(total),
        repeat_ratio: 0.3,
        namespaces: 6,
        seed: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_watch_exports_every_occurrence_including_repeats_once() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "maxEventAgeSeconds: 60\nleaderElection: {enabled: false}",
        ROUTE_ALL,
        &["all"],
    );
    let run = Running::start(&cfg, &sim.url(), Start::Cold, dir.path()).await;
    let g: Generator = sim.generate(gen_cfg(400.0, 600));
    g.wait().await;
    let generated = g.generated();
    assert!(
        generated.iter().any(|k| !k.ends_with(":1")),
        "the generator made repeats"
    );
    let (d, report) = run.finish("all", &generated, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert!(report.drained, "{report:?}");
}
