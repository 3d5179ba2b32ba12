//! `DbProxy`: a TCP proxy between a server and its database that a test switches between
//! passing traffic and failing in the ways a database (or the network to it) fails.
//!
//! ```ignore
//! let proxy = DbProxy::start("127.0.0.1:5432".parse()?).await;
//! let url = proxy.url_through("postgres://postgres@127.0.0.1:5432/db"); // the server's URL
//! proxy.set(Mode::Refuse);   // the database is down
//! proxy.set(Mode::Pass);     // it is back
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards every byte both ways.
    Pass,
    /// Nothing listens on the proxy's address (a connection attempt is refused) and every open
    /// connection is closed: the database is down.
    Refuse,
    /// Accepts connections and closes them at once, and closes every open one: the database
    /// restarting, or a network that resets connections.
    Reset,
    /// Accepts connections and holds them, and stops forwarding on open ones (they resume on
    /// `Pass`): a database that hangs, or is far slower than any bound.
    Stall,
}

/// A running proxy; it stops when dropped.
pub struct DbProxy {
    /// Where the server connects instead of the database.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl DbProxy {
    /// A proxy on a free loopback port forwarding to `target`, in [`Mode::Pass`].
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, watched) = watch::channel(Mode::Pass);
        let task = tokio::spawn(listen(listener, addr, target, watched));
        Self { addr, mode, task }
    }

    /// Switches the mode; it applies to open connections at once.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by the proxy's address.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let credentials = authority.rsplit_once('@').map(|(c, _)| format!("{c}@")).unwrap_or_default();
        format!("{scheme}://{credentials}{}/{path}", self.addr)
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The host and port of a `postgres://` URL, as a socket address (`localhost` is 127.0.0.1).
pub fn target_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    let with_port = if host_port.contains(':') { host_port } else { format!("{host_port}:5432") };
    with_port.parse().unwrap_or_else(|e| panic!("database address {with_port}: {e}"))
}

async fn listen(mut listener: TcpListener, addr: SocketAddr, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    loop {
        if *mode.borrow() == Mode::Refuse {
            // Nothing listens: connection attempts are refused by the system.
            drop(listener);
            if mode.wait_for(|m| *m != Mode::Refuse).await.is_err() {
                return;
            }
            listener = rebind(addr).await;
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                tokio::spawn(connection(client, target, mode.clone()));
            }
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
}

/// Listens on `addr` again (the port was just released; nothing else took it).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        if socket.bind(addr).is_ok()
            && let Ok(listener) = socket.listen(128)
        {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the proxy could not listen on {addr} again");
}

async fn connection(client: TcpStream, target: SocketAddr, mode: watch::Receiver<Mode>) {
    if matches!(*mode.borrow(), Mode::Refuse | Mode::Reset) {
        return;
    }
    // A stalled connection waits here, accepted and silent, until the mode changes.
    let mut waiting = mode.clone();
    let Ok(now) = waiting.wait_for(|m| *m != Mode::Stall).await.map(|m| *m) else { return };
    if now != Mode::Pass {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending (or a mode that closes) ends both: the halves drop together.
    tokio::select! {
        () = pump(client_read, server_write, mode.clone()) => {}
        () = pump(server_read, client_write, mode) => {}
    }
}

/// Copies `from` to `to` while the mode passes; holds the bytes while it stalls; returns (and
/// so closes the connection) when either side closes or the mode closes connections.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // A switch to a closing mode must not wait for the next byte.
            () = closing(&mut mode) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match mode.wait_for(|m| *m != Mode::Stall).await.map(|m| *m) {
            Ok(Mode::Pass) => {}
            _ => return,
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Resolves when the mode closes open connections (`Refuse`, `Reset`).
async fn closing(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| matches!(m, Mode::Refuse | Mode::Reset)).await;
}
