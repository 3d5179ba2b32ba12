//! Outbound HTTP of plugins: the `wasi:http` send hook that enforces the connection's
//! allow-list, resolves the host once and connects only to an address that passed
//! [`crate::egress`]'s check (our own sender, not wasmtime-wasi-http's default one, which would
//! resolve the name again), caps requests and response sizes, applies timeouts and records one
//! API-call row per request.
//!
//! One file per job: `auth.rs` (host-managed credentials), `pace.rs` (the rate limit at the
//! moment a request leaves), `send.rs` (the sender), `body.rs` (body metering) and `record.rs`
//! (the API-call rows); the hook and the allow-list are here.

mod auth;
mod body;
mod pace;
mod record;
mod send;

pub use auth::*;
use body::*;
pub use pace::{PaceHandle, Pacer};
pub use record::*;
pub use send::*;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::{self, Refusal, Resolver};
use crate::pool::{Key, Pool};
use dibop_core::ApiCallStatus;
use hyper::client::conn::http1::SendRequest;

/// What a plugin call may do on the network.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    /// `host` (any port) or `host:port`, lowercase. Empty denies everything.
    pub allowed_hosts: Vec<String>,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
    /// Requests one call may make.
    pub max_requests: u32,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
    pub connect_timeout: Duration,
    /// When the whole call must be done; bounds every request's timeouts.
    pub deadline: Instant,
}

pub use super::redact::Redactor;

use super::redact::is_sensitive_name;

pub use dibop_store::{ApiCallRecord, CallOrigin};

/// The `wasi:http` hooks of one call.
pub struct Outbound {
    pub policy: Arc<NetworkPolicy>,
    pub origin: Arc<CallOrigin>,
    pub recorder: Arc<Recorder>,
    pub net: Arc<Net>,
    /// Host-managed authentication of the connection's requests.
    pub auth: Option<AuthHandle>,
    /// The connection's rate limit at the moment the call's first request leaves.
    pub pacer: Option<PaceHandle>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let policy = self.policy.clone();
        let origin = self.origin.clone();
        let recorder = self.recorder.clone();
        let net = self.net.clone();
        let auth = self.auth.clone();
        // Which request is the first is settled here, in the order the guest made them.
        let paced = self.pacer.clone().map(|pacer| (pacer.0, self.recorder.first()));
        Box::new(async move {
            if let Some((pacer, first)) = paced
                && !pace::paced(pacer, &recorder, first, policy.deadline).await
            {
                return Err(HttpError::ConnectionLimitReached);
            }
            match auth {
                Some(auth) => send_authenticated(net, policy, origin, recorder, auth.0, request, options).await,
                None => send(net, policy, origin, recorder, request, options).await,
            }
        })
    }
}

/// Whether `host:port` matches an allow-list entry (`host` for any port, or `host:port`).
pub fn host_allowed(allowed: &[String], host: &str, port: u16) -> bool {
    allowed.iter().any(|entry| match allow_list_entry(entry) {
        (h, Some(p)) => h == host && p == Some(port),
        (h, None) => h == host,
    })
}

/// An allow-list entry as its lowercase host and, when it names one, its port: `None` for an
/// entry without a port (any port), `Some(None)` for a port that is no `u16`. The brackets of
/// an IPv6 address are dropped where a port follows.
pub fn allow_list_entry(entry: &str) -> (String, Option<Option<u16>>) {
    let entry = entry.trim().to_ascii_lowercase();
    match entry.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())) {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']').to_owned(), Some(port.parse().ok())),
        None => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn allow_list_entries_match_host_and_optional_port() {
        let allowed = vec!["api.example.com".to_owned(), "127.0.0.1:18081".to_owned()];
        assert!(host_allowed(&allowed, "api.example.com", 443));
        assert!(host_allowed(&allowed, "127.0.0.1", 18081));
        assert!(!host_allowed(&allowed, "127.0.0.1", 18082));
        assert!(!host_allowed(&allowed, "evil.example.com", 443));
        assert!(!host_allowed(&[], "api.example.com", 443));
    }

    /// First answers a public address, then loopback (a DNS-rebinding name); counts questions.
    struct Rebinding {
        asked: AtomicUsize,
    }

    impl Resolver for Rebinding {
        fn lookup(&self, _host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            let first = self.asked.fetch_add(1, Ordering::SeqCst) == 0;
            let ip: std::net::IpAddr = if first { [93, 184, 215, 14].into() } else { [127, 0, 0, 1].into() };
            Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
        }
    }

    /// Records the address it is asked to connect to and answers over an in-memory pipe
    /// (no socket): a tiny HTTP server that keeps the request head and answers `200 ok`.
    #[derive(Default)]
    struct Recording {
        targets: Mutex<Vec<SocketAddr>>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    impl Connector for Recording {
        fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
            self.targets.lock().expect("lock").push(address);
            let heads = self.heads.clone();
            Box::pin(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (client, mut server) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match server.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    heads.lock().expect("lock").push(String::from_utf8_lossy(&head).into_owned());
                    let _ = server.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    let _ = server.flush().await;
                });
                Ok(Box::new(client) as Box<dyn Stream>)
            })
        }
    }

    fn request(url: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(url).header("host", "rebind.example").body(body).expect("request")
    }

    #[tokio::test]
    async fn a_rebinding_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to() {
        let resolver = Arc::new(Rebinding { asked: AtomicUsize::new(0) });
        let connector = Arc::new(Recording::default());
        let net = Arc::new(Net {
            resolver: resolver.clone(),
            connector: connector.clone(),
            tls: crate::egress::tls_config(None).expect("tls"),
            pool: Arc::default(),
        });
        let policy = Arc::new(NetworkPolicy {
            allowed_hosts: vec!["rebind.example".into()],
            allow_private: false,
            max_requests: 10,
            max_response_bytes: 1024,
            connect_timeout: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(10),
        });
        let origin = Arc::new(CallOrigin::default());
        let recorder = Arc::new(Recorder::default());

        let (response, _io) = send(
            net.clone(),
            policy.clone(),
            origin.clone(),
            recorder.clone(),
            request("http://rebind.example/v1/x?q=1"),
            None,
        )
        .await
        .expect("the first answer is public");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
        assert_eq!(resolver.asked.load(Ordering::SeqCst), 1, "one lookup per request");
        assert_eq!(*connector.targets.lock().expect("lock"), [SocketAddr::from(([93, 184, 215, 14], 80))]);
        let head = connector.heads.lock().expect("lock")[0].to_ascii_lowercase();
        assert!(head.starts_with("get /v1/x?q=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("host: rebind.example\r\n"), "{head}");

        // The name now answers loopback: refused, and nothing is connected to.
        let refused = send(net, policy, origin, recorder.clone(), request("http://rebind.example/v1/x"), None).await;
        assert!(matches!(refused, Err(HttpError::DestinationIpProhibited)));
        assert_eq!(resolver.asked.load(Ordering::SeqCst), 2);
        assert_eq!(connector.targets.lock().expect("lock").len(), 1, "no connection to loopback");
        let rows = recorder.snapshot(&Redactor::default());
        assert_eq!(rows[0].status, ApiCallStatus::Success);
        assert!(rows[1].error.as_deref().is_some_and(|e| e.contains("private or loopback")), "{:?}", rows[1]);
    }

    /// An HTTP/1.1 server on loopback that keeps connections open (except for `/close`) and
    /// counts the connections it accepted.
    async fn keep_alive_server() -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0_u8; 1024];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            let request = String::from_utf8_lossy(&head[..end]).to_string();
                            head.drain(..end + 4);
                            let close = request.starts_with("GET /close ");
                            let answer = if close {
                                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                            } else {
                                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            };
                            if socket.write_all(answer.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn connections_are_kept_alive_per_enterprise_connection_and_reused_only_when_read_to_the_end() {
        let (address, accepted) = keep_alive_server().await;
        let net = Arc::new(Net::new(crate::egress::tls_config(None).expect("tls")));
        let policy = Arc::new(NetworkPolicy {
            allowed_hosts: vec!["127.0.0.1".into()],
            allow_private: true,
            max_requests: 100,
            max_response_bytes: 1024,
            connect_timeout: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(30),
        });
        let origin = |enterprise: &str| {
            Arc::new(CallOrigin {
                enterprise_id: enterprise.into(),
                connection_id: Some("c-1".into()),
                ..CallOrigin::default()
            })
        };
        let get = |path: &str, enterprise: &str| {
            let body = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync();
            let request = http::Request::get(format!("http://{address}{path}"))
                .header("host", address.to_string())
                .body(body)
                .expect("request");
            send(net.clone(), policy.clone(), origin(enterprise), Arc::new(Recorder::default()), request, None)
        };
        // The pool takes a connection back on its own task, once hyper saw the response end.
        let settled = || async {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if net.pool.idle() > 0 {
                    return;
                }
            }
        };

        for _ in 0..3 {
            let (response, _io) = get("/a", "e-1").await.expect("answer");
            let body = response.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"ok");
            settled().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "three requests, one connection");

        // Another enterprise's connection to the same address gets its own.
        let (response, _io) = get("/a", "e-2").await.expect("answer");
        response.into_body().collect().await.expect("body");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // A body dropped before its end leaves nothing to reuse; nor does `Connection: close`.
        let (response, _io) = get("/a", "e-3").await.expect("answer");
        drop(response);
        let (response, _io) = get("/close", "e-3").await.expect("answer");
        response.into_body().collect().await.expect("body");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (response, _io) = get("/a", "e-3").await.expect("answer");
        response.into_body().collect().await.expect("body");
        assert_eq!(accepted.load(Ordering::SeqCst), 5, "e-3 opened a connection for each request");
    }

    #[test]
    fn urls_lose_credentials() {
        let uri: http::Uri = "http://user:pw@api.example.com:8080/v1/x?vin=1&api_key=abc&token=t".parse().expect("uri");
        assert_eq!(sanitize_url(&uri), "http://api.example.com:8080/v1/x?vin=1&api_key=****&token=****");
        let redactor = Redactor::new(["s3cret".to_owned()]);
        assert_eq!(redactor.redact("key=s3cret;"), "key=****;");
    }
}
