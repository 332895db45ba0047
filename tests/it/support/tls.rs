//! Test-only network pieces for egress: a CA with a server certificate (and a client
//! certificate) issued by it, made fresh with rcgen in each test; a TLS front that terminates
//! TLS on 127.0.0.1:0 and pipes the plaintext to a `MockUpstream`; and a small HTTP CONNECT
//! proxy that records the tunnels it opened and can demand credentials or refuse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A test CA, a server certificate for `localhost`, `127.0.0.1` and `upstream.test`, and a
/// client certificate, all written as PEM files into a temporary directory (`ca.pem`,
/// `server.pem`, `server.key`, `client.pem`, `client.key`).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "gateway test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);

        let issue = |names: Vec<String>, cn: &str| {
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = issue(
            vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "upstream.test".into(),
            ],
            "localhost",
        );
        let (client_pem, client_key_pem) = issue(vec!["gateway-client".into()], "gateway");
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = ca_cert.pem();
        for (name, pem) in [
            ("ca.pem", &ca_pem),
            ("server.pem", &server_pem),
            ("server.key", &server_key_pem),
            ("client.pem", &client_pem),
            ("client.key", &client_key_pem),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Self {
            dir,
            ca_pem,
            server_pem,
            server_key_pem,
        }
    }

    pub fn path(&self, name: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        p.to_string_lossy().into_owned()
    }
}

/// What the TLS front saw.
#[derive(Clone, Default)]
pub struct FrontLog {
    /// ALPN protocol negotiated per connection (empty: none).
    pub alpn: Arc<Mutex<Vec<String>>>,
    /// Handshakes that failed (the client did not trust the certificate, no client cert...).
    pub failed: Arc<Mutex<u32>>,
}

/// Terminates TLS with the PKI's server certificate on 127.0.0.1:0 and pipes each connection
/// to `target`. With `require_client_cert`, only clients with a certificate from the CA get in.
#[allow(deprecated)] // ring, as the gateway uses
pub async fn tls_front(
    pki: &Pki,
    target: SocketAddr,
    require_client_cert: bool,
) -> (SocketAddr, FrontLog) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let chain = vec![CertificateDer::from_pem_slice(pki.server_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = FrontLog::default();
    let l = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, l) = (acceptor.clone(), l.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(_) => {
                        *l.failed.lock().unwrap() += 1;
                        return;
                    }
                };
                let alpn = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                l.alpn.lock().unwrap().push(alpn);
                if let Ok(mut up) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    (addr, log)
}

/// How the test proxy treats a CONNECT.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Open,
    /// 407 unless `Proxy-Authorization: Basic base64(user:pass)` matches.
    Auth(&'static str),
    /// 403 to everything (a policy that blocks the destination).
    Deny,
}

pub struct TestProxy {
    pub addr: SocketAddr,
    /// `host:port` of every CONNECT that was let through.
    pub tunnels: Arc<Mutex<Vec<String>>>,
    /// Requests that were not tunnels or were refused, by their first line.
    pub refused: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub async fn connect_proxy(mode: ProxyMode) -> TestProxy {
    use base64::Engine;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = TestProxy {
        addr: listener.local_addr().unwrap(),
        tunnels: Arc::default(),
        refused: Arc::default(),
    };
    let (tunnels, refused) = (proxy.tunnels.clone(), proxy.refused.clone());
    let expected = match mode {
        ProxyMode::Auth(creds) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )),
        _ => None,
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let (tunnels, refused, expected) = (tunnels.clone(), refused.clone(), expected.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let first = head.lines().next().unwrap_or("").to_string();
                let mut parts = first.split_whitespace();
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let auth = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("proxy-authorization")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let answer = if method != "CONNECT" || mode == ProxyMode::Deny {
                    Some("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                } else if expected.as_ref().is_some_and(|e| *e != auth) {
                    Some("HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\r\n")
                } else {
                    None
                };
                if let Some(answer) = answer {
                    refused.lock().unwrap().push(first);
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
                // Like a proxy with its own DNS view: every name is on this machine.
                let port = target.rsplit_once(':').map_or("", |(_, p)| p);
                let Ok(mut up) = TcpStream::connect(format!("127.0.0.1:{port}")).await else {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                tunnels.lock().unwrap().push(target.to_string());
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            });
        }
    });
    proxy
}
