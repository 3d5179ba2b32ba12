//! What a connector declares it needs (`capabilities()` of the `connector-with-capabilities`
//! world): the outbound host patterns it reaches and the memory a call wants. A connection's
//! hosts must fit the patterns ([`Capabilities::admits`]); a new version that declares more than
//! the version before it ([`Capabilities::exceeds`]) waits for an admin's approval.
//!
//! A pattern is `*` (any host), `host` or `*.domain` (any host under `domain`, not `domain`
//! itself), each with an optional `:port`; without a port it admits any port. Hosts compare
//! ASCII case-insensitively.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most host patterns one connector declares.
pub const MAX_HOSTS: usize = 32;
/// Longest host pattern, in bytes.
const MAX_PATTERN: usize = 260;

/// What a connector needs from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Outbound host patterns it reaches (`api.example.com`, `*.example.com:8443`, `*`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The memory a call wants, MiB (a new connection's default).
    #[serde(default)]
    pub memory_mb: Option<u32>,
}

/// Most plugin versions whose declarations are kept parsed; the map starts over when full.
const MAX_KEPT: usize = 2048;

/// The host patterns the plugin version `plugin_id` declares, read from its stored `describe()`
/// answer (`info`) and parsed once, then kept (versions never change). For the call path: a
/// connection reaches only the hosts its connector's version declares, whatever was checked when
/// it was saved.
pub fn declared(plugin_id: &str, info: &str) -> Option<Arc<HostPatterns>> {
    type Kept = HashMap<String, Option<Arc<HostPatterns>>>;
    static KEPT: OnceLock<RwLock<Kept>> = OnceLock::new();
    let kept = KEPT.get_or_init(RwLock::default);
    if let Some(found) = kept.read().unwrap_or_else(|e| e.into_inner()).get(plugin_id) {
        return found.clone();
    }
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        capabilities: Option<Capabilities>,
    }
    let parsed =
        serde_json::from_str::<Only>(info).ok().and_then(|o| o.capabilities).map(|c| Arc::new(c.host_patterns()));
    let mut kept = kept.write().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= MAX_KEPT {
        kept.clear();
    }
    kept.insert(plugin_id.to_owned(), parsed.clone());
    parsed
}

/// A declaration's host patterns, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatterns(Vec<Pattern>);

impl HostPatterns {
    /// Whether `authority` (`host` or `host:port`, as a connection lists it) fits a pattern.
    pub fn admits(&self, authority: &str) -> bool {
        let authority = authority.trim().to_ascii_lowercase();
        // `host:port`, `[v6]:port`; a bare IPv6 address has colons and no port.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port))
                if !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && (!host.contains(':') || host.ends_with(']')) =>
            {
                (host, port.parse().ok())
            }
            _ => (authority.as_str(), None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0.iter().any(|p| p.admits(host, port))
    }
}

/// One pattern, parsed: the host part (`None` for `*`, `Some((true, d))` for `*.d`) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    any: bool,
    wildcard: bool,
    host: String,
    port: Option<u16>,
}

fn parse(text: &str) -> Result<Pattern, String> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() || text.len() > MAX_PATTERN {
        return Err(format!("{text:?}: a host pattern has 1 to {MAX_PATTERN} characters"));
    }
    if text == "*" {
        return Ok(Pattern { any: true, wildcard: false, host: String::new(), port: None });
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => {
            let port =
                port.parse::<u16>().map_err(|_| format!("{text:?}: the port is not a number from 0 to 65535"))?;
            (host.to_owned(), Some(port))
        }
        None => (text.clone(), None),
    };
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, host),
    };
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "{text:?}: expected host, *.domain or * (letters, digits, dashes and dots; one leading *.)"
        ));
    }
    Ok(Pattern { any: false, wildcard, host: name, port })
}

impl Pattern {
    /// Whether the host `host` (lowercase) on `port` (`None`: unknown, any) fits.
    fn admits(&self, host: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        self.any || if self.wildcard { host.ends_with(&format!(".{}", self.host)) } else { host == self.host }
    }

    /// Whether every host `other` admits, this one admits too.
    fn covers(&self, other: &Pattern) -> bool {
        if self.port.is_some() && self.port != other.port {
            return false;
        }
        if self.any {
            return true;
        }
        if other.any {
            return false;
        }
        match (self.wildcard, other.wildcard) {
            (_, false) => self.admits(&other.host, other.port),
            (true, true) => other.host == self.host || other.host.ends_with(&format!(".{}", self.host)),
            (false, true) => false,
        }
    }
}

impl Capabilities {
    /// The problems of a declaration, each with its path under `capabilities`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.hosts.len() > MAX_HOSTS {
            problems.push(("hosts".into(), format!("at most {MAX_HOSTS} host patterns")));
        }
        for (i, host) in self.hosts.iter().enumerate().take(MAX_HOSTS) {
            if let Err(message) = parse(host) {
                problems.push((format!("hosts[{i}]"), message));
            }
        }
        if let Some(mib) = self.memory_mb
            && !(1..=512).contains(&mib)
        {
            problems.push(("memory_mb".into(), format!("{mib}: from 1 to 512")));
        }
        problems
    }

    fn patterns(&self) -> Vec<Pattern> {
        self.hosts.iter().filter_map(|h| parse(h).ok()).collect()
    }

    /// The declared host patterns, parsed (invalid ones, refused at upload, are left out).
    pub fn host_patterns(&self) -> HostPatterns {
        HostPatterns(self.patterns())
    }

    /// Whether `authority` (`host` or `host:port`, as a connection lists it) fits a declared
    /// pattern.
    pub fn admits(&self, authority: &str) -> bool {
        self.host_patterns().admits(authority)
    }

    /// Whether a version declaring `self` needs more than one declaring `before` (`None`:
    /// declared nothing, so any host its connections allow): a host pattern `before` does not
    /// cover, or more memory.
    pub fn exceeds(new: Option<&Self>, before: Option<&Self>) -> bool {
        let Some(before) = before else { return false };
        let Some(new) = new else { return !before.patterns().iter().any(|p| p.any && p.port.is_none()) };
        let old = before.patterns();
        let more_hosts = new.patterns().iter().any(|p| !old.iter().any(|o| o.covers(p)));
        let more_memory = match (new.memory_mb, before.memory_mb) {
            (Some(n), Some(b)) => n > b,
            (Some(n), None) => n > 64,
            _ => false,
        };
        more_hosts || more_memory
    }
}

#[cfg(test)]
mod tests {
    use super::Capabilities;

    fn hosts(list: &[&str]) -> Capabilities {
        Capabilities { hosts: list.iter().map(|h| (*h).to_owned()).collect(), memory_mb: None }
    }

    #[test]
    fn patterns_admit_hosts_and_ports() {
        let declared = hosts(&["api.example.com", "*.dealer.example", "files.example.com:8443"]);
        assert!(declared.problems().is_empty());
        assert!(declared.admits("api.example.com") && declared.admits("API.example.com:443"));
        assert!(declared.admits("a.dealer.example") && declared.admits("b.a.dealer.example:8080"));
        assert!(!declared.admits("dealer.example"), "a wildcard is for the names under the domain");
        assert!(declared.admits("files.example.com:8443") && !declared.admits("files.example.com"));
        assert!(!declared.admits("evil.example.com") && !declared.admits("api.example.com.evil.test"));
        assert!(hosts(&["*"]).admits("anything.test:1"));
        let bad = hosts(&["http://x", "*.*.x", "a:99999", ""]).problems();
        assert_eq!(bad.len(), 4, "{bad:?}");
    }

    #[test]
    fn declarations_are_read_from_the_stored_info_once() {
        let info = r#"{"slug": "s", "operations": [], "capabilities": {"hosts": ["*.d.example"], "memory_mb": 8}}"#;
        let declared = super::declared("plugin-cap-1", info).expect("declared");
        assert!(declared.admits("a.d.example") && !declared.admits("e.example"));
        assert!(super::declared("plugin-cap-1", "{}").is_some(), "kept by plugin version");
        assert!(super::declared("plugin-cap-2", r#"{"slug": "s"}"#).is_none());
    }

    #[test]
    fn a_version_exceeds_another_when_it_reaches_further_or_wants_more_memory() {
        let v1 = hosts(&["api.example.com", "*.dealer.example"]);
        assert!(!Capabilities::exceeds(Some(&hosts(&["a.dealer.example", "api.example.com"])), Some(&v1)));
        assert!(!Capabilities::exceeds(Some(&hosts(&["*.b.dealer.example"])), Some(&v1)));
        assert!(Capabilities::exceeds(Some(&hosts(&["api.example.com", "more.example"])), Some(&v1)));
        assert!(Capabilities::exceeds(Some(&hosts(&["*.example.com"])), Some(&v1)));
        assert!(Capabilities::exceeds(Some(&hosts(&["*"])), Some(&v1)));
        assert!(Capabilities::exceeds(None, Some(&v1)), "declaring nothing is declaring everything");
        assert!(!Capabilities::exceeds(Some(&v1), None), "a first declaration narrows");
        assert!(!Capabilities::exceeds(None, Some(&hosts(&["*"]))));
        let more_memory = Capabilities { memory_mb: Some(256), ..v1.clone() };
        assert!(Capabilities::exceeds(Some(&more_memory), Some(&v1)));
    }
}
