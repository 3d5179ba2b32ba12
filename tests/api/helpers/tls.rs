//! A test CA, a server certificate it signed for `localhost` and 127.0.0.1, and https servers
//! on loopback that count their handshakes: for what the server sends out over TLS (alert
//! deliveries, plugin requests) with the CA given as `extra_ca_file`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1.
pub struct TestPki {
    pub ca_pem: String,
    pub server: rustls::ServerConfig,
}

pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "DIBOP test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");

    let key = rustls::pki_types::PrivateKeyDer::from(leaf_key);
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .expect("server config");
    TestPki { ca_pem: ca_cert.pem(), server }
}

/// A TLS listener for `axum::serve`; failed handshakes are skipped and counted, connections
/// that completed one are counted too.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes_failed: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else { continue };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => {
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                    return (tls, address);
                }
                Err(_) => {
                    self.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// `app` over https on 127.0.0.1 with `server`'s certificate: its port, and how many
/// handshakes failed and how many connections were accepted.
pub async fn tls_server(server: rustls::ServerConfig, app: axum::Router) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let (handshakes_failed, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        handshakes_failed: handshakes_failed.clone(),
        accepted: accepted.clone(),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, handshakes_failed, accepted)
}
