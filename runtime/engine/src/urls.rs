//! URLs as the allow-lists read them.

/// `host[:port]` of a URL, for the allow-list.
pub fn url_authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    Some(match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}
