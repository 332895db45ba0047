//! Test support: `spawn_gateway(toml)` runs the real server in-process on `127.0.0.1:0`, and
//! `MockUpstream` is a builder-style OpenAI-shaped upstream on `127.0.0.1:0` that records what
//! it received. A small hyper client talks to both.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway::config::{self, Runtime};
use gateway::AppState;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};

pub mod redis;
pub mod tls;

/// The virtual key every test config accepts unless it says otherwise.
pub const KEY: &str = "sk-test-alpha";

pub fn hashed(key: &str) -> String {
    gateway::cli::hashed(key)
}

/// A running in-process gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The server's shared state (its ledger, clock and config snapshot).
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Starts the graceful shutdown and returns a handle that finishes when serving stops.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.done.take().expect("shutdown begun twice")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn runtime_from(toml: &str, env: &[(&str, &str)]) -> Result<Runtime, Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).expect("write config");
    let cfg = config::load(&path)?;
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut rt = Runtime::build(&cfg, &|name| env.get(name).cloned())?;
    rt.ops.config_hash = config::hash_of(&config::effective(&path)?).into();
    Ok(rt)
}

/// A gateway in front of `up` with `config_for(up, extra)` and the upstream key set.
pub async fn gateway_for(up: &MockHandle, extra: &str) -> Gateway {
    spawn_gateway_env(
        &config_for(&up.base_url(), extra),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await
}

pub async fn spawn_gateway(toml: &str) -> Gateway {
    spawn_gateway_env(toml, &[]).await
}

pub async fn spawn_gateway_env(toml: &str, env: &[(&str, &str)]) -> Gateway {
    let rt = runtime_from(toml, env).unwrap_or_else(|e| panic!("config rejected: {e:#?}"));
    serve_state(AppState::new(rt).expect("state")).await
}

/// A gateway serving the config file at `path`, which it reloads (watch, SIGHUP, endpoint).
pub async fn spawn_gateway_file(path: &std::path::Path) -> Gateway {
    let rt = gateway::cli::load_runtime(path).unwrap_or_else(|e| panic!("config rejected: {e:#?}"));
    let state = AppState::new(rt).expect("state");
    state
        .config_path
        .set(path.to_path_buf())
        .expect("path set once");
    serve_state(state).await
}

async fn serve_state(state: Arc<AppState>) -> Gateway {
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (addr, admin_addr) = (
        api.local_addr().expect("addr"),
        admin.local_addr().expect("addr"),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let st = state.clone();
    let done = tokio::spawn(async move {
        gateway::serve(api, admin, st, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    Gateway {
        addr,
        admin: admin_addr,
        state,
        shutdown: Some(tx),
        done: Some(done),
    }
}

/// A config with one upstream provider at `base_url` (kind openai, key from `UPSTREAM_KEY`),
/// models `gpt-4o-mini` -> `gpt-4o-mini-2024-07-18` and `text-embedding-3-small`, and one
/// project "alpha" (key `KEY`) allowed everything. `extra` is appended.
pub fn config_for(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 5

[[providers]]
name = "up"
kind = "openai"
base_url = "{base_url}"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "up", model = "gpt-4o-mini-2024-07-18" }}]

[[models]]
name = "text-embedding-3-small"
deployments = [{{ provider = "up", model = "text-embedding-3-small" }}]

[[projects]]
name = "alpha"
keys = ["{key}"]
models = ["*"]
{extra}
"#,
        key = hashed(KEY)
    )
}

/// A config served by the built-in mock provider: `server` goes into `[server]`, `mock` into
/// `[providers.mock]`; models `gpt-4o-mini` and `text-embedding-3-small`; project "alpha"
/// with key `KEY`.
pub fn mock_config(server: &str, mock: &str) -> String {
    format!(
        r#"
[server]
{server}

[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
{mock}

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[models]]
name = "text-embedding-3-small"
deployments = [{{ provider = "mock", model = "text-embedding-3-small" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        hashed(KEY)
    )
}

/// A config with one `kind = "openai"` provider per upstream (named `p0`, `p1`, ...), one model
/// `m` whose deployments are those providers in order (upstream model `up-m`), the given
/// `[[models]]` extras (`model_extra`, e.g. `strategy = "weighted"`), and project "alpha".
pub fn multi_config(ups: &[&MockHandle], model_extra: &str, rest: &str) -> String {
    let mut out = String::from("[server]\nrequest_timeout_secs = 10\n\n[routing]\nbackoff_base_ms = 5\nbackoff_max_ms = 20\n\n");
    for (i, up) in ups.iter().enumerate() {
        out.push_str(&format!(
            "[[providers]]\nname = \"p{i}\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"UPSTREAM_KEY\"\n\n",
            up.base_url()
        ));
    }
    let deployments: Vec<String> = (0..ups.len())
        .map(|i| format!("{{ provider = \"p{i}\", model = \"up-m\" }}"))
        .collect();
    out.push_str(&format!(
        "[[models]]\nname = \"m\"\n{model_extra}\ndeployments = [{}]\n\n",
        deployments.join(", ")
    ));
    out.push_str(&format!(
        "[[projects]]\nname = \"alpha\"\nkeys = [\"{}\"]\n{rest}\n",
        hashed(KEY)
    ));
    out
}

pub fn m_body() -> Value {
    serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

pub const UPSTREAM_KEY: &str = "sk-upstream-SECRET-0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// Client

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The OpenAI error envelope's `code`, asserting the envelope's shape on the way.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string(), "no message in {v}");
        assert!(
            e.get("type").is_some() && e.get("param").is_some() && e.get("code").is_some(),
            "{v}"
        );
        e["code"].as_str().unwrap_or_default().to_string()
    }
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let resp = client().request(req).await.expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post_raw(url: &str, key: Option<&str>, body: impl Into<Bytes>) -> Reply {
    let mut b = Request::post(url).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    send(b.body(Full::new(body.into())).expect("request")).await
}

pub async fn post_json(url: &str, key: Option<&str>, body: &Value) -> Reply {
    post_raw(url, key, body.to_string()).await
}

pub async fn get(url: &str, key: Option<&str>) -> Reply {
    let mut b = Request::get(url);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    send(b.body(Full::new(Bytes::new())).expect("request")).await
}

pub fn chat_body(content: &str) -> Value {
    serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
}

/// The admin listener's Prometheus text.
pub async fn metrics(gw: &Gateway) -> String {
    get(&gw.admin_url("/metrics"), None).await.text()
}

/// Sends a chat request and returns the response with its body unread.
pub async fn open_stream(gw: &Gateway, body: &Value) -> http::Response<Incoming> {
    let req = Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    client().request(req).await.expect("response")
}

/// The non-empty `delta.content` pieces of an SSE chat stream, in order.
pub fn sse_pieces(body: &str) -> Vec<String> {
    sse_data(body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Data payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let lines: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Mock upstream

/// A request the mock upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The query string, without `?` (empty when there is none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("upstream got JSON")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
enum Behaviour {
    Json(StatusCode, String, Vec<(String, String)>),
    /// SSE events (each a full `data: ...\n\n` frame); after `gate_after` frames, wait for the
    /// gate to open; then `delay` between the rest.
    Stream {
        frames: Vec<String>,
        delay: Duration,
        gate_after: Option<usize>,
    },
    /// A 200 with `content_type` whose body is `chunks`, each sent as its own write (binary
    /// streams such as AWS event-stream, cut wherever the test likes).
    Raw {
        content_type: String,
        chunks: Vec<Bytes>,
    },
    /// Never answers (for timeouts).
    Hang,
    /// Streams one frame every `delay` forever.
    Endless(Duration),
}

type Headers = Vec<(String, String)>;

pub struct MockUpstream {
    behaviour: Behaviour,
    /// The first N requests get this status, body and headers.
    fail_first: Option<(usize, StatusCode, String, Headers)>,
    /// Pause before every answer.
    delay: Duration,
}

#[derive(Clone)]
pub struct MockHandle {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Opened by the test to let a gated stream continue.
    pub gate: Arc<Notify>,
    /// Set when a streamed body could not be delivered any more (the gateway hung up).
    pub hung_up: Arc<Notify>,
    pub hung_up_count: Arc<AtomicUsize>,
}

impl MockHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
    pub fn last(&self) -> Received {
        self.requests().pop().expect("upstream received nothing")
    }
}

pub fn completion_json(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-up1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 2}}
    })
    .to_string()
}

/// The frames of a streamed completion of `pieces`, with a usage chunk when `usage`.
pub fn stream_frames(pieces: &[&str], usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let c = serde_json::json!({"id": "chatcmpl-up1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut frames = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for p in pieces {
        frames.push(chunk(serde_json::json!({"content": p}), Value::Null));
    }
    frames.push(chunk(serde_json::json!({}), serde_json::json!("stop")));
    if usage {
        let u = serde_json::json!({"id": "chatcmpl-up1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini-2024-07-18", "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
        frames.push(format!("data: {u}\n\n"));
    }
    frames.push("data: [DONE]\n\n".into());
    frames
}

impl MockUpstream {
    /// Answers every request with a chat completion saying "hello from upstream".
    pub fn openai() -> Self {
        Self {
            behaviour: Behaviour::Json(
                StatusCode::OK,
                completion_json("hello from upstream"),
                vec![],
            ),
            fail_first: None,
            delay: Duration::ZERO,
        }
    }

    /// Pauses before every answer.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn reply(mut self, status: u16, body: &str) -> Self {
        self.behaviour = Behaviour::Json(
            StatusCode::from_u16(status).expect("status"),
            body.into(),
            vec![],
        );
        self
    }

    pub fn reply_with_headers(mut self, status: u16, body: &str, headers: &[(&str, &str)]) -> Self {
        self.behaviour = Behaviour::Json(
            StatusCode::from_u16(status).expect("status"),
            body.into(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    pub fn stream(mut self, frames: Vec<String>, delay: Duration) -> Self {
        self.behaviour = Behaviour::Stream {
            frames,
            delay,
            gate_after: None,
        };
        self
    }

    /// Streams `frames`, but holds everything after the first `n` until `gate` is notified.
    pub fn stream_gated(mut self, frames: Vec<String>, n: usize) -> Self {
        self.behaviour = Behaviour::Stream {
            frames,
            delay: Duration::ZERO,
            gate_after: Some(n),
        };
        self
    }

    /// Answers 200 with `content_type` and `body` cut into pieces of `chunk` bytes, each a
    /// separate write.
    pub fn raw(mut self, content_type: &str, body: &[u8], chunk: usize) -> Self {
        self.behaviour = Behaviour::Raw {
            content_type: content_type.into(),
            chunks: body
                .chunks(chunk.max(1))
                .map(Bytes::copy_from_slice)
                .collect(),
        };
        self
    }

    pub fn hang(mut self) -> Self {
        self.behaviour = Behaviour::Hang;
        self
    }

    pub fn endless(mut self, every: Duration) -> Self {
        self.behaviour = Behaviour::Endless(every);
        self
    }

    /// The first `n` requests fail with `status`.
    pub fn fail_n(self, n: usize, status: u16, body: &str) -> Self {
        self.fail_n_with(n, status, body, &[])
    }

    /// The first `n` requests fail with `status`, `body` and `headers`.
    pub fn fail_n_with(
        mut self,
        n: usize,
        status: u16,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        self.fail_first = Some((
            n,
            StatusCode::from_u16(status).expect("status"),
            body.into(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        self
    }

    pub async fn start(self) -> MockHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let handle = MockHandle {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
            gate: Arc::new(Notify::new()),
            hung_up: Arc::new(Notify::new()),
            hung_up_count: Arc::default(),
        };
        let served = Arc::new(AtomicUsize::new(0));
        let me = Arc::new(self);
        let h = handle.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (me, h, served) = (me.clone(), h.clone(), served.clone());
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (me, h, served) = (me.clone(), h.clone(), served.clone());
                    async move { Ok::<_, Infallible>(me.answer(req, &h, &served).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        handle
    }

    async fn answer(
        &self,
        req: Request<Incoming>,
        h: &MockHandle,
        served: &AtomicUsize,
    ) -> Response<TestBody> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        h.received.lock().expect("lock").push(Received {
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            headers: parts.headers,
            body,
        });
        let n = served.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some((count, status, body, headers)) = &self.fail_first {
            if n < *count {
                return json_response(*status, body.clone(), headers);
            }
        }
        match self.behaviour.clone() {
            Behaviour::Json(status, body, headers) => json_response(status, body, &headers),
            Behaviour::Raw {
                content_type,
                chunks,
            } => {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                let (hung_up, count) = (h.hung_up.clone(), h.hung_up_count.clone());
                tokio::spawn(async move {
                    for c in chunks {
                        if tx.send(c).await.is_err() {
                            count.fetch_add(1, Ordering::SeqCst);
                            hung_up.notify_one();
                            return;
                        }
                        // Let each piece go out as its own read on the other side.
                        tokio::task::yield_now().await;
                    }
                });
                Response::builder()
                    .header("content-type", content_type)
                    .body(TestBody {
                        rx: Some(rx),
                        once: None,
                    })
                    .expect("response")
            }
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Behaviour::Stream {
                frames,
                delay,
                gate_after,
            } => {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                let (gate, hung_up, count) =
                    (h.gate.clone(), h.hung_up.clone(), h.hung_up_count.clone());
                tokio::spawn(async move {
                    for (i, f) in frames.into_iter().enumerate() {
                        if gate_after == Some(i) {
                            gate.notified().await;
                        }
                        if i > 0 && !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if tx.send(Bytes::from(f)).await.is_err() {
                            count.fetch_add(1, Ordering::SeqCst);
                            hung_up.notify_one();
                            return;
                        }
                    }
                });
                sse_response(rx)
            }
            Behaviour::Endless(every) => {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                let (hung_up, count) = (h.hung_up.clone(), h.hung_up_count.clone());
                tokio::spawn(async move {
                    let frames = stream_frames(&["tick"], false);
                    let mut i = 0usize;
                    loop {
                        let f = frames[1].clone();
                        let f = if i == 0 { frames[0].clone() } else { f };
                        i += 1;
                        if tx.send(Bytes::from(f)).await.is_err() {
                            count.fetch_add(1, Ordering::SeqCst);
                            hung_up.notify_one();
                            return;
                        }
                        tokio::time::sleep(every).await;
                    }
                });
                sse_response(rx)
            }
        }
    }
}

/// A body fed by a channel; dropping it (the peer hung up) makes the sender fail.
pub struct TestBody {
    rx: Option<mpsc::Receiver<Bytes>>,
    once: Option<Bytes>,
}

impl TestBody {
    /// A body of several frames and no declared length (sent chunked).
    pub fn chunks(chunks: Vec<Bytes>) -> Self {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            let _ = tx.try_send(c);
        }
        Self {
            rx: Some(rx),
            once: None,
        }
    }
}

impl TestBody {
    /// A body that sends `first` and then nothing until the returned sender is dropped.
    pub fn trickle(first: Bytes) -> (Self, mpsc::Sender<Bytes>) {
        let (tx, rx) = mpsc::channel(4);
        let _ = tx.try_send(first);
        (
            Self {
                rx: Some(rx),
                once: None,
            },
            tx,
        )
    }
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(b) = self.once.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match self.rx.as_mut() {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
}

fn json_response(
    status: StatusCode,
    body: String,
    headers: &[(String, String)],
) -> Response<TestBody> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(TestBody {
        rx: None,
        once: Some(Bytes::from(body)),
    })
    .expect("response")
}

fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response<TestBody> {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(TestBody {
            rx: Some(rx),
            once: None,
        })
        .expect("response")
}

/// A port on which nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// The real binary serving `config`, its `listen` address read from its JSON log.
pub struct Served {
    pub child: std::process::Child,
    pub addr: String,
}

/// A test that fails half-way must not leave the server running.
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve_binary(config: &std::path::Path) -> Served {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_remove("GATEWAY_CONFIG")
        .env("RUST_LOG", "info")
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway starts");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(listen) = v["listen"].as_str() {
            break listen.to_string();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Served { child, addr }
}

pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}
