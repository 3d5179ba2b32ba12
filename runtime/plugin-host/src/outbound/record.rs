//! One API-call row per request: what was sent and answered, with previews redacted and the
//! URL's secrets masked.

use super::*;

/// How much of each request and response body is kept (after redaction) in the API-call row.
pub(super) const PREVIEW_BYTES: usize = 2048;

/// Collects the rows of one call; shared between the hook, the bodies it wraps and the caller.
#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<Arc<Mutex<ApiCallRecord>>>>,
    /// Requests the plugin attempted, denied ones included.
    attempts: std::sync::atomic::AtomicUsize,
    /// Credentials the host added to requests (host-managed authentication), redacted from the
    /// rows like the connection's own.
    secrets: Mutex<Vec<String>>,
    /// Whether the call's first request was handed to the hook (it is the one paced).
    first_taken: std::sync::atomic::AtomicBool,
    /// The first request could not leave on its rate-limit permit: the call sends nothing.
    late: std::sync::atomic::AtomicBool,
}

impl Recorder {
    /// Counts one attempted request and answers its number (1 for the first).
    pub(super) fn attempt(&self) -> usize {
        self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// Whether this is the call's first request (true once).
    pub(super) fn first(&self) -> bool {
        !self.first_taken.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the call's first request could not leave on its rate-limit permit (and nothing
    /// was sent): the step runs the call again on a later permit.
    pub fn late(&self) -> bool {
        self.late.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn mark_late(&self) {
        self.late.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn push(&self, record: ApiCallRecord) -> Arc<Mutex<ApiCallRecord>> {
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
    pub(super) fn secret(&self, values: impl IntoIterator<Item = String>) {
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
