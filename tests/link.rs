//! Listeners on a constrained link, beside a healthy one on loopback. Each constrained listener
//! is an `auralis load` process in its own network namespace, reached over a veth pair whose
//! server side is shaped by a 1 Mbit/s token bucket (`tbf`), as a poor home or mobile link is:
//! Opus over WebSocket and the Ogg Opus mount fit in it with room to spare and stream without a
//! gap; raw PCM (1.5 Mbit/s) does not fit, and the server must notice, skip it to the live edge
//! or disconnect it with the reason counted, and hold no more than its bounded queue for it.
//!
//! Needs root (CAP_NET_ADMIN for namespaces and qdiscs); under CI its absence is a failure.

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use auralis::load::{self, GroupReport, LoadConfig, Transport};
use common::*;

/// How long every listener streams.
const LISTEN: Duration = Duration::from_secs(60);

/// A network namespace joined to the host by a veth pair, the host's side shaped to `rate`.
struct ShapedLink {
    namespace: String,
    host_veth: String,
    host_ip: Ipv4Addr,
}

impl ShapedLink {
    /// Link `index` (0..=9) of this test process; `None` (a skip) outside CI where this process
    /// may not create namespaces.
    fn create(index: u8, rate: &str) -> Option<Self> {
        required_tool(find_on_path(&["ip"]), "ip", "apt-get install iproute2")?;
        required_tool(find_on_path(&["tc"]), "tc", "apt-get install iproute2")?;
        let pid = std::process::id();
        let namespace = format!("auralis-link-{pid}-{index}");
        if !ip(&["netns", "add", &namespace]).status.success() {
            required_tool(
                None::<()>,
                "permission to create network namespaces",
                "run the tests as root (CAP_NET_ADMIN)",
            )?;
        }
        let tag = pid % 100_000;
        let host_veth = format!("al{tag}h{index}");
        let peer_veth = format!("al{tag}n{index}");
        let subnet = pid % 250;
        let host_ip = Ipv4Addr::new(10, 200 + index, subnet as u8, 1);
        let peer_ip = Ipv4Addr::new(10, 200 + index, subnet as u8, 2);
        let link = Self {
            namespace,
            host_veth,
            host_ip,
        };
        let ns = link.namespace.as_str();
        let host = format!("{host_ip}/30");
        let peer = format!("{peer_ip}/30");
        let steps: [&[&str]; 8] = [
            &[
                "link",
                "add",
                &link.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &peer_veth,
            ],
            &["link", "set", &peer_veth, "netns", ns],
            &["addr", "add", &host, "dev", &link.host_veth],
            &["link", "set", &link.host_veth, "up"],
            &["-n", ns, "addr", "add", &peer, "dev", &peer_veth],
            &["-n", ns, "link", "set", &peer_veth, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
            &[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &host_ip.to_string(),
            ],
        ];
        for step in steps {
            let output = ip(step);
            assert!(
                output.status.success(),
                "ip {step:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Server to listener: a token bucket at `rate`, with at most 200 ms of queue (what
        // does not fit is dropped, and TCP backs off as on a real bottleneck).
        let shaped = Command::new("tc")
            .args(["qdisc", "add", "dev", &link.host_veth, "root", "tbf"])
            .args(["rate", rate, "burst", "16kb", "latency", "200ms"])
            .output()
            .expect("tc runs");
        assert!(
            shaped.status.success(),
            "tc: {}",
            String::from_utf8_lossy(&shaped.stderr)
        );
        Some(link)
    }

    /// `auralis load` in the namespace, as a child process.
    fn load(&self, args: &[String]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(env!("CARGO_BIN_EXE_auralis"))
            .arg("load")
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// The bytes the shaper sent and dropped, as `tc -s` reports them.
    fn shaper_statistics(&self) -> String {
        let output = Command::new("tc")
            .args(["-s", "qdisc", "show", "dev", &self.host_veth])
            .output()
            .expect("tc runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = ip(&["link", "del", &self.host_veth]);
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ip runs")
}

/// Runs `command` to its end and reads the JSON report it wrote to `json`.
async fn report_of(mut command: Command, json: std::path::PathBuf) -> (Output, serde_json::Value) {
    let output = tokio::task::spawn_blocking(move || command.output().expect("auralis load runs"))
        .await
        .expect("join");
    let text = std::fs::read(&json).unwrap_or_default();
    let report = serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null);
    (output, report)
}

/// The number after `name` in `tc -s` output (`dropped 12,` / `overlimits 40`); 0 if absent.
fn counter_after(text: &str, name: &str) -> u64 {
    text.split_whitespace()
        .skip_while(|word| *word != name)
        .nth(1)
        .and_then(|n| n.trim_end_matches([',', ')']).parse().ok())
        .unwrap_or(0)
}

fn describe(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A listener that fits its link streamed the whole minute: every chunk, decoded, no gap, no
/// underrun in the simulated player, never disconnected.
fn assert_streamed_throughout(what: &str, output: &Output, report: &serde_json::Value) {
    assert!(output.status.success(), "{what}: {}", describe(output));
    let healthy = &report["healthy"];
    assert_eq!(report["connected"], 1, "{what}: {report}");
    assert_eq!(healthy["disconnected"], 0, "{what}: {report}");
    assert_eq!(healthy["gaps"], 0, "{what}: {report}");
    assert_eq!(healthy["playout_underruns"], 0, "{what}: {report}");
    assert_eq!(healthy["decode_errors"], 0, "{what}: {report}");
    let chunks = healthy["decoded_chunks"].as_u64().unwrap_or(0);
    // 60 s is 600 chunks; the first arrive once connected.
    assert!(chunks >= 590, "{what}: {chunks} chunks decoded: {report}");
}

fn assert_loopback_untouched(report: &GroupReport) {
    assert_eq!(report.connected, 1);
    assert_eq!(report.disconnected, 0);
    assert_eq!(report.gaps, 0, "the loopback listener saw a gap");
    assert_eq!(report.playout_underruns, 0);
    assert!(report.chunks >= 590, "{} chunks", report.chunks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabit_link_carries_opus_and_sheds_pcm_without_touching_others() {
    let Some(opus_link) = ShapedLink::create(0, "1mbit") else {
        return;
    };
    let Some(mount_link) = ShapedLink::create(1, "1mbit") else {
        return;
    };
    let Some(pcm_link) = ShapedLink::create(2, "1mbit") else {
        return;
    };
    let station = "link";
    // Every address: the namespaces reach the server through their host-side veth address.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = TestServer::start_on(listener, station, 51, |_| {}).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seconds = format!("{}s", LISTEN.as_secs());
    let common_args = |url: String, json: &std::path::Path| -> Vec<String> {
        [
            "--url",
            &url,
            "--clients",
            "1",
            "--duration",
            &seconds,
            "--no-server-metrics",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([json.display().to_string()])
        .collect()
    };
    let opus_json = dir.path().join("opus.json");
    let mut opus_args = common_args(
        format!("ws://{}:{port}/ws?station={station}", opus_link.host_ip),
        &opus_json,
    );
    opus_args.extend(["--codec", "opus", "--decode-fraction", "1"].map(String::from));
    let mount_json = dir.path().join("mount.json");
    let mut mount_args = common_args(
        format!(
            "http://{}:{port}/stations/{station}.opus",
            mount_link.host_ip
        ),
        &mount_json,
    );
    mount_args.extend(["--decode-fraction", "1"].map(String::from));
    let pcm_json = dir.path().join("pcm.json");
    let mut pcm_args = common_args(
        format!("ws://{}:{port}/ws?station={station}", pcm_link.host_ip),
        &pcm_json,
    );
    pcm_args.extend(["--codec", "pcm_s16le"].map(String::from));

    // The healthy listener on loopback, in this process, with the server's view of the station
    // over the whole run.
    let loopback = LoadConfig {
        metrics_url: Some(format!("http://127.0.0.1:{port}/metrics")),
        station: Some(station.to_string()),
        ..LoadConfig::new(
            format!("ws://127.0.0.1:{port}/ws?station={station}&codec=pcm_s16le"),
            Transport::WebSocket,
            1,
            LISTEN + Duration::from_secs(2),
        )
    };
    let (loopback, opus, mount, pcm) = tokio::join!(
        load::run(&loopback),
        report_of(opus_link.load(&opus_args), opus_json),
        report_of(mount_link.load(&mount_args), mount_json),
        report_of(pcm_link.load(&pcm_args), pcm_json),
    );

    // What the run saw, for docs/perf.md (`cargo test --test link -- --nocapture`).
    for (what, report) in [
        ("opus-ws", &opus.1),
        ("ogg-mount", &mount.1),
        ("pcm-ws", &pcm.1),
    ] {
        let h = &report["healthy"];
        eprintln!(
            "link {what}: chunks {} gaps {} missing {} disconnected {} underruns {} \
             latency p50/p99 {}/{} ms receive {:.3} Mbit/s",
            h["chunks"],
            h["gaps"],
            h["missing_chunks"],
            h["disconnected"],
            h["playout_underruns"],
            h["latency"]["p50_ms"],
            h["latency"]["p99_ms"],
            report["harness"]["receive_mbit_per_second"]
                .as_f64()
                .unwrap_or(0.0),
        );
    }
    eprintln!("link server view: {:?}", loopback.server);
    eprintln!("link pcm shaper: {}", pcm_link.shaper_statistics().trim());
    assert_streamed_throughout("Opus over WebSocket at 1 Mbit/s", &opus.0, &opus.1);
    assert_streamed_throughout("the Ogg Opus mount at 1 Mbit/s", &mount.0, &mount.1);
    assert_loopback_untouched(&loopback.healthy);

    // PCM does not fit: the shaper had to drop or hold back, and the server noticed.
    let (pcm_output, pcm) = pcm;
    assert!(pcm_output.status.success(), "{}", describe(&pcm_output));
    assert_eq!(pcm["connected"], 1, "{pcm}");
    let shaper = pcm_link.shaper_statistics();
    let held_back = counter_after(&shaper, "overlimits") + counter_after(&shaper, "dropped");
    assert!(held_back > 0, "the PCM link never hit its limit: {shaper}");
    let view = loopback.server.as_ref().expect("the server's view");
    let lag_disconnects = ["persistent_lag", "send_timeout"]
        .iter()
        .filter_map(|reason| view.disconnections.get(*reason))
        .sum::<f64>();
    assert!(
        view.chunks_dropped > 0.0 || lag_disconnects > 0.0,
        "the server never noticed the lagging PCM listener: {view:?}"
    );
    let pcm_healthy = &pcm["healthy"];
    assert!(
        pcm_healthy["gaps"].as_u64() > Some(0) || pcm_healthy["disconnected"].as_u64() > Some(0),
        "the PCM listener saw neither a skip nor a disconnection: {pcm}"
    );
    // Bounded memory for it: what the server holds for a listener is its queue of chunks plus
    // the socket's send buffer, so what it receives is never far behind the live edge: at most
    // the render-ahead (0.3 s), the queue (16 chunks, 1.6 s), the send buffer (64 KiB, doubled
    // by the kernel: 1 s at 1 Mbit/s) and the shaper's 0.2 s, about 3.1 s. An unbounded queue
    // would leave it ever further behind: a third of the stream does not fit, 20 s in a minute.
    let latency_p99 = pcm_healthy["latency"]["p99_ms"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(
        latency_p99 < 4000.0,
        "the PCM listener fell {latency_p99} ms behind: the server queued without bound: {pcm}"
    );
    drop(server);
}
