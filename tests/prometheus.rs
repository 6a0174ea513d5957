//! A real Prometheus scrapes a running server every second, with the project's recording and alert
//! rules loaded; the test asks Prometheus' HTTP API (not our own endpoint) that the target is up,
//! that the latency quantiles come back as numbers, and that every rule evaluates healthy. It also
//! lints `/metrics` with `promtool check metrics`.
//!
//! Needs Debian's `prometheus` (for `prometheus` and `promtool`); fails under CI (any non-empty `CI`) without it
//! and is skipped (with a message) otherwise.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const STATION: &str = "prom";

fn required_tools() -> Option<(PathBuf, PathBuf)> {
    let found = find_on_path(&["prometheus"]).zip(find_on_path(&["promtool"]));
    required_tool(
        found,
        "prometheus and promtool",
        "Debian: apt-get install prometheus",
    )
}

/// A Prometheus process with its own data directory, stopped when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: std::net::SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    fn start(binary: &Path, target: std::net::SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "auralis-prometheus-{}-{}",
            std::process::id(),
            auralis::clock::unix_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: auralis\n    static_configs:\n      - targets: ['{target}']\n",
            rules.join("recording.yml").display(),
            rules.join("alerts.yml").display(),
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config written");
        // Port 0: Prometheus binds a free port itself and logs which ("Listening on").
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prometheus starts");
        let announced = announced_address(&mut child, |line| {
            if !line.contains("msg=\"Listening on\"") {
                return None;
            }
            let address = line.split("address=").nth(1)?.split_whitespace().next()?;
            address.parse::<std::net::SocketAddr>().ok()
        });
        let Some(addr) = announced else {
            let _ = child.kill();
            panic!("prometheus did not report its address");
        };
        Self { child, dir, addr }
    }

    async fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.addr, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let value: Value = serde_json::from_str(&body).expect("API JSON");
        assert_eq!(value["status"], "success", "{path}: {value}");
        value["data"].clone()
    }

    /// Waits (bounded) until the API answers at all.
    async fn wait_ready(&self) {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                let (status, _) = http_get(self.addr, "/-/ready").await;
                if status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus did not become ready");
    }

    /// Polls `query` until it returns a finite number; returns it.
    async fn number(&self, query: &str) -> f64 {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        for _ in 0..60 {
            let data = self.api(&path).await;
            let value = data["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(v) = value.filter(|v| v.is_finite()) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{query} never returned a number");
    }
}

fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_quantiles_and_evaluates_every_rule() {
    let Some((prometheus_bin, promtool)) = required_tools() else {
        return;
    };
    let server = TestServer::start(STATION, 31).await;
    // A listener, so delivery and jitter have samples.
    let mut listener = server.connect("/ws").await;
    let listening = tokio::spawn(async move {
        loop {
            audio_frames(&mut listener, 10).await;
        }
    });

    // `/metrics` passes promtool's lint.
    let metrics = server.metrics().await;
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("metrics piped");
    let output = lint.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let prometheus = Prometheus::start(&prometheus_bin, server.addr);
    prometheus.wait_ready().await;

    // The target is up.
    let mut up = false;
    for _ in 0..60 {
        let targets = prometheus.api("/api/v1/targets").await;
        if targets["activeTargets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["health"] == "up"))
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(up, "the auralis target never came up");

    // Quantiles of every stage come back as numbers within the 100 ms budget.
    for (histogram, q) in [
        ("auralis_synthesis_duration_seconds", 0.99),
        ("auralis_chunk_delivery_seconds", 0.99),
        ("auralis_chunk_jitter_seconds", 0.95),
    ] {
        let query = format!(
            "histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{station=\"{STATION}\"}}[5s])))"
        );
        let value = prometheus.number(&query).await;
        assert!((0.0..0.1).contains(&value), "{query} = {value}");
    }
    assert_eq!(
        prometheus
            .number(&format!(
                "sum(auralis_ws_connections{{station=\"{STATION}\"}})"
            ))
            .await,
        1.0
    );

    // Every recording and alert rule loaded and evaluates without error.
    let mut checked = 0;
    for _ in 0..20 {
        let rules = prometheus.api("/api/v1/rules").await;
        let all: Vec<&Value> = rules["groups"]
            .as_array()
            .expect("rule groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert!(all.len() >= 20, "rules loaded: {}", all.len());
        // Right after loading a rule has not run yet; wait until every one has been evaluated.
        if all
            .iter()
            .all(|r| r["lastEvaluation"] != "0001-01-01T00:00:00Z")
        {
            for rule in &all {
                assert_eq!(rule["health"], "ok", "{rule}");
            }
            checked = all.len();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(checked > 0, "rules were never evaluated");
    listening.abort();
    server.shutdown().await.expect("clean shutdown");
}
