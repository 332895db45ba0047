//! A real `redis-server` as a child process on a free loopback port, for the shared-state
//! tests: started with persistence to a temporary directory (so a restart keeps what was
//! written, as a production server with AOF would), stopped and restarted on the same port,
//! killed when dropped; or serving TLS only, with certificates from a test PKI. The binary is `redis-server` on PATH (or `$REDIS_SERVER`); a missing
//! binary fails the test with a message saying how to install it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct RedisServer {
    pub port: u16,
    /// Serving TLS only: `[cert, key, ca]` files, and whether clients must show a certificate.
    tls: Option<([String; 3], bool)>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found on PATH: the shared-state tests need it \
             (Debian/Ubuntu: apt-get install -y redis-server; or set REDIS_SERVER)"
        )
    })
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that speaks TLS only, with the PKI's server certificate; with
    /// `require_client_cert`, a client must present a certificate issued by the PKI's CA.
    pub async fn start_tls(pki: &super::tls::Pki, require_client_cert: bool) -> Self {
        let files = ["server.pem", "server.key", "ca.pem"].map(|f| pki.path(f));
        Self::start_with(Some((files, require_client_cert))).await
    }

    async fn start_with(tls: Option<([String; 3], bool)>) -> Self {
        let mut me = Self {
            port: free_port(),
            tls,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            bin: binary(),
        };
        me.spawn().await;
        me
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(([cert, key, ca], require)) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", cert, "--tls-key-file", key])
                .args(["--tls-ca-cert-file", ca])
                .args(["--tls-auth-clients", if *require { "yes" } else { "no" }]),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong().await {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answers PING; a TLS server only has to accept connections (it binds once set up).
    async fn pong(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        matches!(read, Ok(Ok(n)) if buf[..n].starts_with(b"+PONG"))
    }

    /// Kills the server (SIGKILL: with `appendfsync always` nothing acknowledged is lost).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
