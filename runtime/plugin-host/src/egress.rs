//! Egress: where the server's own outbound connections (plugin HTTP, alert webhooks) may go.
//!
//! One table decides whether an address is blocked ([`is_blocked`], after the IANA IPv4 and
//! IPv6 special-purpose address registries). A host name is resolved once, through a
//! [`Resolver`], and the connection goes to one of the addresses that passed the check
//! ([`allowed_addresses`]), never to a second lookup's answer: a name that changes its answer
//! between the check and the connect (DNS rebinding) cannot reach a blocked address.
//! [`CheckedDns`] is the same check as a `reqwest` resolver; [`tls_config`] the one set of
//! trusted roots (webpki roots plus an optional extra CA bundle).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures_util::future::BoxFuture;

/// IPv4 ranges that are not globally reachable (IANA IPv4 special-purpose address registry,
/// plus multicast and the reserved 240/4): (network, prefix length, what it is).
const BLOCKED_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private use"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space (CGNAT)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private use"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation (TEST-NET-1)"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay anycast (deprecated)"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private use"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation (TEST-NET-2)"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation (TEST-NET-3)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "limited broadcast"),
];

/// What an IPv6 range means for egress.
#[derive(Debug, Clone, Copy)]
enum V6 {
    Block,
    /// The range carries an IPv4 address (mapped, compatible, NAT64, 6to4): judge that one.
    Embedded(fn(Ipv6Addr) -> Ipv4Addr),
}

fn low_32(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

fn six_to_four(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[2], o[3], o[4], o[5])
}

/// IPv6 ranges (IANA IPv6 special-purpose address registry), the first match wins, so the
/// narrower entries come first. Anything outside 2000::/3 (the only global unicast space) is
/// blocked after these.
const RULES_V6: &[(Ipv6Addr, u8, V6, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, V6::Block, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, V6::Block, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, V6::Embedded(low_32), "IPv4-mapped"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, V6::Embedded(low_32), "IPv4-compatible (deprecated)"),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, V6::Embedded(low_32), "NAT64 well-known prefix"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, V6::Block, "NAT64 local use"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, V6::Block, "discard only"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, V6::Block, "IETF protocol assignments (incl. Teredo)"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, V6::Block, "documentation"),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, V6::Embedded(six_to_four), "6to4"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, V6::Block, "documentation"),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, V6::Block, "segment routing SIDs"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, V6::Block, "unique local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, V6::Block, "link local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, V6::Block, "site local (deprecated)"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, V6::Block, "multicast"),
];

fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// Whether the server refuses to connect to `ip` (unless private networks are allowed):
/// private, loopback, link-local, shared, documentation, benchmarking, multicast, reserved and
/// other special-purpose addresses; IPv6 forms that embed an IPv4 address are judged by it.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => BLOCKED_V4.iter().any(|(network, len, _)| in_v4(v4, *network, *len)),
        IpAddr::V6(v6) => match RULES_V6.iter().find(|(network, len, _, _)| in_v6(v6, *network, *len)) {
            Some((_, _, V6::Block, _)) => true,
            Some((_, _, V6::Embedded(v4), _)) => is_blocked(IpAddr::V4(v4(v6))),
            None => !in_v6(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3),
        },
    }
}

/// Name resolution, as a seam: production asks the system ([`SystemResolver`]); tests answer
/// what they like without DNS.
pub trait Resolver: Send + Sync {
    /// Every address `host` resolves to, with `port`.
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}

/// Why a host may not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("DNS lookup of {host} failed: {reason}")]
    Dns { host: String, reason: String },
    #[error("{host} resolves to the private or loopback address {address} (a blocked special-purpose range)")]
    Blocked { host: String, address: IpAddr },
}

/// Resolves `host` once (an IP literal is taken as it is) and answers the addresses that may
/// be connected to: all of them when `allow_private`, else those not [`is_blocked`]. Connect
/// only to these: resolving again could answer something else.
pub async fn allowed_addresses(
    resolver: &dyn Resolver,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refusal> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolver
            .lookup(host, port)
            .await
            .map_err(|err| Refusal::Dns { host: host.to_owned(), reason: err.to_string() })?,
    };
    let Some(first) = resolved.first().copied() else {
        return Err(Refusal::Dns { host: host.to_owned(), reason: "no addresses".into() });
    };
    let allowed: Vec<SocketAddr> = resolved.into_iter().filter(|a| allow_private || !is_blocked(a.ip())).collect();
    if allowed.is_empty() {
        return Err(Refusal::Blocked { host: host.to_owned(), address: first.ip() });
    }
    Ok(allowed)
}

/// The check as a `reqwest` resolver: the client connects only to the addresses it answers.
/// (reqwest does not ask a resolver about IP-literal hosts: check those before sending.)
pub struct CheckedDns {
    pub resolver: Arc<dyn Resolver>,
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for CheckedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is the URL's; reqwest sets it on every address.
            let addresses = allowed_addresses(&*resolver, &host, 0, allow_private).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The TLS client configuration of every outbound connection: the webpki roots (the ones
/// wasmtime-wasi-http trusts) plus the certificates of `extra_ca_file` (PEM), with ring.
pub fn tls_config(extra_ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
    if let Some(path) = extra_ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("reading {}", path.display()))? {
            let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
            roots.add(cert).with_context(|| format!("a certificate of {} is not a usable CA", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "{} holds no PEM certificate", path.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_special_purpose_table_blocks_what_it_should() {
        let blocked = [
            // IPv4 registry
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.5.4",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.10",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6 registry
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::8.8.8.8",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:1ff::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "3fff:fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
            "1::1",
        ];
        for ip in blocked {
            assert!(is_blocked(ip.parse().expect("ip")), "{ip} must be blocked");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "151.101.1.1",
            "172.32.0.1",
            "192.0.1.1",
            "192.88.98.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:200::1",
            "3fff:1000::1",
        ];
        for ip in allowed {
            assert!(!is_blocked(ip.parse().expect("ip")), "{ip} must be allowed");
        }
    }

    /// Answers `answer` and counts how often it was asked.
    struct Fixed {
        answer: Vec<IpAddr>,
        asked: AtomicUsize,
    }

    impl Resolver for Fixed {
        fn lookup(&self, _host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            Box::pin(async move { Ok(answer) })
        }
    }

    fn fixed(answer: &[&str]) -> Fixed {
        Fixed { answer: answer.iter().map(|a| a.parse().expect("ip")).collect(), asked: AtomicUsize::new(0) }
    }

    #[tokio::test]
    async fn blocked_answers_are_dropped_and_an_all_blocked_name_is_refused() {
        let mixed = fixed(&["127.0.0.1", "8.8.8.8"]);
        let allowed = allowed_addresses(&mixed, "mixed.example", 443, false).await.expect("one is public");
        assert_eq!(allowed, [SocketAddr::from(([8, 8, 8, 8], 443))]);
        let all = allowed_addresses(&mixed, "mixed.example", 443, true).await.expect("private allowed");
        assert_eq!(all.len(), 2);

        let private = fixed(&["10.0.0.1", "::1"]);
        let err = allowed_addresses(&private, "internal.example", 80, false).await.expect_err("refused");
        assert!(matches!(err, Refusal::Blocked { .. }), "{err}");
        assert!(err.to_string().contains("private or loopback"), "{err}");

        // IP literals are judged without asking the resolver.
        let unused = fixed(&[]);
        assert!(allowed_addresses(&unused, "[::1]", 80, false).await.is_err());
        assert!(allowed_addresses(&unused, "169.254.169.254", 80, false).await.is_err());
        assert_eq!(unused.asked.load(Ordering::SeqCst), 0);
        let empty = allowed_addresses(&unused, "nothing.example", 80, false).await.expect_err("no answer");
        assert!(matches!(empty, Refusal::Dns { .. }));
    }

    #[tokio::test]
    async fn the_reqwest_resolver_answers_only_allowed_addresses() {
        use reqwest::dns::Resolve;
        let dns = CheckedDns { resolver: Arc::new(fixed(&["192.168.1.1", "1.1.1.1"])), allow_private: false };
        let name: reqwest::dns::Name = "rebind.example".parse().expect("name");
        let answer: Vec<SocketAddr> = dns.resolve(name).await.expect("resolves").collect();
        assert_eq!(answer, [SocketAddr::from(([1, 1, 1, 1], 0))]);

        let dns = CheckedDns { resolver: Arc::new(fixed(&["127.0.0.1"])), allow_private: false };
        let name: reqwest::dns::Name = "loopback.example".parse().expect("name");
        let err = dns.resolve(name).await.err().expect("refused");
        assert!(err.downcast_ref::<Refusal>().is_some(), "{err}");
    }

    #[test]
    fn an_extra_ca_file_must_hold_certificates() {
        assert!(tls_config(None).is_ok());
        let path = std::env::temp_dir().join(format!("dibop-egress-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = tls_config(Some(&path)).expect_err("no certificate");
        assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
        let _ = std::fs::remove_file(&path);
    }
}
