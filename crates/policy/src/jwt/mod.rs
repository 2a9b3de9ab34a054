//! The `Jwt` policy: bearer-token validation with keys written in the config or
//! fetched from a JWKS URL. A token is accepted when its `alg` is one the policy
//! lists, a key of that algorithm's family (matched by `kid`) verifies its
//! signature, and its claims pass (`exp`/`nbf` with clock skew, `iss`, `aud`,
//! required claims). The caller then becomes the consumer named by a claim, and the
//! upstream is told who it is.
//!
//! Fast path: a token verified before is found in the cache by its SHA-256 and only
//! its times are checked again. Slow path: signature and claims. I/O happens only
//! when a token names a `kid` no key has and the JWKS may be fetched again: the
//! request is deferred (`Flow::Defer`) and the fetch awaited, never blocking.

mod cache;
mod claims;
mod jwks;
mod keys;
mod token;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::HeaderValue;
use http::header::WWW_AUTHENTICATE;
use jsonwebtoken::{Algorithm, Validation};
use meshgate_config as config;
use meshgate_core::filter::{Filter, Flow, FlowFuture, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;
use serde_json::Value;

use crate::identity::IdentityHeaders;
use cache::TokenCache;
use claims::{ClaimRules, Verified};
use jwks::{Jwks, Refreshed};
use keys::VerifyKey;
use token::TokenSource;

/// Compiles the policy. Never fetches: a JWKS URL is fetched in the background, so
/// an issuer that is down does not stop the gateway (tokens are refused until keys
/// arrive).
pub fn compile(c: &config::JwtPolicy, _env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
    let jwt = Jwt::compile(c)?;
    jwt.schedule_refresh();
    Ok(Arc::new(jwt))
}

#[derive(Debug)]
pub struct Jwt {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tokens: TokenSource,
    /// Accepted algorithms, each with its signature-only validation (claims are
    /// checked by `ClaimRules`, with messages for `explain`).
    algorithms: Vec<(Algorithm, Validation)>,
    inline: Vec<VerifyKey>,
    jwks: Option<Jwks>,
    rules: ClaimRules,
    identity: IdentityHeaders,
    forward_token: bool,
    cache: Option<TokenCache>,
}

/// Why a token is not accepted (yet).
enum Failure {
    /// Refused, with the reason.
    Invalid(String),
    /// No key fits the token's `kid`; a JWKS fetch might bring one.
    NeedKeys(String),
}

/// Whether the JWKS was just fetched for this request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    First,
    AfterRefresh,
}

impl Jwt {
    pub fn compile(c: &config::JwtPolicy) -> Result<Self, String> {
        if c.algorithms.is_empty() {
            return Err("algorithms: list the accepted algorithms".into());
        }
        if c.algorithms.iter().any(|a| a.is_hmac()) && c.algorithms.iter().any(|a| !a.is_hmac()) {
            return Err("algorithms: HMAC cannot be mixed with public-key algorithms".into());
        }
        let algorithms = c
            .algorithms
            .iter()
            .map(|a| {
                let alg = keys::algorithm(*a);
                let mut v = Validation::new(alg);
                v.required_spec_claims.clear();
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                (alg, v)
            })
            .collect();
        let jwks = c.jwks_url.as_deref().map(|u| Jwks::new(u, c)).transpose()?;
        let inline = keys::inline(c)?;
        if inline.is_empty() && jwks.is_none() {
            return Err("set keys, jwks or jwksUrl".into());
        }
        Ok(Jwt {
            inner: Arc::new(Inner {
                tokens: TokenSource::compile(&c.token_from)?,
                algorithms,
                inline,
                jwks,
                rules: ClaimRules::compile(c)?,
                identity: IdentityHeaders::compile(&c.consumer_header, &c.groups_header)?,
                forward_token: c.forward_token,
                cache: TokenCache::new(c.cache_size),
            }),
        })
    }

    /// Starts a background JWKS refresh when one is due and none is running (needs
    /// a tokio runtime; without one, the next request that needs keys fetches).
    fn schedule_refresh(&self) {
        let Some(jwks) = &self.inner.jwks else { return };
        if !jwks.due() || jwks.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            jwks.background.store(false, Ordering::Release);
            return;
        };
        let inner = self.inner.clone();
        rt.spawn(async move {
            inner.refresh().await;
            if let Some(j) = &inner.jwks {
                j.background.store(false, Ordering::Release);
            }
        });
    }

    /// The whole decision; `Defer` only at `Stage::First`.
    fn decide(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>, stage: Stage) -> Flow {
        let inner = &*self.inner;
        // Whatever happens next, the client's own copies of these never go upstream.
        inner.identity.strip(&mut req.headers);
        for (_, h) in &inner.rules.claim_headers {
            req.headers.remove(h);
        }
        let Some((token, at)) = inner.tokens.find(req) else {
            cx.note(|| format!("no token ({})", inner.tokens.describe()));
            cx.response_headers
                .push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            return Flow::Reject(ProxyError::MissingCredentials);
        };
        let now = jsonwebtoken::get_current_timestamp();
        let key = cache::digest(token);
        let cached = inner.cache.as_ref().and_then(|c| c.get(&key));
        let outcome = match cached {
            Some(v) => match inner.rules.check_times(v.exp, v.nbf, now) {
                Ok(()) => Ok((v, Cow::Borrowed("verified earlier"))),
                Err(why) => {
                    if let Some(c) = &inner.cache {
                        c.remove(&key);
                    }
                    Err(why)
                }
            },
            None => match inner.verify(token, now) {
                Ok((v, how)) => {
                    let v = Arc::new(v);
                    if let Some(c) = &inner.cache {
                        c.insert(key, v.clone(), now, inner.rules.skew);
                    }
                    Ok((v, Cow::Owned(how)))
                }
                Err(Failure::NeedKeys(_)) if stage == Stage::First && inner.may_fetch() => {
                    return Flow::Defer;
                }
                Err(Failure::NeedKeys(why)) => Err(match (&inner.jwks, stage) {
                    (Some(j), Stage::AfterRefresh) if !j.failing() => {
                        format!("{why} (JWKS refreshed, still unknown)")
                    }
                    (Some(j), _) => format!("{why} ({})", j.status()),
                    (None, _) => why,
                }),
                Err(Failure::Invalid(why)) => Err(why),
            },
        };
        match outcome {
            Ok((v, how)) => {
                if !inner.forward_token {
                    inner.tokens.remove(req, at);
                }
                inner.grant(&v, req, cx, &how);
                Flow::Continue
            }
            Err(why) => {
                cx.response_headers
                    .push((WWW_AUTHENTICATE, challenge(&why)));
                cx.note(|| why);
                Flow::Reject(ProxyError::InvalidCredentials)
            }
        }
    }
}

impl Inner {
    /// Whether a JWKS fetch could still bring the missing key.
    fn may_fetch(&self) -> bool {
        self.jwks.as_ref().is_some_and(Jwks::may_fetch)
    }

    /// Fetches the JWKS (rate-limited, shared); a changed key set empties the cache
    /// so tokens of a withdrawn key are verified again (and refused).
    async fn refresh(&self) -> Refreshed {
        let Some(jwks) = &self.jwks else {
            return Refreshed::Skipped;
        };
        let r = jwks.refresh().await;
        if r == (Refreshed::Fetched { changed: true })
            && let Some(c) = &self.cache
        {
            c.clear();
        }
        r
    }

    /// Signature and claims of a token not seen before.
    fn verify(&self, token: &str, now: u64) -> Result<(Verified, String), Failure> {
        let (alg_name, kid) = header(token).map_err(Failure::Invalid)?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(Failure::Invalid("alg none is never accepted".into()));
        }
        let accepted = || {
            let names: Vec<String> = self
                .algorithms
                .iter()
                .map(|(a, _)| format!("{a:?}"))
                .collect();
            names.join(", ")
        };
        let Some((alg, validation)) = alg_name
            .parse::<Algorithm>()
            .ok()
            .and_then(|alg| self.algorithms.iter().find(|(a, _)| *a == alg))
        else {
            return Err(Failure::Invalid(format!(
                "alg {alg_name} not accepted (accepted: {})",
                accepted()
            )));
        };
        let jwks_keys = self.jwks.as_ref().map(|j| j.keys());
        let all = || {
            self.inline
                .iter()
                .chain(jwks_keys.iter().flat_map(|k| k.iter()))
        };
        let named: Vec<&VerifyKey> = match &kid {
            Some(kid) => all().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&VerifyKey> = if named.is_empty() {
            all()
                .filter(|k| k.kid.is_none() || kid.is_none())
                .filter(|k| k.fits(*alg))
                .collect()
        } else {
            named.iter().copied().filter(|k| k.fits(*alg)).collect()
        };
        let kid_text = kid
            .as_deref()
            .map_or_else(|| "no kid".to_owned(), |k| format!("kid {k}"));
        if candidates.is_empty() {
            return Err(match (&kid, named.first()) {
                (Some(_), Some(k)) => Failure::Invalid(format!(
                    "{kid_text} is not a key for {alg:?} ({} key{})",
                    family_name(k.family),
                    k.alg.map(|a| format!(" for {a:?}")).unwrap_or_default()
                )),
                (Some(_), None) => Failure::NeedKeys(format!("unknown {kid_text}")),
                (None, _) => Failure::NeedKeys(format!("no key for {alg:?} (token has no kid)")),
            });
        }
        let mut last_error = None;
        for k in &candidates {
            match jsonwebtoken::decode::<Value>(token, &k.key, validation) {
                Ok(data) => {
                    let v = self
                        .rules
                        .check(data.claims, now)
                        .map_err(Failure::Invalid)?;
                    return Ok((v, format!("{alg:?}, {kid_text}")));
                }
                Err(e) => last_error = Some(e),
            }
        }
        let why = match last_error.as_ref().map(|e| e.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::InvalidSignature) | None => {
                format!("bad signature ({alg:?}, {kid_text})")
            }
            Some(other) => format!("token not verifiable ({kid_text}): {other:?}"),
        };
        Err(Failure::Invalid(why))
    }

    /// Sets the consumer and tells the upstream.
    fn grant(
        &self,
        v: &Verified,
        req: &mut http::request::Parts,
        cx: &mut RequestCx<'_>,
        how: &str,
    ) {
        let h = &mut req.headers;
        if let Some(n) = &v.name_value {
            h.insert(self.identity.consumer.clone(), n.clone());
        }
        if let Some(g) = &v.groups_value {
            h.insert(self.identity.groups.clone(), g.clone());
        }
        for (name, value) in &v.claim_headers {
            h.insert(name.clone(), value.clone());
        }
        cx.note(|| format!("consumer {} ({how})", v.consumer.name));
        cx.consumer = Some(v.consumer.clone());
    }
}

fn family_name(f: jsonwebtoken::AlgorithmFamily) -> &'static str {
    use jsonwebtoken::AlgorithmFamily as F;
    match f {
        F::Hmac => "HMAC",
        F::Rsa => "RSA",
        F::Ec => "EC",
        F::Ed => "Ed25519",
    }
}

/// The `alg` and `kid` of a token's header, read before any key is chosen.
fn header(token: &str) -> Result<(String, Option<String>), String> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token (expected three dot-separated parts)".into());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| "malformed token header (not base64url)".to_owned())?;
    #[derive(serde::Deserialize)]
    struct Head {
        alg: String,
        kid: Option<String>,
    }
    let h: Head = serde_json::from_slice(&bytes)
        .map_err(|_| "malformed token header (no alg, or not JSON)".to_owned())?;
    Ok((h.alg, h.kid))
}

/// `Bearer error="invalid_token", error_description="…"` (RFC 6750 §3): the
/// description limited to the characters the RFC allows.
fn challenge(why: &str) -> HeaderValue {
    let description: String = why
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    HeaderValue::from_str(&format!(
        "Bearer error=\"invalid_token\", error_description=\"{description}\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""))
}

impl Filter for Jwt {
    fn name(&self) -> &'static str {
        "Jwt"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        self.schedule_refresh();
        self.decide(req, cx, Stage::First)
    }

    fn on_request_async<'a>(
        &'a self,
        req: &'a mut http::request::Parts,
        cx: &'a mut RequestCx<'_>,
    ) -> FlowFuture<'a> {
        Box::pin(async move {
            self.inner.refresh().await;
            self.decide(req, cx, Stage::AfterRefresh)
        })
    }
}
