//! Outbound HTTP of plugins: the `wasi:http` send hook that enforces the connection's
//! allow-list, refuses private addresses, caps requests and response sizes, applies timeouts
//! and records one API-call row per request.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

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

/// Who a request is made for; copied into its API-call row.
#[derive(Debug, Clone, Default)]
pub struct CallOrigin {
    pub enterprise_id: String,
    pub system: String,
    pub connection_id: Option<String>,
    pub connection: Option<String>,
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub step: Option<String>,
}

/// One outbound request as recorded, before it is stored.
#[derive(Debug, Clone)]
pub struct ApiCallRecord {
    pub id: String,
    pub timestamp_ms: i64,
    pub origin: CallOrigin,
    pub method: String,
    pub url: String,
    pub status_code: Option<u16>,
    /// `success`, `error` or `timeout`.
    pub status: &'static str,
    pub duration_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    /// Response headers (cookies and authentication challenges left out), for step outputs.
    pub response_headers: Vec<(String, String)>,
}

/// Replaces every credential value of the call with `****`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "****");
            }
        }
        text
    }
}

/// Collects the rows of one call; shared between the hook, the bodies it wraps and the caller.
#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<Arc<Mutex<ApiCallRecord>>>>,
}

impl Recorder {
    fn push(&self, record: ApiCallRecord) -> Arc<Mutex<ApiCallRecord>> {
        let shared = Arc::new(Mutex::new(record));
        if let Ok(mut records) = self.records.lock() {
            records.push(shared.clone());
        }
        shared
    }

    fn count(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(usize::MAX)
    }

    /// The rows so far, redacted.
    pub fn snapshot(&self, redactor: &Redactor) -> Vec<ApiCallRecord> {
        let records = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        records
            .iter()
            .filter_map(|r| r.lock().ok().map(|r| r.clone()))
            .map(|mut r| {
                r.url = redactor.redact(&r.url);
                r.request_preview = r.request_preview.map(|p| redactor.redact(&p));
                r.response_preview = r.response_preview.map(|p| redactor.redact(&p));
                r.error = r.error.map(|e| redactor.redact(&e));
                for (_, value) in &mut r.response_headers {
                    *value = redactor.redact(value);
                }
                r
            })
            .collect()
    }
}

/// The `wasi:http` hooks of one call.
pub struct Outbound {
    pub policy: Arc<NetworkPolicy>,
    pub origin: Arc<CallOrigin>,
    pub recorder: Arc<Recorder>,
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
        Box::new(send(policy, origin, recorder, request, options))
    }
}

async fn send(
    policy: Arc<NetworkPolicy>,
    origin: Arc<CallOrigin>,
    recorder: Arc<Recorder>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError> {
    let started = Instant::now();
    let record = recorder.push(ApiCallRecord {
        id: crate::store::new_id(),
        timestamp_ms: crate::store::now_ms(),
        origin: (*origin).clone(),
        method: request.method().to_string(),
        url: sanitize_url(request.uri()),
        status_code: None,
        status: "error",
        duration_ms: 0,
        request_bytes: 0,
        response_bytes: 0,
        request_preview: None,
        response_preview: None,
        error: None,
        response_headers: Vec::new(),
    });
    let fail = |status: &'static str, message: String, error: HttpError| {
        if let Ok(mut r) = record.lock() {
            r.status = status;
            r.error = Some(message);
            r.duration_ms = elapsed_ms(started);
        }
        Err(error)
    };

    if recorder.count() > policy.max_requests as usize {
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
    let private = match first_private_address(&host, port).await {
        Ok(private) => private,
        Err(err) => {
            return fail(
                "error",
                format!("DNS lookup of {host} failed: {err}"),
                HttpError::DnsError { rcode: None, info_code: None },
            );
        }
    };
    if let Some(address) = private.filter(|_| !policy.allow_private) {
        let message = format!("denied: {host} resolves to the private or loopback address {}", address.ip());
        return fail("error", message, HttpError::DestinationIpProhibited);
    }
    let remaining = policy.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return fail("timeout", "the call's deadline passed before the request".into(), HttpError::ConnectionTimeout);
    }
    let cap = |ours: Duration, theirs: Option<Duration>| Some(theirs.map_or(ours, |t| t.min(ours)));
    let options = RequestOptions {
        connect_timeout: cap(policy.connect_timeout.min(remaining), options.and_then(|o| o.connect_timeout)),
        first_byte_timeout: cap(remaining, options.and_then(|o| o.first_byte_timeout)),
        between_bytes_timeout: cap(remaining, options.and_then(|o| o.between_bytes_timeout)),
    };

    let (parts, body) = request.into_parts();
    let body = Metered::new(body, u64::MAX, record.clone(), Side::Request, started).boxed_unsync();
    let request = http::Request::from_parts(parts, body);
    match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
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
            let body = Metered::new(body.boxed_unsync(), policy.max_response_bytes, record, Side::Response, started);
            let response = http::Response::from_parts(parts, body.boxed_unsync());
            Ok((response, Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>))
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
    allowed.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        match entry.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())) {
            Some((h, p)) => {
                h.trim_start_matches('[').trim_end_matches(']') == host && p.parse::<u16>().ok() == Some(port)
            }
            None => entry == host,
        }
    })
}

/// Resolves `host` and answers the first of its addresses that [`is_private`], if any.
pub async fn first_private_address(host: &str, port: u16) -> std::io::Result<Option<std::net::SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port)).await?.find(|a| is_private(a.ip())))
}

/// Private, loopback, link-local, unspecified, shared (CGNAT) and unique-local addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
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

fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "token", "secret", "password", "signature", "auth", "credential"].iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "151.101.1.1", "2001:4860:4860::8888"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn urls_lose_credentials() {
        let uri: http::Uri = "http://user:pw@api.example.com:8080/v1/x?vin=1&api_key=abc&token=t".parse().expect("uri");
        assert_eq!(sanitize_url(&uri), "http://api.example.com:8080/v1/x?vin=1&api_key=****&token=****");
        let redactor = Redactor::new(["s3cret".to_owned()]);
        assert_eq!(redactor.redact("key=s3cret;"), "key=****;");
    }
}
