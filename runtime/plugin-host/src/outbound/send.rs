//! The sender: one DNS lookup whose checked addresses are the only ones connected to, TLS
//! with SNI, kept-alive connections from the pool, timeouts, and the answer handed back.

use super::*;

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

pub(super) type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

pub(super) async fn send(
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
    let fail = |status: ApiCallStatus, message: String, error: HttpError| {
        if let Ok(mut r) = record.lock() {
            r.status = status;
            r.error = Some(message);
            r.duration_ms = elapsed_ms(started);
        }
        Err(error)
    };

    if attempt > policy.max_requests as usize {
        let message = format!("denied: more than {} requests in one call", policy.max_requests);
        return fail(ApiCallStatus::Error, message, HttpError::HttpRequestDenied);
    }
    let uri = request.uri().clone();
    let Some(host) = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()) else {
        return fail(ApiCallStatus::Error, "request has no host".into(), HttpError::HttpRequestUriInvalid);
    };
    let port = uri.port_u16().unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 });
    if !host_allowed(&policy.allowed_hosts, &host, port) {
        let message = format!("denied: {host}:{port} is not in the connection's allowed hosts");
        return fail(ApiCallStatus::Error, message, HttpError::HttpRequestDenied);
    }
    let remaining = policy.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return fail(
            ApiCallStatus::Timeout,
            "the call's deadline passed before the request".into(),
            HttpError::ConnectionTimeout,
        );
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
            return fail(ApiCallStatus::Error, format!("denied: {refusal}"), HttpError::DestinationIpProhibited);
        }
        Ok(Err(refusal @ Refusal::Dns { .. })) => {
            return fail(
                ApiCallStatus::Error,
                refusal.to_string(),
                HttpError::DnsError { rcode: None, info_code: None },
            );
        }
        Err(_) => {
            return fail(ApiCallStatus::Timeout, format!("DNS lookup of {host} timed out"), HttpError::DnsTimeout);
        }
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
                r.status = if status.is_success() || status.is_redirection() {
                    ApiCallStatus::Success
                } else {
                    ApiCallStatus::Error
                };
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
                    ApiCallStatus::Timeout
                }
                _ => ApiCallStatus::Error,
            };
            let message = format!("{err:?}");
            fail(status, message, err)
        }
    }
}

/// Timeouts of one request, already bounded by the call's deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
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
pub(super) async fn send_to(
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
pub(super) fn answer(
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
pub(super) struct Keep {
    pool: Arc<Pool>,
    key: Key,
    sender: SendRequest<WasiBody>,
}

impl Keep {
    /// Pools the connection once it is ready for another request (its task has seen the end
    /// of this response); one that closes instead is dropped.
    pub(super) fn give_back(self) {
        let Keep { pool, key, mut sender } = self;
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await {
                pool.put(key, sender);
            }
        });
    }
}

/// A response body with the between-bytes timeout.
pub(super) struct Incoming {
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
