//! Keep-alive connections of plugin requests. A connection that answered a request completely
//! waits here for the next request of the same tenant's connection to the same checked address
//! under the same host name (the TLS name it was verified for), so a step does not pay a TCP and
//! TLS handshake per request. Reuse never widens what the egress check allowed: the key holds
//! the address the check passed for this request, and a connection opened for one enterprise's
//! connection is never lent to another's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::WasiBody;

/// How long an idle connection is kept: below the 5 s keep-alive of Node.js servers, the
/// shortest common default, so that a reused connection is rarely one the server is closing.
const IDLE_FOR: Duration = Duration::from_secs(4);
/// Idle connections kept per key (a step's burst of parallel requests to one system).
const PER_KEY: usize = 32;
/// Idle connections kept in all (each is a socket and a task).
const TOTAL: usize = 512;

/// Which requests may share a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub enterprise_id: String,
    /// The DIBOP connection (or, without one, the system) the call runs for.
    pub connection: String,
    /// The address the egress check passed.
    pub address: SocketAddr,
    /// The host name: the TLS server name, and the `Host` the connection was opened for.
    pub host: String,
    pub tls: bool,
}

struct Idle {
    sender: SendRequest<WasiBody>,
    since: Instant,
}

#[derive(Default)]
struct Idles {
    by_key: HashMap<Key, Vec<Idle>>,
    count: usize,
}

impl Idles {
    /// Drops connections idle too long or closed by the server.
    fn sweep(&mut self, now: Instant) {
        let mut count = 0;
        self.by_key.retain(|_, idle| {
            idle.retain(|i| now.duration_since(i.since) < IDLE_FOR && !i.sender.is_closed());
            count += idle.len();
            !idle.is_empty()
        });
        self.count = count;
    }
}

/// The idle connections of a process.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Idles>,
}

impl Pool {
    /// An idle connection for `key` that is ready for a request, the most recently used first.
    pub fn take(&self, key: &Key) -> Option<SendRequest<WasiBody>> {
        let mut idles = self.idle.lock().ok()?;
        let now = Instant::now();
        let found = {
            let list = idles.by_key.get_mut(key)?;
            let mut found = None;
            while let Some(idle) = list.pop() {
                if now.duration_since(idle.since) < IDLE_FOR && idle.sender.is_ready() {
                    found = Some(idle.sender);
                    break;
                }
            }
            found
        };
        idles.sweep(now);
        found
    }

    /// Keeps `sender` for the next request of `key`, when it can carry one and there is room.
    pub fn put(&self, key: Key, sender: SendRequest<WasiBody>) {
        if !sender.is_ready() {
            return;
        }
        let Ok(mut idles) = self.idle.lock() else { return };
        let now = Instant::now();
        if idles.count >= TOTAL {
            idles.sweep(now);
        }
        if idles.count >= TOTAL {
            return;
        }
        let list = idles.by_key.entry(key).or_default();
        if list.len() < PER_KEY {
            list.push(Idle { sender, since: now });
            idles.count += 1;
        }
    }

    /// Idle connections kept now.
    pub fn idle(&self) -> usize {
        self.idle.lock().map(|i| i.count).unwrap_or(0)
    }
}
