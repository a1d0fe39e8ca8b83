//! Peer authentication: mutual TLS with the cluster's CA, on the node's one port.
//!
//! Clients, operators and peers share the port. A connection that opens with a TLS handshake
//! is served over TLS, anything else in plain HTTP/2 ([`incoming`]), so clients need nothing
//! new. A TLS client may present a certificate; if it does, it must chain to the cluster CA or
//! the handshake fails. With credentials (`--tls-ca`, `--tls-cert`, `--tls-key`) the `Raft`
//! service serves only connections whose certificate names the node that each envelope or
//! snapshot claims as its sender ([`PeerAuth::sender`], [`Sender::check`]); the rest are refused
//! and counted (`ordeal_peer_auth_rejected_total`). A node dials its peers over TLS with its own
//! certificate, and checks that the peer's certificate names the id it meant to reach
//! ([`endpoint`]).
//!
//! Without credentials a node runs as before and warns once that its peers are unauthenticated
//! (as etcd does); `/v1/status` and `ordeal_peer_auth_enabled` say which it is.

use crate::metrics::Metrics;
use ordeal_wire::certs::{NodeFiles, peer_name};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long a connection may take to show its first byte and finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Accepted connections not yet taken by the server.
const ACCEPT_QUEUE: usize = 64;

/// Credentials that do not load.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A credential file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A credential file holds no usable PEM item of the kind expected.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The certificate, key and CA do not make a TLS configuration (say a key that does not
    /// match the certificate).
    #[error("TLS credentials {cert} and {key}: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why rustls refused them.
        source: rustls::Error,
    },
}

/// A node's loaded credentials: how it accepts TLS and how it dials its peers.
pub struct PeerTls {
    acceptor: TlsAcceptor,
    client: ClientTlsConfig,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |what: String| TlsError::Pem { path: path.to_path_buf(), what };
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate in it".into()));
    }
    Ok(certs)
}

impl PeerTls {
    /// Loads a node's CA, certificate and key; every problem is reported now, not at the first
    /// connection.
    pub fn load(files: &NodeFiles) -> Result<PeerTls, TlsError> {
        let (ca_pem, cert_pem, key_pem) = (read(&files.ca)?, read(&files.cert)?, read(&files.key)?);
        let mut roots = rustls::RootCertStore::empty();
        for ca in certificates(&files.ca, &ca_pem)? {
            roots
                .add(ca)
                .map_err(|e| TlsError::Pem { path: files.ca.clone(), what: format!("not a CA certificate: {e}") })?;
        }
        let chain = certificates(&files.cert, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| TlsError::Pem { path: files.key.clone(), what: format!("no private key in it: {e}") })?;
        let config_error = |source| TlsError::Config { cert: files.cert.clone(), key: files.key.clone(), source };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Optional: clients without certificates are served; a certificate that is presented
        // must chain to the cluster CA, and the Raft service asks for one.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| config_error(rustls::Error::General(e.to_string())))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(config_error)?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let client = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca_pem))
            .identity(Identity::from_pem(&cert_pem, &key_pem));
        Ok(PeerTls { acceptor: TlsAcceptor::from(Arc::new(server)), client })
    }
}

/// The endpoint to dial peer `peer` at `addr`: TLS with this node's certificate, accepting only
/// a certificate that names `peer`, when `tls` is given; plain HTTP/2 otherwise.
pub fn endpoint(tls: Option<&PeerTls>, peer: u64, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        None => Endpoint::from_shared(format!("http://{addr}")),
        Some(t) => {
            Endpoint::from_shared(format!("https://{addr}"))?.tls_config(t.client.clone().domain_name(peer_name(peer)))
        }
    }
}

/// What the server knows of a connection: the certificate its client presented, if any,
/// already verified against the cluster CA by the handshake.
#[derive(Debug, Clone)]
pub struct PeerConn {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// Its certificate (the chain's first).
    pub cert: Option<CertificateDer<'static>>,
}

/// One accepted connection: plain, or TLS.
pub enum Conn {
    /// Plain HTTP/2.
    Plain(TcpStream),
    /// TLS, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerConn;

    fn connect_info(&self) -> PeerConn {
        match self {
            Conn::Plain(s) => PeerConn { remote: s.peer_addr().ok(), cert: None },
            Conn::Tls(s) => {
                let (tcp, tls) = s.get_ref();
                let cert = tls.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
                PeerConn { remote: tcp.peer_addr().ok(), cert }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The connections `listener` accepts, for the gRPC server: each plain or TLS by its first
/// byte. Handshakes run concurrently, each bounded, so a slow or silent client holds up no one;
/// a failed handshake (a certificate from another CA, say) is counted and logged.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<PeerTls>>,
    metrics: Arc<Metrics>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: the server goes on when it can.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Nagle's algorithm with delayed ACKs would add 40 ms to small replies.
            let _ = stream.set_nodelay(true);
            let (tx, tls, metrics) = (tx.clone(), tls.clone(), metrics.clone());
            if tx.is_closed() {
                return;
            }
            tokio::spawn(async move {
                let conn = match tls {
                    None => Some(Conn::Plain(stream)),
                    Some(tls) => accept(stream, remote, &tls, &metrics).await,
                };
                if let Some(conn) = conn {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Serves `stream` over TLS if it opens with a handshake, plainly otherwise; `None` if it
/// failed or timed out.
async fn accept(stream: TcpStream, remote: SocketAddr, tls: &PeerTls, metrics: &Metrics) -> Option<Conn> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => return Some(Conn::Plain(stream)),
        // Closed, failed or silent before its first byte: nothing to serve.
        _ => return None,
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => {
            metrics.peer_auth_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%remote, "TLS handshake refused: {e}");
            None
        }
        Err(_) => {
            tracing::warn!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// Whether the `Raft` service asks its callers for a certificate.
#[derive(Clone)]
pub struct PeerAuth {
    /// On when the node has credentials.
    pub required: bool,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

/// Who may send on one `Raft` call.
pub struct Sender {
    /// The caller's certificate; `None` when peers are not authenticated.
    cert: Option<CertificateDer<'static>>,
    metrics: Arc<Metrics>,
}

impl PeerAuth {
    /// The sender of a `Raft` call: refused (and counted) when certificates are required and
    /// its connection presented none.
    pub fn sender<T>(&self, request: &tonic::Request<T>) -> Result<Sender, Status> {
        let metrics = self.metrics.clone();
        if !self.required {
            return Ok(Sender { cert: None, metrics });
        }
        let conn = request.extensions().get::<PeerConn>();
        match conn.and_then(|c| c.cert.clone()) {
            Some(cert) => Ok(Sender { cert: Some(cert), metrics }),
            None => {
                self.metrics.peer_auth_rejected.fetch_add(1, Ordering::Relaxed);
                let remote = conn.and_then(|c| c.remote);
                tracing::warn!(?remote, "raft traffic without a client certificate refused");
                Err(Status::unauthenticated("peer traffic needs a client certificate from the cluster CA"))
            }
        }
    }
}

impl Sender {
    /// Checks that the caller's certificate names node `claimed` (refused and counted if not).
    pub fn check(&self, claimed: u64) -> Result<(), Status> {
        let Some(cert) = &self.cert else { return Ok(()) };
        let names = ServerName::try_from(peer_name(claimed))
            .map_err(|e| Status::invalid_argument(format!("node id {claimed}: {e}")))?;
        let named =
            webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.verify_is_valid_for_subject_name(&names).is_ok());
        if named {
            return Ok(());
        }
        self.metrics.peer_auth_rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(claimed, "raft traffic claiming a node its certificate does not name refused");
        Err(Status::permission_denied(format!("the connection's certificate does not name node {claimed}")))
    }
}
