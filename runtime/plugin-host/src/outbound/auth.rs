//! Host-managed credentials: the `Authenticator` a connection's call carries, the headers it
//! adds to requests for the connection's exact origins, the resend after a 401, and the host's
//! own token requests through the same egress checks.

use super::*;

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

/// Sends a request with the connection's host-managed credentials when it goes to one of the
/// connection's origins (a request elsewhere, another port or scheme of an allowed host
/// included, gets none; `send` refuses it if the host is not allowed); after a 401, refreshes
/// them and sends it once more.
pub(super) async fn send_authenticated(
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
pub(super) fn add_credentials(
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
