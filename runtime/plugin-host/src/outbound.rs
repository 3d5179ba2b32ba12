//! Outbound HTTP of plugins: the `wasi:http` send hook that enforces the connection's
//! allow-list, resolves the host once and connects only to an address that passed
//! [`crate::egress`]'s check (our own sender, not wasmtime-wasi-http's default one, which would
//! resolve the name again), caps requests and response sizes, applies timeouts and records one
//! API-call row per request.

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
use hyper::client::conn::http1::SendRequest;

/// How much of each request and response body is kept (after redaction) in the API-call row.
const PREVIEW_BYTES: usize = 2048;

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

/// Collects the rows of one call; shared between the hook, the bodies it wraps and the caller.
#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<Arc<Mutex<ApiCallRecord>>>>,
    /// Requests the plugin attempted, denied ones included.
    attempts: std::sync::atomic::AtomicUsize,
    /// Credentials the host added to requests (host-managed authentication), redacted from the
    /// rows like the connection's own.
    secrets: Mutex<Vec<String>>,
}

impl Recorder {
    /// Counts one attempted request and answers its number (1 for the first).
    fn attempt(&self) -> usize {
        self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    fn push(&self, record: ApiCallRecord) -> Arc<Mutex<ApiCallRecord>> {
        let shared = Arc::new(Mutex::new(record));
        if let Ok(mut records) = self.records.lock() {
            records.push(shared.clone());
        }
        shared
    }

    /// Rows made outside the hook's own requests (a token request the host made for a call).
    pub fn extend(&self, records: Vec<ApiCallRecord>) {
        for record in records {
            self.push(record);
        }
    }

    /// Adds values to redact from the rows.
    fn secret(&self, values: impl IntoIterator<Item = String>) {
        if let Ok(mut secrets) = self.secrets.lock() {
            for value in values {
                if !value.is_empty() && !secrets.contains(&value) {
                    secrets.push(value);
                }
            }
        }
    }

    /// The credentials the host added to the call's requests (a token obtained meanwhile).
    pub fn added_secrets(&self) -> Vec<String> {
        self.secrets.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The rows so far, redacted.
    pub fn snapshot(&self, redactor: &Redactor) -> Vec<ApiCallRecord> {
        let records = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        let added = self.secrets.lock().map(|s| s.clone()).unwrap_or_default();
        let added = (!added.is_empty()).then(|| Redactor::new(added));
        let redact = |text: &str| {
            let text = redactor.redact(text);
            added.as_ref().map_or(text.clone(), |r| r.redact(&text))
        };
        records
            .iter()
            .filter_map(|r| r.lock().ok().map(|r| r.clone()))
            .map(|mut r| {
                r.url = redact(&r.url);
                r.request_preview = r.request_preview.map(|p| redact(&p));
                r.response_preview = r.response_preview.map(|p| redact(&p));
                r.error = r.error.map(|e| redact(&e));
                for (_, value) in &mut r.response_headers {
                    *value = redact(value);
                }
                r
            })
            .collect()
    }
}

/// A connected byte stream (TCP, TLS over TCP, or a test's in-memory pipe).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Opens a connection to an address that passed the check; a seam, so tests can see where a
/// request would go without opening a socket.
pub trait Connector: Send + Sync {
    fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>>;
}

/// TCP, the production [`Connector`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}

/// How plugin requests reach the network: name resolution, connecting, TLS, and the
/// connections kept alive between requests.
pub struct Net {
    pub resolver: Arc<dyn Resolver>,
    pub connector: Arc<dyn Connector>,
    pub tls: Arc<rustls::ClientConfig>,
    pub pool: Arc<Pool>,
}

impl Net {
    /// The system resolver, TCP and `tls`.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            resolver: Arc::new(egress::SystemResolver),
            connector: Arc::new(TcpConnector),
            tls,
            pool: Arc::default(),
        }
    }
}

/// Credentials the host adds to a connection's requests (host-managed authentication); the
/// plugin never sees them.
pub trait Authenticator: Send + Sync {
    /// What to add to a request; with `stale`, the token a 401 just refused, so that a fresh
    /// one is obtained.
    fn credentials(&self, stale: Option<String>) -> BoxFuture<'static, Credentials>;
    /// Whether a 401 is answered by refreshing the credential and sending the request again
    /// (once).
    fn refreshes(&self) -> bool;
    /// Whether a request to this exact origin gets the credentials: a secret goes only to the
    /// scheme, host and port it was given for, not to every port of an allowed host.
    fn sends_to(&self, origin: &Origin) -> bool;
}

/// The origin of a request (RFC 6454): scheme, lowercase host (without brackets) and port (the
/// scheme's default when the URL has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of an `http` or `https` URI with a host.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        Some(Self { port: uri.port_u16().unwrap_or(default), scheme, host })
    }
}

/// What an [`Authenticator`] adds to one request.
pub struct Credentials {
    /// The headers, or why there are none (a token endpoint that refused).
    pub headers: Result<Vec<(http::HeaderName, http::HeaderValue)>, String>,
    /// The token used, to name it as stale after a 401.
    pub token: Option<String>,
    /// Secret values in the headers, redacted from the call's rows.
    pub secrets: Vec<String>,
    /// API-call rows of requests made to get them (the token request).
    pub records: Vec<ApiCallRecord>,
}

impl Default for Credentials {
    fn default() -> Self {
        Self { headers: Ok(Vec::new()), token: None, secrets: Vec::new(), records: Vec::new() }
    }
}

/// An [`Authenticator`] in a [`crate::CallSpec`].
#[derive(Clone)]
pub struct AuthHandle(pub Arc<dyn Authenticator>);

impl std::fmt::Debug for AuthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHandle(..)")
    }
}

/// Largest request body kept to send again after a 401; a larger one (by its content-length)
/// is streamed and not sent again.
pub const MAX_REPLAYED_BODY: usize = 1 << 20;

/// The `wasi:http` hooks of one call.
pub struct Outbound {
    pub policy: Arc<NetworkPolicy>,
    pub origin: Arc<CallOrigin>,
    pub recorder: Arc<Recorder>,
    pub net: Arc<Net>,
    /// Host-managed authentication of the connection's requests.
    pub auth: Option<AuthHandle>,
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
        match self.auth.clone() {
            Some(auth) => Box::new(send_authenticated(net, policy, origin, recorder, auth.0, request, options)),
            None => Box::new(send(net, policy, origin, recorder, request, options)),
        }
    }
}

/// Sends a request with the connection's host-managed credentials when it goes to one of the
/// connection's origins (a request elsewhere, another port or scheme of an allowed host
/// included, gets none; `send` refuses it if the host is not allowed); after a 401, refreshes
/// them and sends it once more.
async fn send_authenticated(
    net: Arc<Net>,
    policy: Arc<NetworkPolicy>,
    origin: Arc<CallOrigin>,
    recorder: Arc<Recorder>,
    auth: Arc<dyn Authenticator>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let exact = Origin::of(request.uri());
    let admitted = exact.as_ref().is_some_and(|o| host_allowed(&policy.allowed_hosts, &o.host, o.port));
    if !admitted || !exact.is_some_and(|o| auth.sends_to(&o)) {
        return send(net, policy, origin, recorder, request, options).await;
    }
    let (parts, body) = request.into_parts();
    let (method, uri, version, mut headers) = (parts.method, parts.uri, parts.version, parts.headers);
    let length =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let kept = if auth.refreshes() && length.is_none_or(|n| n <= MAX_REPLAYED_BODY) {
        let collected = http_body_util::Limited::new(body, MAX_REPLAYED_BODY)
            .collect()
            .await
            .map_err(|_| HttpError::HttpRequestBodySize(Some(MAX_REPLAYED_BODY as u64)))?;
        Err(collected.to_bytes())
    } else {
        Ok(body)
    };
    let build = |headers: &http::HeaderMap, body: WasiBody| {
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.version_mut() = version;
        *request.headers_mut() = headers.clone();
        request
    };
    let full = |bytes: &Bytes| {
        http_body_util::Full::new(bytes.clone())
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync()
    };
    let token = add_credentials(&recorder, &mut headers, auth.credentials(None).await)?;
    let first = match &kept {
        Ok(_) => None,
        Err(bytes) => Some(bytes.clone()),
    };
    let body = match kept {
        Ok(body) => body,
        Err(bytes) => full(&bytes),
    };
    let answer =
        send(net.clone(), policy.clone(), origin.clone(), recorder.clone(), build(&headers, body), options).await;
    match (answer, first) {
        (Ok((response, _)), Some(bytes)) if response.status() == http::StatusCode::UNAUTHORIZED => {
            drop(response);
            add_credentials(&recorder, &mut headers, auth.credentials(token).await)?;
            send(net, policy, origin, recorder, build(&headers, full(&bytes)), options).await
        }
        (answer, _) => answer,
    }
}

/// Puts `credentials` on `headers` and their rows and secrets into `recorder`; answers the
/// token used. A credential that could not be obtained fails the request (with a row saying
/// why).
fn add_credentials(
    recorder: &Recorder,
    headers: &mut http::HeaderMap,
    credentials: Credentials,
) -> Result<Option<String>, HttpError> {
    recorder.secret(credentials.secrets);
    recorder.extend(credentials.records);
    match credentials.headers {
        Ok(added) => {
            for (name, value) in added {
                headers.insert(name, value);
            }
            Ok(credentials.token)
        }
        Err(why) => Err(HttpError::InternalError(Some(format!("host-managed authentication: {why}")))),
    }
}

/// One request the host makes for a call (not the plugin): to a token endpoint. It takes the
/// plugin requests' path (egress check, one DNS lookup, timeouts, TLS) under `policy` and
/// answers the status and body (at most `policy.max_response_bytes`), with its API-call row
/// (previews left out: they would hold the secret and the token).
pub async fn host_request(
    net: Arc<Net>,
    policy: NetworkPolicy,
    origin: CallOrigin,
    request: http::Request<Bytes>,
) -> (Result<(http::StatusCode, Bytes), String>, Vec<ApiCallRecord>) {
    let recorder = Arc::new(Recorder::default());
    let max = policy.max_response_bytes;
    let request = request
        .map(|b| http_body_util::Full::new(b).map_err(|never: std::convert::Infallible| match never {}).boxed_unsync());
    let outcome = async {
        let (response, _) = send(net, Arc::new(policy), Arc::new(origin), recorder.clone(), request, None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), usize::try_from(max).unwrap_or(usize::MAX))
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    let mut records = recorder.snapshot(&Redactor::new(Vec::new()));
    for record in &mut records {
        record.request_preview = None;
        record.response_preview = None;
    }
    (outcome, records)
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

async fn send(
    net: Arc<Net>,
    policy: Arc<NetworkPolicy>,
    origin: Arc<CallOrigin>,
    recorder: Arc<Recorder>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let started = Instant::now();
    // Every attempt counts against the cap, denied ones too, before anything is recorded: past
    // the cap one row says so, and later attempts are refused without a row (a plugin looping
    // on a denied host cannot fill memory or the API-call log).
    let attempt = recorder.attempt();
    if attempt > policy.max_requests as usize + 1 {
        return Err(HttpError::HttpRequestDenied);
    }
    let row = ApiCallRecord::start((*origin).clone(), request.method().to_string(), sanitize_url(request.uri()));
    // The request continues the execution's trace, as the span of its API-call row.
    let mut request = request;
    if let Some(trace) = &origin.trace_id
        && let Ok(value) = http::HeaderValue::from_str(&dibop_core::trace::outbound_header(trace, &row.id))
    {
        request.headers_mut().insert("traceparent", value);
    }
    let record = recorder.push(row);
    let fail = |status: &'static str, message: String, error: HttpError| {
        if let Ok(mut r) = record.lock() {
            r.status = status;
            r.error = Some(message);
            r.duration_ms = elapsed_ms(started);
        }
        Err(error)
    };

    if attempt > policy.max_requests as usize {
        let message = format!("denied: more than {} requests in one call", policy.max_requests);
        return fail("error", message, HttpError::HttpRequestDenied);
    }
    let uri = request.uri().clone();
    let Some(host) = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()) else {
        return fail("error", "request has no host".into(), HttpError::HttpRequestUriInvalid);
    };
    let port = uri.port_u16().unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 });
    if !host_allowed(&policy.allowed_hosts, &host, port) {
        let message = format!("denied: {host}:{port} is not in the connection's allowed hosts");
        return fail("error", message, HttpError::HttpRequestDenied);
    }
    let remaining = policy.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return fail("timeout", "the call's deadline passed before the request".into(), HttpError::ConnectionTimeout);
    }
    let cap = |ours: Duration, theirs: Option<Duration>| theirs.map_or(ours, |t| t.min(ours));
    let timeouts = Timeouts {
        connect: cap(policy.connect_timeout.min(remaining), options.and_then(|o| o.connect_timeout)),
        first_byte: cap(remaining, options.and_then(|o| o.first_byte_timeout)),
        between_bytes: cap(remaining, options.and_then(|o| o.between_bytes_timeout)),
    };
    // Resolve once; only these addresses are ever connected to.
    let lookup = egress::allowed_addresses(&*net.resolver, &host, port, policy.allow_private);
    let addresses = match tokio::time::timeout(timeouts.connect, lookup).await {
        Ok(Ok(addresses)) => addresses,
        Ok(Err(refusal @ Refusal::Blocked { .. })) => {
            return fail("error", format!("denied: {refusal}"), HttpError::DestinationIpProhibited);
        }
        Ok(Err(refusal @ Refusal::Dns { .. })) => {
            return fail("error", refusal.to_string(), HttpError::DnsError { rcode: None, info_code: None });
        }
        Err(_) => return fail("timeout", format!("DNS lookup of {host} timed out"), HttpError::DnsTimeout),
    };

    let (parts, body) = request.into_parts();
    let body = Metered::new(body, u64::MAX, record.clone(), Side::Request, started).boxed_unsync();
    let request = http::Request::from_parts(parts, body);
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    match send_to(&net, request, &origin, &host, &addresses, use_tls, timeouts).await {
        Ok((response, io)) => {
            let status = response.status();
            if let Ok(mut r) = record.lock() {
                r.response_headers = response
                    .headers()
                    .iter()
                    .filter(|(name, _)| {
                        !["set-cookie", "www-authenticate", "proxy-authenticate"].contains(&name.as_str())
                    })
                    .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str().to_owned(), v.to_owned())))
                    .collect();
                r.status_code = Some(status.as_u16());
                r.status = if status.is_success() || status.is_redirection() { "success" } else { "error" };
                r.duration_ms = elapsed_ms(started);
            }
            let (parts, body) = response.into_parts();
            let body = Metered::new(body, policy.max_response_bytes, record, Side::Response, started);
            let response = http::Response::from_parts(parts, body.boxed_unsync());
            Ok((response, io))
        }
        Err(err) => {
            let status = match err {
                HttpError::ConnectionTimeout | HttpError::ConnectionReadTimeout | HttpError::HttpResponseTimeout => {
                    "timeout"
                }
                _ => "error",
            };
            let message = format!("{err:?}");
            fail(status, message, err)
        }
    }
}

/// Timeouts of one request, already bounded by the call's deadline.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// Connecting, the TLS handshake and the HTTP handshake together.
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

/// Sends `request` over a kept-alive connection of the same key (see [`crate::pool`]) or a new
/// one to the first of `addresses` (already checked) that accepts, with TLS (SNI and
/// certificate checked against `host`) for https. Our version of wasmtime-wasi-http 48's
/// `default_send_request`, which takes the authority and resolves it again and keeps no
/// connection; the request keeps its headers (Host included).
async fn send_to(
    net: &Net,
    mut request: http::Request<WasiBody>,
    origin: &CallOrigin,
    host: &str,
    addresses: &[SocketAddr],
    use_tls: bool,
    timeouts: Timeouts,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    // The request line carries only the path and query (no proxy in between).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() =
        http::Uri::builder().path_and_query(path).build().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let key = |address: SocketAddr| Key {
        enterprise_id: origin.enterprise_id.clone(),
        connection: origin.connection_id.clone().unwrap_or_else(|| origin.system.clone()),
        address,
        host: host.to_owned(),
        tls: use_tls,
    };

    // A kept-alive connection first; one the server closed meanwhile hands the request back
    // unsent, and the next one (or a new connection) carries it.
    for address in addresses {
        let key = key(*address);
        while let Some(mut sender) = net.pool.take(&key) {
            match tokio::time::timeout(timeouts.first_byte, sender.try_send_request(request)).await {
                Err(_) => return Err(HttpError::ConnectionReadTimeout),
                Ok(Ok(response)) => return Ok(answer(net, key, sender, response, timeouts)),
                Ok(Err(mut failed)) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(HttpError::from(failed.into_error())),
                },
            }
        }
    }

    let connected_by = tokio::time::Instant::now() + timeouts.connect;
    let connect = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
        for address in addresses {
            match net.connector.connect(*address).await {
                Ok(stream) => return Ok((*address, stream)),
                Err(err) => last = err,
            }
        }
        Err(last)
    };
    let (address, stream) = match tokio::time::timeout_at(connected_by, connect).await {
        Ok(stream) => stream.map_err(HttpError::Connect)?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let stream: Box<dyn Stream> = if use_tls {
        let name = rustls::pki_types::ServerName::try_from(host)?.to_owned();
        let connector = tokio_rustls::TlsConnector::from(net.tls.clone());
        match tokio::time::timeout_at(connected_by, connector.connect(name, stream)).await {
            Ok(stream) => Box::new(stream.map_err(HttpError::Tls)?),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        }
    } else {
        stream
    };
    let handshake = hyper::client::conn::http1::Builder::new()
        .handshake::<_, WasiBody>(wasmtime_wasi_http::io::TokioIo::new(stream));
    let (mut sender, conn) =
        tokio::time::timeout_at(connected_by, handshake).await.map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection runs on its own task, so that it can outlive this request in the pool; it
    // ends when the server closes it or the last handle to it is dropped. Its errors reach the
    // request and the body.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    Ok(answer(net, key(address), sender, response, timeouts))
}

/// The response as the guest reads it: the between-bytes timeout, and the connection handed to
/// the pool once the body was read to its end.
fn answer(
    net: &Net,
    key: Key,
    sender: SendRequest<WasiBody>,
    response: http::Response<hyper::body::Incoming>,
    timeouts: Timeouts,
) -> (http::Response<WasiBody>, IoFuture) {
    let mut timeout = tokio::time::interval(timeouts.between_bytes.max(Duration::from_nanos(1)));
    timeout.reset();
    let keep = Some(Keep { pool: net.pool.clone(), key, sender });
    let response = response.map(|incoming| Incoming { incoming, timeout, keep }.boxed_unsync());
    (response, Box::new(async { Ok(()) }) as IoFuture)
}

/// A connection to give back to the pool when its response was read completely.
struct Keep {
    pool: Arc<Pool>,
    key: Key,
    sender: SendRequest<WasiBody>,
}

impl Keep {
    /// Pools the connection once it is ready for another request (its task has seen the end
    /// of this response); one that closes instead is dropped.
    fn give_back(self) {
        let Keep { pool, key, mut sender } = self;
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await {
                pool.put(key, sender);
            }
        });
    }
}

/// A response body with the between-bytes timeout.
struct Incoming {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
    /// Taken when the body ended; a body dropped before its end closes the connection.
    keep: Option<Keep>,
}

impl Body for Incoming {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                if let Some(keep) = self.keep.take() {
                    keep.give_back();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                let err = if err.is_timeout() { HttpError::HttpResponseTimeout } else { err.into() };
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                if self.incoming.is_end_stream()
                    && let Some(keep) = self.keep.take()
                {
                    keep.give_back();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

/// A body that counts its bytes, keeps a preview, enforces a size cap and keeps the API-call
/// row up to date.
struct Metered {
    inner: WasiBody,
    seen: u64,
    cap: u64,
    preview: Vec<u8>,
    record: Arc<Mutex<ApiCallRecord>>,
    side: Side,
    started: Instant,
}

impl Metered {
    fn new(inner: WasiBody, cap: u64, record: Arc<Mutex<ApiCallRecord>>, side: Side, started: Instant) -> Self {
        Self { inner, seen: 0, cap, preview: Vec::new(), record, side, started }
    }

    fn update(&self, error: Option<String>) {
        if let Ok(mut r) = self.record.lock() {
            let preview = Some(String::from_utf8_lossy(&self.preview).into_owned()).filter(|p| !p.is_empty());
            let bytes = i64::try_from(self.seen).unwrap_or(i64::MAX);
            match self.side {
                Side::Request => {
                    r.request_bytes = bytes;
                    r.request_preview = preview;
                }
                Side::Response => {
                    r.response_bytes = bytes;
                    r.response_preview = preview;
                    r.duration_ms = elapsed_ms(self.started);
                }
            }
            if let Some(error) = error {
                r.status = "error";
                r.error = Some(error);
            }
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    let room = PREVIEW_BYTES.saturating_sub(this.preview.len());
                    this.preview.extend_from_slice(&data[..room.min(data.len())]);
                    if this.seen > this.cap {
                        this.update(Some(format!("response body exceeds the limit of {} bytes", this.cap)));
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.seen)))));
                    }
                }
                this.update(None);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.update(Some(format!("{err:?}")));
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.update(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
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

/// The URL as logged: no user info, sensitive query values replaced.
pub fn sanitize_url(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or_default();
    let port = uri.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = uri.path();
    let query = uri.query().map(|q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_sensitive_name(name) => format!("{name}=****"),
                _ => pair.to_owned(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{scheme}://{host}{port}{path}{}", query.unwrap_or_default())
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
        assert_eq!(rows[0].status, "success");
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
