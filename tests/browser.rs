//! The browser client in real Chromium: headless, autoplay allowed, driven over the DevTools
//! protocol. Assertions read the page's own state (`window.auralis`, fed by the AudioWorklet),
//! never mocks: it played non-silent Opus (decoded with WebCodecs) with zero underruns, the
//! server received its `stats`, and it resumed by itself after a server restart with no sequence
//! number missing. Then the built-in dashboard (`/dashboard`)
//! must draw the live feed. Screenshots of both are saved to `target/browser-artifacts/`.
//!
//! The DevTools client is a few calls over the WebSocket stack the project already uses, so the
//! test needs no Node or npm. Chromium comes from `AURALIS_CHROMIUM` or `PATH`; when it is
//! missing the test fails under CI (any non-empty `CI`) and is skipped (with a message) otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const STATION: &str = "browser";

fn find_chromium() -> Option<PathBuf> {
    match std::env::var("AURALIS_CHROMIUM") {
        Ok(path) => Some(PathBuf::from(path)),
        Err(_) => find_on_path(&[
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ]),
    }
}

/// A headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    _profile: TempDir,
    endpoint: String,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    fn launch(executable: &PathBuf) -> Self {
        let profile = TempDir(std::env::temp_dir().join(format!(
            "auralis-chromium-{}-{}",
            std::process::id(),
            auralis::clock::unix_nanos()
        )));
        std::fs::create_dir_all(&profile.0).expect("profile dir");
        let mut child = Command::new(executable)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
                "--window-size=480,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium prints its DevTools endpoint on stderr; keep draining it afterwards so the
        // pipe never fills.
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium announces its DevTools endpoint");
        Self {
            child,
            _profile: profile,
            endpoint,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The few DevTools-protocol calls the test needs, on one page session.
struct Page {
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Page {
    async fn open(browser: &Browser) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(&browser.endpoint)
            .await
            .expect("DevTools connects");
        let mut page = Page {
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = page
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        page.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        page
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("DevTools send");
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method} answered in time"))
                .expect("DevTools open")
                .expect("DevTools message");
            let Message::Text(text) = reply else { continue };
            let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// A page value as JSON, or `Null` while it does not exist.
    async fn value(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": format!("JSON.stringify({expression} ?? null)"), "returnByValue": true}),
            )
            .await;
        let text = result["result"]["value"].as_str().unwrap_or("null");
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    /// Polls `window.auralis` until `done` holds; panics with the last state after `limit`.
    async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_value("window.auralis", what, limit, done)
            .await
    }

    /// Polls a page value until `done` holds; panics with the last value after `limit`.
    async fn wait_for_value(
        &mut self,
        expression: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let state = self.value(expression).await;
            if done(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still {state}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("artifact dir");
        std::fs::write(path, &png).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
    }
}

fn number(state: &Value, field: &str) -> f64 {
    state[field]
        .as_f64()
        .unwrap_or_else(|| panic!("window.auralis.{field} is a number: {state}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_stream_reports_stats_and_survives_a_restart() {
    let Some(chromium) = required_tool(
        find_chromium(),
        "Chromium",
        "install Debian's chromium or set AURALIS_CHROMIUM",
    ) else {
        return;
    };
    // A state directory keeps the station's history (and its epoch) across the restart below.
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_path_buf();
    let with_state = move |config: &mut auralis::config::Config| config.state_dir = Some(state_dir);
    let server = TestServer::start_with(STATION, 3, with_state.clone()).await;
    let addr = server.addr;
    let browser = Browser::launch(&chromium);
    let mut page = Page::open(&browser).await;
    page.navigate(&format!("http://{addr}/?autoplay=1")).await;

    let playing = page
        .wait_for("playback starts", Duration::from_secs(30), |s| {
            s["state"] == "playing"
        })
        .await;
    assert_eq!(playing["station"], STATION, "{playing}");

    // Several seconds of playback, measured by the worklet itself.
    let heard = page
        .wait_for("seconds of audio", Duration::from_secs(30), |s| {
            s["nonSilentFrames"].as_f64().unwrap_or(0.0)
                >= 4.0 * s["sampleRate"].as_f64().unwrap_or(f64::INFINITY)
                && s["statsSent"].as_f64().unwrap_or(0.0) >= 3.0
        })
        .await;
    let rate = number(&heard, "sampleRate");
    assert!(
        number(&heard, "nonSilentFrames") >= 4.0 * rate,
        "the worklet rendered seconds of non-silent audio: {heard}"
    );
    // Underruns right after the page's main thread was blocked (a starved machine) are the tab's;
    // the stream itself must cause none.
    assert_eq!(
        number(&heard, "underruns") - number(&heard, "tabUnderruns"),
        0.0,
        "{heard}"
    );
    assert_eq!(number(&heard, "gaps"), 0.0, "{heard}");
    // Chromium has WebCodecs: the player asked for Opus, the station's default, and decoded it.
    assert_eq!(heard["codec"], "opus", "{heard}");
    assert_eq!(number(&heard, "decodeErrors"), 0.0, "{heard}");
    assert!(number(&heard, "statsSent") >= 3.0, "{heard}");
    println!(
        "first sound {} ms, latency {} ms, buffer {} ms (target {} ms), shared memory {}",
        heard["firstSoundMs"],
        heard["latencyMs"],
        heard["bufferMs"],
        heard["targetMs"],
        heard["sharedMemory"]
    );

    // The server received the page's playback reports.
    let metrics = server.metrics().await;
    let reports = metric_value(
        &metrics,
        &format!("auralis_client_reports_total{{station=\"{STATION}\"}}"),
    )
    .unwrap_or(0.0);
    assert!(reports >= 3.0, "client reports on the server: {reports}");

    // Restart the server on the same port: the page reconnects, resumes after the last chunk it
    // held (nothing missing), and plays on by itself.
    server.shutdown().await.expect("clean shutdown");
    let listener = rebind(addr).await;
    let restarted = TestServer::start_on(listener, STATION, 3, with_state).await;
    let back = page
        .wait_for("reconnects and plays", Duration::from_secs(30), |s| {
            s["reconnects"].as_f64().unwrap_or(0.0) >= 1.0 && s["state"] == "playing"
        })
        .await;
    assert_eq!(back["lastResume"]["outcome"], "resumed", "{back}");
    assert_eq!(
        back["epoch"], playing["epoch"],
        "the epoch survived the restart"
    );
    assert_eq!(number(&back, "missingSequences"), 0.0, "{back}");
    let before_restart = number(&back, "nonSilentFrames");
    let after = page
        .wait_for("audio after the restart", Duration::from_secs(30), |s| {
            s["nonSilentFrames"].as_f64().unwrap_or(0.0) > before_restart
        })
        .await;
    assert!(
        number(&after, "nonSilentFrames") > before_restart,
        "audio flows again after the restart: {after}"
    );

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let artifacts = target.join("browser-artifacts");
    page.screenshot(&artifacts.join("player.png")).await;

    // The built-in dashboard draws the live feed (while the page above keeps a listener).
    let mut dashboard = Page::open(&browser).await;
    dashboard
        .navigate(&format!("http://{addr}/dashboard"))
        .await;
    let drawn = dashboard
        .wait_for_value(
            "window.auralisDashboard",
            "the dashboard draws live data",
            Duration::from_secs(30),
            |d| d["events"].as_f64() >= Some(2.0) && d["charts"].as_f64() >= Some(4.0),
        )
        .await;
    assert_eq!(drawn["connected"], true, "{drawn}");
    assert_eq!(
        drawn["lastEvent"]["stations"][0]["name"], STATION,
        "{drawn}"
    );
    assert!(
        drawn["lastEvent"]["listeners"].as_f64() >= Some(1.0),
        "the player is counted: {drawn}"
    );
    dashboard.screenshot(&artifacts.join("dashboard.png")).await;
    restarted.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_opus_mount_in_an_audio_element() {
    let Some(chromium) = required_tool(
        find_chromium(),
        "Chromium",
        "install Debian's chromium or set AURALIS_CHROMIUM",
    ) else {
        return;
    };
    let server = TestServer::start("browser-mount", 28).await;
    let browser = Browser::launch(&chromium);
    let mut page = Page::open(&browser).await;
    page.navigate(&format!("http://{}/healthz", server.addr))
        .await;
    page.wait_for_value(
        "document.readyState",
        "the page loads",
        Duration::from_secs(30),
        |state| state == "complete",
    )
    .await;
    let started = page
        .value(
            "(() => { window.mount = { errors: [] }; const audio = new Audio('/stations/browser-mount.opus'); \
             audio.addEventListener('error', () => window.mount.errors.push(audio.error ? audio.error.code : 'error')); \
             window.mount.audio = audio; audio.play().catch(e => window.mount.errors.push(String(e))); return true; })()",
        )
        .await;
    assert_eq!(started, Value::Bool(true));
    let state = page
        .wait_for_value(
            "({ time: window.mount.audio.currentTime, errors: window.mount.errors })",
            "the <audio> element plays the mount",
            Duration::from_secs(30),
            |state| {
                !state["errors"].as_array().is_none_or(Vec::is_empty)
                    || state["time"].as_f64().unwrap_or(0.0) >= 3.0
            },
        )
        .await;
    assert_eq!(state["errors"], json!([]), "no error event: {state}");
    let playing = page
        .value("(window.mount.audio.error === null && !window.mount.audio.paused)")
        .await;
    assert_eq!(playing, Value::Bool(true), "still playing");
    // The element is an HTTP listener of the station.
    wait_for_metric(
        &server,
        "auralis_ws_connections{station=\"browser-mount\",transport=\"http\"}",
        1.0,
    )
    .await;
}
