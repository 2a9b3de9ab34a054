//! A test token issuer: keys generated in-process (HMAC secrets, RSA 2048, EC P-256/P-384,
//! Ed25519), each with a `kid`; tokens signed with arbitrary JSON claims; the public keys
//! rendered as a JWKS document (RFC 7517); and [`JwksServer`], a real HTTP server on
//! `127.0.0.1:0` that serves that JWKS, can swap its key set at runtime (rotation), can
//! fail on demand, and counts the fetches it served.
//!
//! ```no_run
//! # async fn demo() {
//! use meshgate_testkit::jwt::{Algorithm, JwksServer, TestKey, now};
//! let key = TestKey::generate(Algorithm::RS256, "k1");
//! let token = key.sign(&serde_json::json!({"sub": "alice", "exp": now() + 300}));
//! let jwks = JwksServer::start(&[&key]).await;
//! // configure the gateway with jwks.url(), send `Authorization: Bearer {token}`
//! # let _ = (token, jwks);
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
pub use jsonwebtoken::{Algorithm, Header};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Seconds since the Unix epoch (what `exp`, `nbf` and `iat` hold).
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A signing key with its `kid` and algorithm. Cheap to clone.
#[derive(Clone)]
pub struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    /// The HMAC secret, for HS* keys.
    secret: Option<Vec<u8>>,
    /// SubjectPublicKeyInfo DER, for public-key algorithms.
    spki: Option<Vec<u8>>,
}

impl TestKey {
    /// Generates a fresh key for `alg`: a random secret (32/48/64 bytes) for HS256/384/512,
    /// RSA 2048 for RS*/PS*, P-256 for ES256, P-384 for ES384, Ed25519 for EdDSA.
    pub fn generate(alg: Algorithm, kid: &str) -> TestKey {
        use Algorithm::*;
        let (encoding, secret, spki) = match alg {
            HS256 | HS384 | HS512 => {
                let len = match alg {
                    HS256 => 32,
                    HS384 => 48,
                    _ => 64,
                };
                let mut secret = vec![0u8; len];
                aws_lc_rs::rand::fill(&mut secret).expect("random secret");
                (EncodingKey::from_secret(&secret), Some(secret), None)
            }
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                let pair = lc::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("generate RSA key");
                let pkcs8 =
                    AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("RSA PKCS#8");
                // jsonwebtoken signs RSA with PKCS#1 DER; its PEM reader unwraps PKCS#8.
                let pem = pem("PRIVATE KEY", pkcs8.as_ref());
                let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA key");
                let spki =
                    AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
                        .expect("RSA SPKI");
                (encoding, None, Some(spki.as_ref().to_vec()))
            }
            ES256 | ES384 => {
                let curve = if alg == ES256 {
                    &lc::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &lc::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pair = lc::EcdsaKeyPair::generate(curve).expect("generate EC key");
                let pkcs8 = pair.to_pkcs8v1().expect("EC PKCS#8");
                let spki =
                    AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
                        .expect("EC SPKI");
                let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
                (encoding, None, Some(spki.as_ref().to_vec()))
            }
            _ => {
                assert_eq!(alg, EdDSA, "TestKey::generate: unsupported {alg:?}");
                let pair = lc::Ed25519KeyPair::generate().expect("generate Ed25519 key");
                let pkcs8 = pair.to_pkcs8v1().expect("Ed25519 PKCS#8");
                let spki =
                    AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
                        .expect("Ed25519 SPKI");
                let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
                (encoding, None, Some(spki.as_ref().to_vec()))
            }
        };
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            secret,
            spki,
        }
    }

    /// An HMAC key with a known secret (e.g. one also put in an environment variable).
    /// `alg` must be HS256, HS384 or HS512.
    pub fn hmac(alg: Algorithm, kid: &str, secret: &[u8]) -> TestKey {
        assert!(
            matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512),
            "TestKey::hmac needs an HS* algorithm, got {alg:?}"
        );
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_secret(secret),
            secret: Some(secret.to_vec()),
            spki: None,
        }
    }

    /// The key id put in the `kid` header of the tokens and in the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The raw HMAC secret (HS* keys only).
    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }

    /// The public key as a `-----BEGIN PUBLIC KEY-----` (SPKI) PEM (not for HS* keys).
    pub fn public_pem(&self) -> Option<String> {
        self.spki.as_deref().map(|der| pem("PUBLIC KEY", der))
    }

    /// A jsonwebtoken key that verifies this key's tokens (handy in unit tests).
    pub fn decoding_key(&self) -> DecodingKey {
        match (&self.secret, &self.spki) {
            (Some(secret), _) => DecodingKey::from_secret(secret),
            (None, _) => DecodingKey::from_jwk(&self.typed_jwk()).expect("decoding key from JWK"),
        }
    }

    /// Signs `claims` with header `{"alg", "typ": "JWT", "kid"}`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    /// Signs `claims` under an arbitrary header (another or no `kid`, extra fields). The
    /// header's `alg` must be in this key's family, else this panics.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign token")
    }

    /// This key as a JWK JSON object: `kty`, `kid`, `alg`, `use: "sig"` and `n`/`e` (RSA),
    /// `crv`/`x`/`y` (EC), `crv`/`x` (OKP) or `k` (oct, HS* keys: a secret, never publish).
    pub fn jwk(&self) -> Value {
        serde_json::to_value(self.typed_jwk()).expect("JWK to JSON")
    }

    fn typed_jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).expect("JWK from key");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({:?}, kid {})", self.alg, self.kid)
    }
}

/// A JWKS document `{"keys": [...]}` holding these keys' JWKs.
pub fn jwks(keys: &[&TestKey]) -> Value {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// An unsigned token (`alg: none`, empty signature): what a verifier must refuse.
pub fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What the server answers; swapped whole at runtime.
struct Served {
    /// Path → JSON document.
    documents: Vec<(String, Value)>,
    /// Answer 503 to everything while set.
    failing: bool,
}

/// A real JWKS endpoint on `127.0.0.1`. Dropping it stops it.
pub struct JwksServer {
    /// Where it listens.
    pub addr: SocketAddr,
    path: String,
    served: Arc<Mutex<Served>>,
    fetches: watch::Sender<usize>,
    stop: watch::Sender<bool>,
}

impl JwksServer {
    /// The path the JWKS is served at by [`JwksServer::start`].
    pub const PATH: &'static str = "/.well-known/jwks.json";

    /// Serves `jwks(keys)` at [`JwksServer::PATH`] on `127.0.0.1:0`.
    pub async fn start(keys: &[&TestKey]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, Self::PATH, jwks(keys))
    }

    /// Serves `jwks(keys)` at `path` on a given address (e.g. a port chosen earlier with
    /// [`crate::free_port`], to bring an endpoint up after the gateway started).
    pub async fn start_on(
        addr: SocketAddr,
        path: &str,
        keys: &[&TestKey],
    ) -> std::io::Result<JwksServer> {
        Ok(Self::serve(
            TcpListener::bind(addr).await?,
            path,
            jwks(keys),
        ))
    }

    fn serve(listener: TcpListener, path: &str, document: Value) -> JwksServer {
        let addr = listener.local_addr().expect("bound address");
        let served = Arc::new(Mutex::new(Served {
            documents: vec![(path.to_owned(), document)],
            failing: false,
        }));
        let (fetches, _) = watch::channel(0usize);
        let (stop, mut stopped) = watch::channel(false);
        let (served2, fetches2) = (served.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = stopped.changed() => break,
                };
                let (served, fetches) = (served2.clone(), fetches2.clone());
                let mut stop_conn = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let answer = answer(&served, &fetches, &req);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop_conn.changed() => {}
                    }
                });
            }
        });
        JwksServer {
            addr,
            path: path.to_owned(),
            served,
            fetches,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT/PATH` of the JWKS.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// Replaces the key set (rotation): later fetches see only `keys`.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.set_document(&self.path.clone(), jwks(keys));
    }

    /// Serves any JSON document at `path` (replacing what was there): a malformed JWKS,
    /// or e.g. an OpenID discovery document next to the JWKS.
    pub fn set_document(&self, path: &str, document: Value) {
        let mut served = self.served.lock().expect("served lock");
        served.documents.retain(|(p, _)| p != path);
        served.documents.push((path.to_owned(), document));
    }

    /// While `true`, every request gets 503 (an endpoint that is up but broken).
    pub fn set_failing(&self, failing: bool) {
        self.served.lock().expect("served lock").failing = failing;
    }

    /// Requests answered with 200 at the JWKS path so far.
    pub fn fetches(&self) -> usize {
        *self.fetches.borrow()
    }

    /// Waits until at least `n` fetches were served; `false` if `within` passed first.
    pub async fn wait_fetches(&self, n: usize, within: Duration) -> bool {
        let mut rx = self.fetches.subscribe();
        tokio::time::timeout(within, rx.wait_for(|&f| f >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops accepting and closes open connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(
    served: &Mutex<Served>,
    fetches: &watch::Sender<usize>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, body) = {
        let served = served.lock().expect("served lock");
        let doc = served.documents.iter().find(|(p, _)| p == req.uri().path());
        match doc {
            _ if served.failing => (StatusCode::SERVICE_UNAVAILABLE, "{}".to_owned()),
            Some((path, doc)) => {
                // Only the first document is the JWKS; count fetches of it alone.
                if served.documents.first().is_some_and(|(p, _)| p == path) {
                    fetches.send_modify(|f| *f += 1);
                }
                (StatusCode::OK, doc.to_string())
            }
            None => (StatusCode::NOT_FOUND, "{}".to_owned()),
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Validation, decode, decode_header};

    fn verify_via_jwks(key: &TestKey) {
        let token = key.sign(&serde_json::json!({"sub": "alice", "exp": now() + 60}));
        let set: JwkSet = serde_json::from_value(jwks(&[key])).expect("JWKS parses");
        let kid = decode_header(&token).expect("header").kid.expect("kid");
        let jwk = set.find(&kid).expect("kid in JWKS");
        let decoding = DecodingKey::from_jwk(jwk).expect("key from JWK");
        let data = decode::<Value>(&token, &decoding, &Validation::new(key.alg()))
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(data.claims["sub"], "alice");
        // The PEM route verifies too, and another key of the same kind does not.
        let other = TestKey::generate(key.alg(), "other");
        let wrong = decode::<Value>(&token, &other.decoding_key(), &Validation::new(key.alg()));
        assert!(wrong.is_err(), "{key:?} verified with another key");
    }

    #[test]
    fn every_family_verifies_against_its_jwks() {
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            verify_via_jwks(&TestKey::generate(alg, "k1"));
        }
    }

    #[test]
    fn jwk_fields_follow_rfc7517() {
        let rsa = TestKey::generate(Algorithm::RS256, "r").jwk();
        assert_eq!(
            (&rsa["kty"], &rsa["kid"], &rsa["alg"], &rsa["use"]),
            (&"RSA".into(), &"r".into(), &"RS256".into(), &"sig".into())
        );
        assert!(rsa["n"].is_string() && rsa["e"] == "AQAB");
        let ec = TestKey::generate(Algorithm::ES384, "e").jwk();
        assert_eq!((&ec["kty"], &ec["crv"]), (&"EC".into(), &"P-384".into()));
        assert!(ec["x"].is_string() && ec["y"].is_string());
        let ed = TestKey::generate(Algorithm::EdDSA, "o").jwk();
        assert_eq!((&ed["kty"], &ed["crv"]), (&"OKP".into(), &"Ed25519".into()));
        let pem = TestKey::generate(Algorithm::ES256, "p")
            .public_pem()
            .expect("pem");
        assert!(DecodingKey::from_ec_pem(pem.as_bytes()).is_ok());
    }

    #[tokio::test]
    async fn server_serves_rotates_and_counts() {
        let k1 = TestKey::generate(Algorithm::ES256, "k1");
        let k2 = TestKey::generate(Algorithm::ES256, "k2");
        let server = JwksServer::start(&[&k1]).await;
        let get = |url: String| async move {
            let stream = tokio::net::TcpStream::connect(server_addr(&url))
                .await
                .expect("connect");
            let (mut send, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            let resp = send
                .send_request(Request::get(url).body(Full::default()).expect("request"))
                .await
                .expect("response");
            let status = resp.status();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        };
        let (status, doc) = get(server.url()).await;
        assert_eq!(status, 200);
        assert_eq!(doc["keys"][0]["kid"], "k1");
        server.set_keys(&[&k2]);
        let (_, doc) = get(server.url()).await;
        assert_eq!(doc["keys"][0]["kid"], "k2");
        assert!(server.wait_fetches(2, Duration::from_secs(5)).await);
        server.set_failing(true);
        assert_eq!(get(server.url()).await.0, 503);
        assert_eq!(server.fetches(), 2);
    }

    fn server_addr(url: &str) -> String {
        url.trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}
