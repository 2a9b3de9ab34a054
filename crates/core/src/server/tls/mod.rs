//! TLS termination for `HTTPS` listeners: the compiled TLS state of each listener
//! (a rustls `ServerConfig` behind an `ArcSwap`, so certificate files changed on
//! disk are picked up for new handshakes without a restart), and the verified
//! client certificate identity handed to the request path.
//!
//! Files are read when the config is compiled: a bad file fails the compile, so
//! `Gateway::apply` refuses the whole config and the old one keeps serving. A
//! listener whose TLS settings did not change keeps its state (and its watcher)
//! across reloads.

mod load;
mod sni;
mod watch;
pub mod x509;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use meshgate_config::{Config, ListenerProtocol, ListenerTls};
use tokio_rustls::TlsAcceptor;

pub use load::TlsError;

/// The verified client certificate of a connection (mTLS at the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 subject: the certificate's RDNs in reverse order, so a subject
    /// written `/O=Example/CN=alice` reads `CN=alice,O=Example`.
    pub subject: Arc<str>,
    /// subjectAltName URIs (a SPIFFE ID, for mesh workloads).
    pub uris: Box<[String]>,
    /// subjectAltName DNS names.
    pub dns_names: Box<[String]>,
}

impl ClientCert {
    /// Reads the identity of a DER certificate; `None` if it cannot be parsed.
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let names = x509::names(der)?;
        Some(ClientCert {
            subject: names.subject.into(),
            uris: names.uris.into(),
            dns_names: names.dns.into(),
        })
    }
}

/// The TLS side of one `HTTPS` listener.
pub struct TlsListener {
    listener: Arc<str>,
    settings: ListenerTls,
    config: ArcSwap<rustls::ServerConfig>,
    /// File changes that did not load (the old certificates stayed).
    reload_failures: AtomicU64,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Reads the files of `settings` and starts watching them for changes (when
    /// called inside a tokio runtime).
    pub fn build(listener: &str, settings: &ListenerTls) -> Result<Arc<Self>, TlsError> {
        let stamps = watch::stamps(settings);
        let config = load::server_config(settings)?;
        let this = Arc::new(TlsListener {
            listener: listener.into(),
            settings: settings.clone(),
            config: ArcSwap::new(config),
            reload_failures: AtomicU64::new(0),
        });
        watch::spawn(Arc::downgrade(&this), stamps);
        Ok(this)
    }

    /// An acceptor with the current certificates.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// How long a client may take to complete the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.settings.handshake_timeout.get()
    }

    /// How many times changed files failed to load (and the previous certificates
    /// were kept); each failure is also logged as a warning.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Re-reads the files; on success new handshakes use them, on failure the
    /// current config stays.
    fn reload(&self) -> Result<(), TlsError> {
        match load::server_config(&self.settings) {
            Ok(config) => {
                self.config.store(config);
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// The TLS state of every `HTTPS` listener of a snapshot.
#[derive(Debug, Default)]
pub struct ListenerTlsSet(Vec<(Arc<str>, Arc<TlsListener>)>);

impl ListenerTlsSet {
    /// Builds the TLS state of `config`'s `HTTPS` listeners, reusing `previous`'s
    /// for listeners whose name and TLS settings are unchanged. The error names
    /// the listener and the file. Also refuses `httpsRedirect` on a listener that
    /// is not `HTTP`.
    pub fn compile(config: &Config, previous: Option<&ListenerTlsSet>) -> Result<Self, String> {
        let mut set = Vec::new();
        for l in &config.listeners {
            // Validation does not look at it yet: refuse here rather than ignore it.
            if l.https_redirect.is_some() && l.protocol != ListenerProtocol::HTTP {
                return Err(format!(
                    "listeners {:?}: httpsRedirect is only for HTTP listeners (protocol is {:?})",
                    l.name, l.protocol
                ));
            }
            let (ListenerProtocol::HTTPS, Some(settings)) = (l.protocol, &l.tls) else {
                continue;
            };
            let reused = previous
                .and_then(|p| p.get(&l.name))
                .filter(|t| t.settings == *settings);
            let tls = match reused {
                Some(t) => t.clone(),
                None => TlsListener::build(&l.name, settings)
                    .map_err(|e| format!("listeners {:?}: tls: {e}", l.name))?,
            };
            set.push((Arc::from(l.name.as_str()), tls));
        }
        Ok(ListenerTlsSet(set))
    }

    /// The TLS state of listener `name`, if it is an `HTTPS` listener.
    pub fn get(&self, name: &str) -> Option<&Arc<TlsListener>> {
        self.0.iter().find(|(n, _)| &**n == name).map(|(_, t)| t)
    }
}
