//! Mesh mTLS termination (`listeners[].mesh` on `HTTP` and `TCP` listeners): the
//! listener presents the workload's own certificate, requires a client
//! certificate chaining to the mesh trust bundle with a SPIFFE ID (one of
//! `allowedPeers`, when set), and hands the verified peer to the request path as
//! `ConnInfo.client_cert`, like edge mTLS does. `PERMISSIVE` listeners also serve
//! plaintext on the same port: the first byte, peeked without consuming it, tells
//! a TLS handshake record (0x16) from anything else.
//!
//! Everything is read from the [`WorkloadIdentity`] per handshake ([`verify`]), so
//! certificate and CA rotations reach new connections at once and never close open
//! ones. Session resumption is off on mesh connections: a resumed session would
//! skip the checks against the current bundle and `allowedPeers`.
//!
//! Failures are counted in `meshgate_tls_handshake_failures_total{listener,reason}`
//! (`not_tls` for plaintext on `STRICT`, `no_certificate`, `bad_certificate`,
//! `peer_not_allowed`, `timeout`, `closed`, …). [`conn`] serves HTTP connections;
//! L4 listeners call [`MeshListener::accept`] and copy the plaintext bytes.

pub(crate) mod conn;
mod stream;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshgate_config::{Config, ListenerMesh, ListenerProtocol, MeshTlsMode};
use meshgate_observe::metrics::TlsFailure;
use rustls::server::NoServerSessionStorage;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

pub use stream::MeshStream;

use super::tls::ClientCert;
use crate::identity::WorkloadIdentity;
use crate::proxy::Shared;
use crate::upstream::TlsOrigin;
use verify::{IdentityCert, Patterns, PeerVerifier};

/// How long a client may take from connecting to finishing the mTLS handshake
/// (its first byte included).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The mTLS side of one mesh listener.
pub struct MeshListener {
    listener: Arc<str>,
    protocol: ListenerProtocol,
    settings: ListenerMesh,
    identity: Arc<WorkloadIdentity>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for MeshListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshListener")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A connection a mesh listener let in.
pub enum Accepted {
    /// Plaintext, on a `PERMISSIVE` listener.
    Plain(TcpStream),
    /// mTLS, with the verified peer.
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        Option<Arc<ClientCert>>,
    ),
}

impl MeshListener {
    /// The server config of listener `name`: TLS 1.3, the identity's certificate,
    /// client certificates required; ALPN `h2`/`http/1.1` on `HTTP` listeners.
    pub fn build(
        name: &str,
        protocol: ListenerProtocol,
        settings: &ListenerMesh,
        identity: &Arc<WorkloadIdentity>,
    ) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let allowed = settings
            .allowed_peers
            .as_ref()
            .map(|p| Patterns(p.clone().into()));
        let verifier = PeerVerifier::new(identity.clone(), provider.clone(), allowed)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("mesh: {e}"))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(IdentityCert(identity.clone())));
        if protocol == ListenerProtocol::HTTP {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(MeshListener {
            listener: name.into(),
            protocol,
            settings: settings.clone(),
            identity: identity.clone(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// Runs the server side on `stream`: plaintext passes on `PERMISSIVE`
    /// listeners, TLS must complete mTLS. A refused connection is counted and
    /// logged here; its reason is returned (the caller just drops it).
    pub async fn accept(
        &self,
        stream: TcpStream,
        shared: &Shared,
        client: SocketAddr,
    ) -> Result<Accepted, TlsFailure> {
        let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(stream)).await {
            Ok(r) => r,
            Err(_) => Err((TlsFailure::Timeout, "handshake timed out".to_owned())),
        };
        result.map_err(|(reason, error)| {
            shared
                .metrics
                .tls_handshake_failures
                .inc(&self.listener, reason);
            if reason == TlsFailure::PeerNotAllowed {
                tracing::info!(listener = %self.listener, %client, %error, reason = reason.as_str(), "mesh peer refused");
            } else {
                tracing::debug!(listener = %self.listener, %client, %error, reason = reason.as_str(), "mesh mTLS handshake failed");
            }
            reason
        })
    }

    async fn handshake(&self, stream: TcpStream) -> Result<Accepted, (TlsFailure, String)> {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return Err((TlsFailure::Closed, "closed before sending".into())),
            Ok(_) => {}
            Err(e) => return Err((TlsFailure::Closed, e.to_string())),
        }
        if first[0] != TLS_HANDSHAKE {
            return match self.settings.mode {
                MeshTlsMode::PERMISSIVE => Ok(Accepted::Plain(stream)),
                MeshTlsMode::STRICT => Err((
                    TlsFailure::NotTls,
                    "plaintext on a STRICT mesh listener".into(),
                )),
            };
        }
        match self.acceptor.accept(stream).await {
            Ok(tls) => {
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| peer_cert(leaf))
                    .map(Arc::new);
                Ok(Accepted::Tls(Box::new(tls), peer))
            }
            Err(e) => {
                let reason = if verify::is_peer_not_allowed(&e) {
                    TlsFailure::PeerNotAllowed
                } else {
                    super::accept::handshake::reason(&e, None)
                };
                Err((reason, e.to_string()))
            }
        }
    }

    /// [`MeshListener::accept`] for L4 listeners: the connection as a byte stream,
    /// or the access log reason it was refused with.
    pub async fn accept_stream(
        &self,
        stream: TcpStream,
        shared: &Shared,
    ) -> Result<(MeshStream, Option<Arc<ClientCert>>), &'static str> {
        let client = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        match self.accept(stream, shared, client).await {
            Ok(Accepted::Plain(s)) => Ok((MeshStream::Plain(s), None)),
            Ok(Accepted::Tls(tls, peer)) => Ok((
                MeshStream::Tls(Box::new(tokio_rustls::TlsStream::Server(*tls))),
                peer,
            )),
            Err(reason) => Err(reason.as_str()),
        }
    }

    /// The workload identity this listener presents.
    pub fn identity(&self) -> &Arc<WorkloadIdentity> {
        &self.identity
    }
}

/// The verified peer as the request path sees it. Its `subject` is the SPIFFE ID:
/// the subject of a mesh certificate names nobody, and the access log's
/// `client_cert` (which shows `subject`) should say who called.
fn peer_cert(leaf: &[u8]) -> Option<ClientCert> {
    let mut cert = ClientCert::from_der(leaf)?;
    if let Some(id) = cert.uris.iter().find(|u| u.starts_with("spiffe://")) {
        cert.subject = id.as_str().into();
    }
    Some(cert)
}

/// L4 connections to a service: with `origin` (`services[].mesh`), the mTLS
/// handshake with `endpoint` (`host:port`) over `stream`; without, `stream` as is.
/// A failed handshake is the access log reason `upstream_tls_failure`.
pub async fn originate(
    origin: Option<&TlsOrigin>,
    stream: TcpStream,
    endpoint: &str,
) -> Result<MeshStream, &'static str> {
    let Some(origin) = origin else {
        return Ok(MeshStream::Plain(stream));
    };
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, origin.handshake(stream, host)).await {
        Ok(Ok(tls)) => Ok(MeshStream::Tls(Box::new(tokio_rustls::TlsStream::Client(
            tls,
        )))),
        Ok(Err(e)) => {
            tracing::warn!(%endpoint, error = %e, "upstream mesh mTLS handshake failed");
            Err("upstream_tls_failure")
        }
        Err(_) => {
            tracing::warn!(%endpoint, "upstream mesh mTLS handshake timed out");
            Err("upstream_tls_failure")
        }
    }
}

/// The mesh state of every listener with `mesh` in a snapshot.
#[derive(Debug, Default)]
pub struct MeshListenerSet(Vec<(Arc<str>, Arc<MeshListener>)>);

impl MeshListenerSet {
    /// Builds the mesh state of `config`'s listeners, reusing `previous`'s where
    /// nothing changed. A listener with `mesh` needs `identity`.
    pub fn compile(
        config: &Config,
        identity: Option<&Arc<WorkloadIdentity>>,
        previous: Option<&MeshListenerSet>,
    ) -> Result<Self, String> {
        let mut set = Vec::new();
        for l in &config.listeners {
            let Some(settings) = &l.mesh else { continue };
            let Some(identity) = identity else {
                return Err(format!(
                    "listeners {:?}: mesh needs a workload identity, and this process has none \
                     (it is installed by meshgate sidecar, or a gateway joining the mesh)",
                    l.name
                ));
            };
            let reused = previous.and_then(|p| p.get(&l.name)).filter(|m| {
                m.settings == *settings
                    && m.protocol == l.protocol
                    && Arc::ptr_eq(&m.identity, identity)
            });
            let mesh = match reused {
                Some(m) => m.clone(),
                None => MeshListener::build(&l.name, l.protocol, settings, identity)
                    .map_err(|e| format!("listeners {:?}: {e}", l.name))?,
            };
            set.push((Arc::from(l.name.as_str()), mesh));
        }
        Ok(MeshListenerSet(set))
    }

    /// The mesh state of listener `name`, if it has `mesh`.
    pub fn get(&self, name: &str) -> Option<&Arc<MeshListener>> {
        self.0.iter().find(|(n, _)| &**n == name).map(|(_, m)| m)
    }
}
