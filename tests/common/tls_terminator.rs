//! A TLS terminator in front of a test server, deployed as an operator would: Debian's HAProxy
//! in HTTP mode (WebSocket upgrades become tunnels) with a server certificate signed by a private
//! CA that the test makes with openssl. A second, unrelated CA is made too, to show a client that
//! trusts the wrong one is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{find_on_path, required_tool, PATIENCE};

pub struct TlsTerminator {
    /// The port HAProxy accepts TLS on, at 127.0.0.1 (its certificate names `localhost`).
    pub port: u16,
    /// The CA certificate (PEM) that signed the terminator's certificate.
    pub ca: PathBuf,
    /// A CA certificate (PEM) that signed nothing here.
    pub other_ca: PathBuf,
    haproxy: Child,
    dir: tempfile::TempDir,
}

impl TlsTerminator {
    /// HAProxy terminating TLS for `backend`; `None` (a skip) where haproxy or openssl is
    /// missing outside CI.
    pub fn start(backend: SocketAddr) -> Option<Self> {
        let haproxy = required_tool(
            find_on_path(&["haproxy"]),
            "haproxy",
            "apt-get install haproxy",
        )?;
        let openssl = required_tool(
            find_on_path(&["openssl"]),
            "openssl",
            "apt-get install openssl",
        )?;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        make_ca(&openssl, &path("ca"));
        make_ca(&openssl, &path("other-ca"));
        make_server_certificate(&openssl, dir.path());
        // HAProxy wants the certificate and its key in one file.
        let bundle = [
            std::fs::read(path("server.pem")).expect("server certificate"),
            std::fs::read(path("server.key")).expect("server key"),
        ]
        .concat();
        std::fs::write(path("bundle.pem"), bundle).expect("write bundle");
        let port = free_port();
        let config = format!(
            "global\n    maxconn 512\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    \
             timeout server 30s\n    timeout tunnel 1h\n    timeout http-request 10s\n\
             frontend tls_in\n    bind 127.0.0.1:{port} ssl crt {bundle}\n    \
             default_backend auralis\n\
             backend auralis\n    server auralis {backend}\n",
            bundle = path("bundle.pem").display(),
        );
        std::fs::write(path("haproxy.cfg"), config).expect("write haproxy.cfg");
        let log = std::fs::File::create(path("haproxy.log")).expect("haproxy log");
        let child = Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(path("haproxy.cfg"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let terminator = Self {
            port,
            ca: path("ca.pem"),
            other_ca: path("other-ca.pem"),
            haproxy: child,
            dir,
        };
        terminator.wait_accepting();
        Some(terminator)
    }

    /// `scheme://localhost:PORT{path}`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://localhost:{}{path}", self.port)
    }

    fn wait_accepting(&self) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "haproxy never accepted on {}:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}

fn openssl_ok(openssl: &Path, args: &[&str], dir: &Path) {
    let output = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `{stem}.pem` and `{stem}.key`: a self-signed CA (EC P-256, valid two days).
fn make_ca(openssl: &Path, stem: &Path) {
    let dir = stem.parent().expect("dir");
    let name = stem.file_name().expect("name").to_string_lossy();
    openssl_ok(
        openssl,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=Auralis test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
}

/// `server.pem` and `server.key`: a leaf certificate for `localhost` signed by `ca`.
fn make_server_certificate(openssl: &Path, dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write extensions");
    openssl_ok(
        openssl,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    openssl_ok(
        openssl,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

/// A port nothing listens on now (HAProxy cannot report a port it chose itself).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}
