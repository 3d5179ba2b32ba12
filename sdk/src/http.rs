//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! This is how a connector reaches its system: the host sends the request, but only to hosts
//! that the connection allows, and caps the time and the response size. Requests are
//! blocking, which is what you want inside a plugin call.
//!
//! ```no_run
//! use dibop_sdk::{http, json, PluginError, Value};
//!
//! fn create_order(base_url: &str) -> Result<Value, PluginError> {
//!     let response = http::Request::post(format!("{base_url}/orders"))
//!         .header("Accept", "application/json")
//!         .json(&json!({"sku": "A-1", "quantity": 2}))
//!         .send()?
//!         .error_for_status()?;
//!     response.json()
//! }
//! ```
//!
//! Transport failures become [`PluginError`]s with these codes:
//!
//! | code | when | retryable |
//! | --- | --- | --- |
//! | `denied` | the connection does not allow the host | no |
//! | `timeout` | connecting, sending or waiting for the answer took too long | yes |
//! | `response_too_large` | the answer is bigger than the host allows | no |
//! | `upstream_error` | anything else (refused connection, TLS, DNS, protocol errors) | for transient causes |
//! | `invalid_input` | the URL, a header or the method is malformed | no |
//!
//! An answer with an error status is *not* an error of [`Request::send`]: check
//! [`Response::status`] or call [`Response::error_for_status`].

use serde_json::Value;

use crate::PluginError;
use crate::wit::connector::wasi::http::outgoing_handler;
use crate::wit::connector::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    Scheme, http_error_code,
};
use crate::wit::connector::wasi::io::error::Error as IoError;
use crate::wit::connector::wasi::io::streams::StreamError;

/// The largest chunk written to or read from a body stream at once.
const CHUNK: u64 = 64 * 1024;

/// An HTTP request being built. Send it with [`send`](Self::send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    json: bool,
}

impl Request {
    /// A request with any method (e.g. `"PATCH"`) to an absolute `http` or `https` URL.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request { method: method.into(), url: url.into(), headers: Vec::new(), body: Vec::new(), json: false }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new("PATCH", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header (repeated names are sent as repeated headers).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends `name=value` to the query string, percent-encoding both.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        let (base, fragment) = match self.url.find('#') {
            Some(i) => (self.url[..i].to_string(), self.url[i..].to_string()),
            None => (self.url.clone(), String::new()),
        };
        let separator = if !base.contains('?') {
            "?"
        } else if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        };
        self.url = format!("{base}{separator}{}={}{fragment}", encode(name), encode(value));
        self
    }

    /// Sets the body to `value` as JSON, and `Content-Type: application/json` unless a
    /// content type is set.
    pub fn json(mut self, value: &Value) -> Self {
        self.body = value.to_string().into_bytes();
        self.json = true;
        self
    }

    /// Sets the raw body. Set a `Content-Type` header yourself.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.json = false;
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL, including any query added with [`query`](Self::query).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers set so far.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Sends the request and reads the whole answer.
    ///
    /// Fails only when no answer was received (see the [module docs](self) for the error
    /// codes); an answer with an error status is an `Ok` response.
    pub fn send(self) -> Result<Response, PluginError> {
        let target = Target::parse(&self.url)?;
        let host = target.authority.clone();

        let headers = Fields::new();
        let has_content_type = self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| PluginError::invalid_input(format!("header {name:?} was rejected: {e:?}")))?;
        }
        if self.json && !has_content_type {
            headers
                .append("content-type", b"application/json")
                .map_err(|e| PluginError::internal(format!("content-type header was rejected: {e:?}")))?;
        }
        // A known length spares servers that refuse chunked uploads.
        let has_length = self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        let sends_body =
            !self.body.is_empty() || matches!(self.method.to_ascii_uppercase().as_str(), "POST" | "PUT" | "PATCH");
        if sends_body && !has_length {
            headers
                .append("content-length", self.body.len().to_string().as_bytes())
                .map_err(|e| PluginError::internal(format!("content-length header was rejected: {e:?}")))?;
        }

        let request = OutgoingRequest::new(headers);
        request
            .set_method(&method_of(&self.method))
            .map_err(|()| PluginError::invalid_input(format!("invalid HTTP method {:?}", self.method)))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| PluginError::invalid_input(format!("invalid URL scheme in {:?}", self.url)))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| PluginError::invalid_input(format!("invalid host in URL {:?}", self.url)))?;
        request
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| PluginError::invalid_input(format!("invalid path in URL {:?}", self.url)))?;
        let body = request.body().map_err(|()| PluginError::internal("the request body was already taken"))?;

        let future = outgoing_handler::handle(request, None).map_err(|code| error_from_code(&code, &host))?;

        // A failed body write is the echo of something the answer tells better: the request
        // failed (the future has the cause), or the server answered without reading the whole
        // body (the answer is what counts). Either way, the future decides.
        let _ = write_body(body, &self.body, &host);
        let response = wait(&future, &host)?;
        read_response(response, &host)
    }
}

/// An HTTP answer, read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in the order received; names are lowercase, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; an empty body is `null`. A body that is not JSON is an
    /// `upstream_error`.
    pub fn json(&self) -> Result<Value, PluginError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::new("upstream_error", format!("the answer (HTTP {}) is not valid JSON: {e}", self.status))
                .with_http_status(self.status)
        })
    }

    /// The body as text (invalid UTF-8 is replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Returns the response when its status is 2xx, else the error
    /// [`PluginError::from_status`] maps the status to (404 `not_found`, 401/403
    /// `unauthorized`, others `upstream_error`), with the start of the body in the message.
    pub fn error_for_status(self) -> Result<Self, PluginError> {
        if self.is_success() {
            return Ok(self);
        }
        let text = self.text();
        let snippet: String = text.trim().chars().take(300).collect();
        let message = if snippet.is_empty() {
            format!("upstream answered HTTP {}", self.status)
        } else {
            format!("upstream answered HTTP {}: {snippet}", self.status)
        };
        Err(PluginError::from_status(self.status, message))
    }
}

/// Percent-encodes `text` for use as one URL path segment or query component: everything
/// except ASCII letters, digits and `-._~` is encoded.
///
/// ```
/// assert_eq!(dibop_sdk::http::encode("a b/c&d"), "a%20b%2Fc%26d");
/// ```
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Encodes pairs as an `application/x-www-form-urlencoded` body.
///
/// ```
/// let body = dibop_sdk::http::form_encode(&[("grant_type", "client_credentials"), ("scope", "a b")]);
/// assert_eq!(body, "grant_type=client_credentials&scope=a%20b");
/// ```
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// The value of an `Authorization` header for HTTP Basic authentication.
///
/// ```
/// assert_eq!(dibop_sdk::http::basic_auth("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
/// ```
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The parts of an absolute URL that `wasi:http` wants.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, PluginError> {
        let (scheme, rest) = split_url(url)?;
        let scheme = match scheme.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => unreachable!("split_url accepts only http and https"),
        };
        Ok(Target { scheme, authority: rest.0, path_with_query: rest.1 })
    }
}

/// Splits an absolute URL into lowercase scheme, authority and path-with-query (fragment
/// dropped, path defaulting to `/`).
fn split_url(url: &str) -> Result<(String, (String, String)), PluginError> {
    let invalid = |why: &str| PluginError::invalid_input(format!("invalid URL {url:?}: {why}"));
    let (scheme, rest) = url.trim().split_once("://").ok_or_else(|| invalid("expected http:// or https://"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(invalid("only http and https are supported"));
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if authority.contains('@') {
        return Err(invalid("credentials in URLs are not supported; send them in a header"));
    }
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok((scheme, (authority.to_string(), path)))
}

fn method_of(method: &str) -> Method {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(method.to_string()),
    }
}

/// Writes the whole body in chunks the stream accepts, then finishes it.
fn write_body(body: OutgoingBody, data: &[u8], host: &str) -> Result<(), PluginError> {
    if !data.is_empty() {
        let stream = body.write().map_err(|()| PluginError::internal("the request body stream was already taken"))?;
        let mut rest = data;
        while !rest.is_empty() {
            let permitted = stream.check_write().map_err(|e| stream_error(e, host, "sending the request body"))?;
            if permitted == 0 {
                stream.subscribe().block();
                continue;
            }
            let n = usize::try_from(permitted.min(CHUNK)).unwrap_or(usize::MAX).min(rest.len());
            stream.write(&rest[..n]).map_err(|e| stream_error(e, host, "sending the request body"))?;
            rest = &rest[n..];
        }
        stream.blocking_flush().map_err(|e| stream_error(e, host, "sending the request body"))?;
        // The stream must be dropped before the body is finished.
    }
    OutgoingBody::finish(body, None).map_err(|code| error_from_code(&code, host))
}

/// Blocks until the answer's status and headers are in.
fn wait(future: &FutureIncomingResponse, host: &str) -> Result<IncomingResponse, PluginError> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(error_from_code(&code, host)),
            Some(Err(())) => return Err(PluginError::internal("the response was already taken")),
            None => future.subscribe().block(),
        }
    }
}

fn read_response(response: IncomingResponse, host: &str) -> Result<Response, PluginError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response.consume().map_err(|()| PluginError::internal("the response body was already taken"))?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| PluginError::internal("the response body was already taken"))?;
        loop {
            match stream.blocking_read(CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => return Err(body_error(&e, host, status)),
            }
        }
        // The stream must be dropped before the body is finished.
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response { status, headers, body })
}

/// An error while reading the answer's body.
fn body_error(err: &IoError, host: &str, status: u16) -> PluginError {
    match http_error_code(err) {
        Some(ErrorCode::HttpResponseBodySize(limit)) => too_large(host, limit).with_http_status(status),
        Some(code) => {
            let retryable = is_transient(&code);
            PluginError::new(
                "upstream_error",
                format!("reading the answer from {host} failed: {}", describe_code(&code)),
            )
            .with_retryable(retryable)
            .with_http_status(status)
        }
        // Hosts may fail a body with an error that carries no `error-code` (wasmtime passes
        // its embedder error type through as is); its text still tells a size limit.
        None => {
            let text = io_error_text(err);
            if text.to_ascii_lowercase().contains("response body size") {
                return PluginError::new("response_too_large", format!("the answer from {host} is too large: {text}"))
                    .with_http_status(status);
            }
            PluginError::new("upstream_error", format!("reading the answer from {host} failed: {text}"))
                .with_retryable(true)
                .with_http_status(status)
        }
    }
}

/// The first line of an I/O error's description (hosts may append a backtrace).
fn io_error_text(err: &IoError) -> String {
    err.to_debug_string().lines().next().unwrap_or_default().trim().to_string()
}

fn stream_error(err: StreamError, host: &str, doing: &str) -> PluginError {
    match err {
        StreamError::Closed => PluginError::new("upstream_error", format!("{doing} to {host} failed: stream closed")),
        StreamError::LastOperationFailed(e) => match http_error_code(&e) {
            Some(code) => error_from_code(&code, host),
            None => PluginError::new("upstream_error", format!("{doing} to {host} failed: {}", io_error_text(&e))),
        },
    }
}

fn too_large(host: &str, limit: Option<u64>) -> PluginError {
    let message = match limit {
        Some(limit) => format!("the answer from {host} is larger than the allowed {limit} bytes"),
        None => format!("the answer from {host} is larger than allowed"),
    };
    PluginError::new("response_too_large", message)
}

/// Maps a `wasi:http` error code to a [`PluginError`] that names the host.
fn error_from_code(code: &ErrorCode, host: &str) -> PluginError {
    match code {
        ErrorCode::HttpRequestDenied => PluginError::new(
            "denied",
            format!("the request to {host} was denied: this connection does not allow that host"),
        ),
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => {
            PluginError::timeout(format!("the request to {host} timed out: {}", describe_code(code)))
        }
        ErrorCode::HttpResponseBodySize(limit) => too_large(host, *limit),
        other => PluginError::new("upstream_error", format!("the request to {host} failed: {}", describe_code(other)))
            .with_retryable(is_transient(other)),
    }
}

/// Whether an error is likely to go away on its own.
fn is_transient(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::DestinationUnavailable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::HttpResponseIncomplete
            | ErrorCode::HttpResponseTimeout
    )
}

fn describe_code(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsTimeout => "DNS lookup timed out".into(),
        ErrorCode::DnsError(payload) => match &payload.rcode {
            Some(rcode) => format!("DNS error ({rcode})"),
            None => "DNS error".into(),
        },
        ErrorCode::DestinationNotFound => "host not found".into(),
        ErrorCode::DestinationUnavailable => "host unavailable".into(),
        ErrorCode::DestinationIpProhibited => "destination IP address prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "destination IP address unroutable".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTerminated => "connection closed unexpectedly".into(),
        ErrorCode::ConnectionTimeout => "connecting timed out".into(),
        ErrorCode::ConnectionReadTimeout => "reading timed out".into(),
        ErrorCode::ConnectionWriteTimeout => "writing timed out".into(),
        ErrorCode::ConnectionLimitReached => "connection limit reached".into(),
        ErrorCode::TlsProtocolError => "TLS protocol error".into(),
        ErrorCode::TlsCertificateError => "TLS certificate error".into(),
        ErrorCode::TlsAlertReceived(_) => "TLS alert received".into(),
        ErrorCode::HttpResponseIncomplete => "incomplete answer".into(),
        ErrorCode::HttpResponseTimeout => "no answer in time".into(),
        ErrorCode::HttpProtocolError => "HTTP protocol error".into(),
        ErrorCode::InternalError(Some(text)) => text.clone(),
        ErrorCode::InternalError(None) => "internal error".into(),
        other => format!("{other:?}").trim_start_matches("ErrorCode::").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let (scheme, (authority, path)) = split_url("HTTPS://api.example.com:8443/v1/x?a=1#frag").unwrap();
        assert_eq!(
            (scheme.as_str(), authority.as_str(), path.as_str()),
            ("https", "api.example.com:8443", "/v1/x?a=1")
        );
        let (_, (_, path)) = split_url("http://h?x=1").unwrap();
        assert_eq!(path, "/?x=1");
        let (_, (_, path)) = split_url("http://h").unwrap();
        assert_eq!(path, "/");
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("http:///x").is_err());
        assert!(split_url("http://u:p@h/").is_err());
    }

    #[test]
    fn adds_query_parameters() {
        let r = Request::get("http://h/p").query("a", "1 2").query("b", "x&y");
        assert_eq!(r.url(), "http://h/p?a=1%202&b=x%26y");
        let r = Request::get("http://h/p?z=0#f").query("a", "1");
        assert_eq!(r.url(), "http://h/p?z=0&a=1#f");
    }

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn maps_statuses() {
        let response = Response { status: 404, headers: vec![], body: b"{\"error\":\"no\"}".to_vec() };
        let err = response.error_for_status().unwrap_err();
        assert_eq!(err.code, "not_found");
        assert!(err.message.contains("no"));
        let ok = Response { status: 204, headers: vec![], body: vec![] };
        assert_eq!(ok.json().unwrap(), Value::Null);
    }

    #[test]
    fn maps_error_codes() {
        let denied = error_from_code(&ErrorCode::HttpRequestDenied, "evil.example");
        assert_eq!(denied.code, "denied");
        assert!(!denied.retryable);
        assert!(denied.message.contains("evil.example"));
        let timeout = error_from_code(&ErrorCode::ConnectionTimeout, "h");
        assert_eq!((timeout.code.as_str(), timeout.retryable), ("timeout", true));
        let big = error_from_code(&ErrorCode::HttpResponseBodySize(Some(10)), "h");
        assert_eq!(big.code, "response_too_large");
        let refused = error_from_code(&ErrorCode::ConnectionRefused, "h:1");
        assert_eq!(refused.code, "upstream_error");
        assert!(refused.message.contains("h:1"));
    }
}
