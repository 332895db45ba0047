//! The built-in TLS listener: a request over TLS with a test certificate, plain HTTP refused on
//! that port, and a renewed certificate picked up by a reload.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::support::*;

/// Writes a self-signed certificate for localhost/127.0.0.1 and its key; returns the DER.
fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

#[allow(deprecated)]
async fn tls_chat(
    addr: std::net::SocketAddr,
    trust: &CertificateDer<'static>,
) -> Result<(u16, Value), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post("/v1/chat/completions")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat_body("over tls").to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap()))
}

#[tokio::test]
async fn the_tls_listener_serves_a_request_and_renews_its_certificate_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let path = dir.path().join("gateway.toml");
    let cfg = mock_config(
        &format!(
            "watch_config = false\n[server.tls]\ncert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/key.pem\"",
            dir.path().display()
        ),
        "",
    );
    std::fs::write(&path, cfg).unwrap();
    let gw = spawn_gateway_file(&path).await;

    let (status, body) = tls_chat(gw.addr, &first).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");

    // Plain HTTP on the TLS port gets no answer.
    let plain = client()
        .request(
            http::Request::get(gw.url("/v1/models"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // A renewed certificate, then a reload: new connections present it.
    let second = write_cert(dir.path());
    assert!(gateway::reload::reload(&gw.state, "test").is_ok());
    assert!(
        tls_chat(gw.addr, &first).await.is_err(),
        "old certificate still served"
    );
    let (status, _) = tls_chat(gw.addr, &second).await.unwrap();
    assert_eq!(status, 200);
}

#[test]
fn unreadable_certificates_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    let cfg = mock_config(
        &format!(
            "[server.tls]\ncert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/missing.pem\"",
            dir.path().display()
        ),
        "",
    );
    let errs = runtime_from(&cfg, &[]).unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("server.tls.key_file:")),
        "{errs:?}"
    );
}
