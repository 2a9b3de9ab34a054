//! The workload side of mesh identity: obtains and renews this workload's
//! certificate from the control plane's `Identity` service and keeps its trust
//! bundle current, in a [`WorkloadIdentity`] that TLS code reads per handshake.
//!
//! The private key is generated here (ECDSA P-256) and never leaves the process:
//! the control plane only sees a CSR. Each renewal uses a fresh key. Renewal
//! happens at half-life; a failed renewal is retried with jittered exponential
//! backoff, warning with the time left, until it succeeds — the working
//! certificate stays in use meanwhile (an error is logged once it has expired).
//! The trust bundle is followed on a server stream and installed on each change.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshgate_control::client::Backoff;
use meshgate_control::proto::v1::identity_client::IdentityClient as IdentityRpc;
use meshgate_control::proto::v1::{Empty, SignRequest};
use meshgate_core::identity::{IdentityError, WorkloadIdentity};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};

/// Longest wait for one Sign answer.
const SIGN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to get the identity and which one to claim.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// `https://host:port` of the control plane.
    pub control: String,
    /// PEM CA certificate(s) that issued the control plane's serving certificate.
    pub ca_pem: Vec<u8>,
    /// Bearer token (sidecar token for `service`, or a gateway token).
    pub token: String,
    pub service: String,
    /// "" means "default".
    pub namespace: String,
    /// Certificate lifetime to ask for (None: the CA's default).
    pub ttl: Option<Duration>,
    /// Retry delays after failures.
    pub backoff: Backoff,
}

/// Why the identity could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum IdentityClientError {
    #[error("control plane URL {0:?} must be https://")]
    NotHttps(String),
    #[error("control plane: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the token cannot be sent as a header")]
    Token,
    #[error("the control plane refused to sign: {0}")]
    Refused(String),
    #[error("generating the key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the control plane answered an unusable certificate: {0}")]
    Answer(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// A running identity: renewal and bundle tasks stop when it is dropped.
pub struct IdentityClient {
    identity: Arc<WorkloadIdentity>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for IdentityClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A client of the Identity service with its token.
#[derive(Clone)]
struct Rpc {
    client: IdentityRpc<Channel>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    settings: Arc<IdentitySettings>,
}

/// A certificate as received, ready to install.
struct Signed {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    bundle: Vec<CertificateDer<'static>>,
    received: SystemTime,
    not_after: SystemTime,
}

impl IdentityClient {
    /// Signs a first certificate (retrying while the control plane is
    /// unreachable; a refusal is returned), then keeps it renewed.
    pub async fn start(settings: IdentitySettings) -> Result<IdentityClient, IdentityClientError> {
        let rpc = Rpc::new(settings)?;
        let mut failures = 0u32;
        let first = loop {
            match rpc.sign().await {
                Ok(s) => break s,
                Err(e @ (IdentityClientError::Refused(_) | IdentityClientError::Key(_))) => {
                    return Err(e);
                }
                Err(e) => {
                    let delay = jittered(rpc.settings.backoff, &mut failures);
                    tracing::warn!(error = %e, retry_in = ?delay, "mesh identity: first certificate not obtained yet");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        let identity = WorkloadIdentity::new(first.chain, first.key, first.bundle)?;
        tracing::info!(spiffe_id = %identity.spiffe_id(), "mesh identity obtained");
        let renew = tokio::spawn(renew_loop(
            rpc.clone(),
            identity.clone(),
            first.received,
            first.not_after,
        ));
        let bundle = tokio::spawn(follow_bundle(rpc, identity.clone()));
        Ok(IdentityClient {
            identity,
            tasks: vec![renew, bundle],
        })
    }

    pub fn identity(&self) -> Arc<WorkloadIdentity> {
        self.identity.clone()
    }
}

impl Rpc {
    fn new(settings: IdentitySettings) -> Result<Rpc, IdentityClientError> {
        if !settings.control.starts_with("https://") {
            return Err(IdentityClientError::NotHttps(settings.control));
        }
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&settings.ca_pem));
        let channel = Endpoint::from_shared(settings.control.clone())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        let authorization = format!("Bearer {}", settings.token)
            .parse()
            .map_err(|_| IdentityClientError::Token)?;
        Ok(Rpc {
            client: IdentityRpc::new(channel),
            authorization,
            settings: Arc::new(settings),
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// A new key, its CSR, and the control plane's signature.
    async fn sign(&self) -> Result<Signed, IdentityClientError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr_pem = params.serialize_request(&key)?.pem()?;
        let s = &self.settings;
        let message = SignRequest {
            csr_pem,
            requested_ttl_seconds: s
                .ttl
                .map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX)),
            service: s.service.clone(),
            namespace: s.namespace.clone(),
        };
        let mut client = self.client.clone();
        let call = client.sign(self.request(message));
        // A control plane that accepted the call but never answers must not
        // stall renewals forever.
        let answer = tokio::time::timeout(SIGN_TIMEOUT, call)
            .await
            .map_err(|_| IdentityClientError::Answer("no answer in time".into()))?
            .map_err(|status| match status.code() {
                // Retrying cannot help: wrong token or claim, or no mesh CA there.
                Code::PermissionDenied
                | Code::Unauthenticated
                | Code::InvalidArgument
                | Code::Unimplemented => IdentityClientError::Refused(status.message().to_owned()),
                _ => {
                    IdentityClientError::Answer(format!("{}: {}", status.code(), status.message()))
                }
            })?
            .into_inner();
        let chain = parse_certs(&answer.cert_chain_pem)?;
        let bundle = parse_certs(&answer.trust_bundle_pem)?;
        let not_after =
            UNIX_EPOCH + Duration::from_secs(u64::try_from(answer.not_after_unix).unwrap_or(0));
        Ok(Signed {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            bundle,
            received: SystemTime::now(),
            not_after,
        })
    }
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, IdentityClientError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityClientError::Answer(e.to_string()))?;
    if certs.is_empty() {
        return Err(IdentityClientError::Answer("no certificate".into()));
    }
    Ok(certs)
}

/// Half of the time between receiving a certificate and its expiry.
fn half_life(received: SystemTime, not_after: SystemTime) -> Duration {
    not_after.duration_since(received).unwrap_or_default() / 2
}

/// Not renewing more often than this, whatever the lifetime (second-granular
/// expiry times could make a tiny TTL's half-life zero).
const MIN_RENEWAL: Duration = Duration::from_millis(500);

/// Renews at half-life, forever; failures are retried with backoff.
async fn renew_loop(
    rpc: Rpc,
    identity: Arc<WorkloadIdentity>,
    mut received: SystemTime,
    mut not_after: SystemTime,
) {
    let mut failures = 0u32;
    let mut wait = half_life(received, not_after).max(MIN_RENEWAL);
    loop {
        tokio::time::sleep(wait).await;
        let result = match rpc.sign().await {
            Ok(signed) => identity
                .rotate(signed.chain, signed.key)
                .map(|()| (signed.received, signed.not_after))
                .map_err(IdentityClientError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok((r, n)) => {
                (received, not_after) = (r, n);
                failures = 0;
                wait = half_life(received, not_after).max(MIN_RENEWAL);
                tracing::debug!(spiffe_id = %identity.spiffe_id(), next_renewal = ?wait, "mesh certificate renewed");
            }
            Err(e) => {
                wait = jittered(rpc.settings.backoff, &mut failures);
                match not_after.duration_since(SystemTime::now()) {
                    Ok(left) => {
                        tracing::warn!(error = %e, expires_in = ?left, retry_in = ?wait, "mesh certificate renewal failed")
                    }
                    Err(_) => {
                        tracing::error!(error = %e, retry_in = ?wait, "mesh certificate renewal failed and the certificate has EXPIRED: mTLS handshakes fail until renewal succeeds")
                    }
                }
            }
        }
    }
}

/// Follows the trust bundle stream, reconnecting after failures.
async fn follow_bundle(rpc: Rpc, identity: Arc<WorkloadIdentity>) {
    let mut failures = 0u32;
    let mut installed = String::new();
    loop {
        match rpc.client.clone().trust_bundle(rpc.request(Empty {})).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(bundle)) => {
                            failures = 0;
                            if bundle.pem == installed {
                                continue;
                            }
                            let applied = parse_certs(&bundle.pem).and_then(|certs| {
                                identity.set_trust_bundle(certs).map_err(Into::into)
                            });
                            match applied {
                                Ok(()) => {
                                    tracing::info!(
                                        version = bundle.version,
                                        "mesh trust bundle installed"
                                    );
                                    installed = bundle.pem;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "mesh trust bundle refused; keeping the current one")
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(error = %status, "mesh trust bundle stream failed");
                            break;
                        }
                    }
                }
            }
            Err(status) => tracing::warn!(error = %status, "mesh trust bundle stream not opened"),
        }
        tokio::time::sleep(jittered(rpc.settings.backoff, &mut failures)).await;
    }
}

/// Full jitter: uniform in `[0, min(cap, initial * 2^failures)]`.
fn jittered(bounds: Backoff, failures: &mut u32) -> Duration {
    let factor = 1u32.checked_shl((*failures).min(31)).unwrap_or(u32::MAX);
    let ceiling = bounds
        .initial
        .checked_mul(factor)
        .map_or(bounds.cap, |d| d.min(bounds.cap));
    *failures = failures.saturating_add(1);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let bounds = Backoff {
            initial: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let mut failures = 0;
        for n in 0..40 {
            let d = jittered(bounds, &mut failures);
            let ceiling = Duration::from_millis(100 * (1u64 << n.min(20))).min(bounds.cap);
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn half_life_is_half() {
        let now = SystemTime::now();
        assert_eq!(
            half_life(now, now + Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        assert_eq!(half_life(now, now - Duration::from_secs(1)), Duration::ZERO);
    }
}
