//! The `BasicAuth` policy: HTTP Basic authentication (RFC 7617) against consumers'
//! argon2 or bcrypt password hashes.
//!
//! Password hashes are slow on purpose, so the request path never computes one on
//! an async worker: a verified `user:password` is remembered (by its SHA-256, see
//! `cache`) and served synchronously; anything else is deferred and verified on
//! tokio's blocking pool, at most a few at a time (each argon2 check takes ~19 MiB).
//! An unknown user name is checked against a real consumer's hash all the same, so
//! the time taken does not tell which user names exist.

mod cache;
mod password;

pub use password::{PasswordError, StoredHash, hash_password, hash_password_input};

use std::collections::HashMap;
use std::sync::Arc;

use base64::DecodeSliceError;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderValue, header};
use meshgate_config as config;
use meshgate_core::filter::{Filter, Flow, FlowFuture, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;
use tokio::sync::Semaphore;

use crate::api_key::KnownConsumer;
use crate::credentials::key_digest;
use crate::identity::IdentityHeaders;

/// Checked when no consumer has Basic credentials, so unknown users still cost one
/// argon2 verification (its password is irrelevant: the result is discarded).
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$dL0/5snqGB9EzSZeyUJ8EA$M++OfCKoYITpFbNFA8ktM3bDHuJv+YgnQ/OH7rrL+FY";

/// Standard base64; padding optional, as some clients leave it out.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A consumer's user name and hash, with its identity values computed once.
#[derive(Debug)]
struct User {
    hash: StoredHash,
    known: Arc<KnownConsumer>,
}

#[derive(Debug)]
pub struct BasicAuth {
    challenge: HeaderValue,
    identity: IdentityHeaders,
    strip: bool,
    users: HashMap<Box<[u8]>, Arc<User>>,
    /// Hashes unknown user names are checked against (the consumers', or `DECOY`).
    decoys: Vec<StoredHash>,
    cache: cache::Verified,
    /// Password checks running at once (memory-hard hashes on a bounded pool).
    slots: Arc<Semaphore>,
}

/// What the `Authorization` header holds.
enum Presented<'b> {
    /// No header, or not the Basic scheme.
    Missing,
    /// Basic, but not base64 of `user:password`.
    Malformed,
    /// The decoded `user:password`.
    Credentials(&'b [u8]),
}

/// Where credentials are decoded: on the stack for usual sizes (no allocation on
/// the fast path), on the heap for long ones.
struct Scratch {
    stack: [u8; 256],
    heap: Vec<u8>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            stack: [0; 256],
            heap: Vec::new(),
        }
    }
}

/// Compiles the policy.
pub fn compile(
    c: &config::BasicAuthPolicy,
    env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(BasicAuth::compile(c, &env.config.consumers)?))
}

impl BasicAuth {
    pub fn compile(
        c: &config::BasicAuthPolicy,
        consumers: &[config::Consumer],
    ) -> Result<Self, String> {
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{}\", charset=\"UTF-8\"", c.realm))
                .map_err(|e| format!("realm {:?}: {e}", c.realm))?;
        let mut users = HashMap::new();
        for consumer in consumers {
            let Some(b) = &consumer.basic_auth else {
                continue;
            };
            let name = b.username.as_deref().unwrap_or(&consumer.name);
            let hash = StoredHash::parse(&b.password_hash)
                .map_err(|e| format!("consumer {:?}: {e}", consumer.name))?;
            let user = Arc::new(User {
                hash,
                known: Arc::new(KnownConsumer::new(consumer)?),
            });
            if users.insert(name.as_bytes().into(), user).is_some() {
                return Err(format!("Basic user name {name:?} is used twice"));
            }
        }
        let mut decoys: Vec<StoredHash> = consumers
            .iter()
            .filter_map(|c| c.basic_auth.as_ref())
            .filter_map(|b| StoredHash::parse(&b.password_hash).ok())
            .collect();
        if decoys.is_empty() {
            decoys.push(StoredHash::parse(DECOY)?);
        }
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        Ok(BasicAuth {
            challenge,
            identity: IdentityHeaders::compile(&c.consumer_header, &c.groups_header)?,
            strip: c.strip_credential,
            users,
            decoys,
            cache: cache::Verified::new(c.cache_ttl.get(), cache::CAPACITY),
            slots: Arc::new(Semaphore::new(parallel)),
        })
    }

    /// Successful checks remembered now (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.cache.entries()
    }

    fn presented<'b>(req: &http::request::Parts, scratch: &'b mut Scratch) -> Presented<'b> {
        let Some(value) = req.headers.get(header::AUTHORIZATION) else {
            return Presented::Missing;
        };
        let value = value.as_bytes();
        let Some((scheme, rest)) = value
            .iter()
            .position(|&b| b == b' ')
            .map(|i| (&value[..i], &value[i + 1..]))
        else {
            return Presented::Missing;
        };
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Presented::Missing;
        }
        let encoded = rest.trim_ascii();
        let decoded: &[u8] = match B64.decode_slice(encoded, &mut scratch.stack) {
            Ok(n) => &scratch.stack[..n],
            Err(DecodeSliceError::OutputSliceTooSmall) => {
                match B64.decode_vec(encoded, &mut scratch.heap) {
                    Ok(()) => &scratch.heap,
                    Err(_) => return Presented::Malformed,
                }
            }
            Err(DecodeSliceError::DecodeError(_)) => return Presented::Malformed,
        };
        if decoded.contains(&b':') {
            Presented::Credentials(decoded)
        } else {
            Presented::Malformed
        }
    }

    /// Refuses with the challenge RFC 9110 requires on every 401.
    fn refuse(&self, cx: &mut RequestCx<'_>, err: ProxyError) -> Flow {
        cx.response_headers
            .push((header::WWW_AUTHENTICATE, self.challenge.clone()));
        Flow::Reject(err)
    }

    fn accept(
        &self,
        req: &mut http::request::Parts,
        cx: &mut RequestCx<'_>,
        known: &Arc<KnownConsumer>,
        cached: bool,
    ) -> Flow {
        if self.strip {
            req.headers.remove(header::AUTHORIZATION);
        }
        self.identity
            .set_values(&mut req.headers, &known.name_value, &known.groups_value);
        cx.note(|| {
            let how = if cached {
                "remembered check"
            } else {
                "password verified"
            };
            format!("consumer {} ({how})", known.consumer.name)
        });
        cx.consumer = Some(known.consumer.clone());
        Flow::Continue
    }
}

/// Splits decoded credentials at the first `:` (a user name cannot contain one).
fn split(decoded: &[u8]) -> (&[u8], &[u8]) {
    match decoded.iter().position(|&b| b == b':') {
        Some(i) => (&decoded[..i], &decoded[i + 1..]),
        None => (decoded, &[]),
    }
}

impl Filter for BasicAuth {
    fn name(&self) -> &'static str {
        "BasicAuth"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        // Whatever happens next, the client's own copies of these never go upstream.
        self.identity.strip(&mut req.headers);
        let mut scratch = Scratch::new();
        match Self::presented(req, &mut scratch) {
            Presented::Missing => {
                cx.note(|| "no Authorization: Basic header".into());
                self.refuse(cx, ProxyError::MissingCredentials)
            }
            Presented::Malformed => {
                cx.note(|| "Authorization: Basic is not base64 of user:password".into());
                self.refuse(cx, ProxyError::InvalidCredentials)
            }
            Presented::Credentials(decoded) => match self.cache.get(&key_digest(decoded)) {
                Some(known) => self.accept(req, cx, &known, true),
                None => Flow::Defer,
            },
        }
    }

    fn on_request_async<'a>(
        &'a self,
        req: &'a mut http::request::Parts,
        cx: &'a mut RequestCx<'_>,
    ) -> FlowFuture<'a> {
        Box::pin(async move {
            let mut scratch = Scratch::new();
            let Presented::Credentials(decoded) = Self::presented(req, &mut scratch) else {
                return self.refuse(cx, ProxyError::InvalidCredentials);
            };
            let key = key_digest(decoded);
            let (user, password) = split(decoded);
            let found = self.users.get(user).cloned();
            let hash = match &found {
                Some(u) => u.hash.clone(),
                None => {
                    // Same work as a wrong password, against a real hash.
                    let pick = usize::from(key_digest(user)[0]) % self.decoys.len();
                    self.decoys[pick].clone()
                }
            };
            let password = password.to_vec();
            // The permit moves into the blocking task: it is held until the hash is
            // done even if this request is abandoned, so the bound is real.
            let verified = match self.slots.clone().acquire_owned().await {
                Ok(permit) => tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    hash.verify(&password)
                })
                .await
                .unwrap_or(false),
                Err(_) => false,
            };
            match found {
                Some(u) if verified => {
                    self.cache.insert(key, u.known.clone());
                    self.accept(req, cx, &u.known, false)
                }
                Some(_) => {
                    cx.note(|| {
                        format!("wrong password for user {}", String::from_utf8_lossy(user))
                    });
                    self.refuse(cx, ProxyError::InvalidCredentials)
                }
                None => {
                    cx.note(|| format!("unknown user {}", String::from_utf8_lossy(user)));
                    self.refuse(cx, ProxyError::InvalidCredentials)
                }
            }
        })
    }
}
