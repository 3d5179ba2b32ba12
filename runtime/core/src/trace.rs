//! W3C trace context: the ids of an execution's trace (the same in `GET /executions/{id}/trace`,
//! the OTLP export and the `traceparent` of outbound requests) and the `traceparent` header.

use crate::sha256_hex;

/// A parsed `traceparent` (version 00): where an execution's trace continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero: the caller's span, the execution's parent.
    pub span_id: String,
    /// 2 hex digits.
    pub flags: String,
}

impl TraceParent {
    /// Reads a `traceparent` header value; anything that is not a valid version-00 value is
    /// `None` (W3C: an invalid header is ignored, and the trace starts anew).
    pub fn parse(header: &str) -> Option<Self> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
        match parts.as_slice() {
            [version, trace, span, flags]
                if *version == "00"
                    && hex(trace, 32)
                    && hex(span, 16)
                    && hex(flags, 2)
                    && nonzero(trace)
                    && nonzero(span) =>
            {
                Some(Self { trace_id: (*trace).to_owned(), span_id: (*span).to_owned(), flags: (*flags).to_owned() })
            }
            _ => None,
        }
    }

    /// The header value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// The span id derived from `seed` (an execution id, `<execution>:<step position>`, an API-call
/// row id, ...): 16 hex digits, the same wherever it is computed.
pub fn span_id(seed: &str) -> String {
    sha256_hex(seed.as_bytes())[..16].to_owned()
}

/// The trace id of an execution: its caller's when it came with a `traceparent`, else one
/// derived from its id.
pub fn trace_id(execution_id: &str, parent: Option<&str>) -> String {
    parent
        .and_then(TraceParent::parse)
        .map_or_else(|| sha256_hex(execution_id.as_bytes())[..32].to_owned(), |p| p.trace_id)
}

/// The `traceparent` an outbound request carries: the execution's trace and the request's own
/// span (the `http` span of its API-call row), sampled.
pub fn outbound_header(trace_id: &str, api_call_id: &str) -> String {
    format!("00-{trace_id}-{}-01", span_id(api_call_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_strictly() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(parent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.header(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert_eq!(trace_id("e-1", Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")), parent.trace_id);
        assert_eq!(trace_id("e-1", Some("garbage")).len(), 32);
        assert_eq!(outbound_header("t", "call-1"), format!("00-t-{}-01", span_id("call-1")));
    }
}
