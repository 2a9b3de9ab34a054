//! The `ApiKey` policy: finds the key (header, then query parameter), looks up its
//! SHA-256 among the consumers' stored hashes, and tells the upstream who called.
//! The lookup is by hash, so timing can reveal at most something about the hash of
//! a guess, never about a stored key (no per-byte comparison of secrets).

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use meshgate_config as config;
use meshgate_core::filter::{Consumer, Filter, Flow, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;

use crate::credentials::{key_digest, parse_hash};
use crate::identity::{IdentityHeaders, header_name};

/// A consumer with its identity header values computed once.
#[derive(Debug)]
pub struct KnownConsumer {
    pub consumer: Arc<Consumer>,
    pub name_value: HeaderValue,
    /// Comma-separated, ready to send upstream.
    pub groups_value: HeaderValue,
}

impl KnownConsumer {
    pub fn new(c: &config::Consumer) -> Result<Self, String> {
        Ok(KnownConsumer {
            consumer: Arc::new(Consumer {
                name: c.name.as_str().into(),
                groups: c.groups.clone(),
                claims: None,
            }),
            name_value: HeaderValue::from_str(&c.name)
                .map_err(|e| format!("consumer {:?}: {e}", c.name))?,
            groups_value: HeaderValue::from_str(&c.groups.join(","))
                .map_err(|e| format!("consumer {:?} groups: {e}", c.name))?,
        })
    }
}

/// Every consumer's keys, by digest.
pub type KeyIndex = HashMap<[u8; 32], Arc<KnownConsumer>>;

pub fn index(consumers: &[config::Consumer]) -> Result<KeyIndex, String> {
    let mut keys = HashMap::new();
    for c in consumers {
        let known = Arc::new(KnownConsumer::new(c)?);
        for stored in &c.api_keys {
            let digest = parse_hash(stored)
                .ok_or_else(|| format!("consumer {:?}: bad key hash {stored:?}", c.name))?;
            keys.insert(digest, known.clone());
        }
    }
    Ok(keys)
}

#[derive(Debug)]
pub struct ApiKey {
    header: HeaderName,
    query_param: Option<String>,
    identity: IdentityHeaders,
    strip: bool,
    keys: KeyIndex,
}

impl ApiKey {
    pub fn compile(c: &config::ApiKeyPolicy, env: &PolicyEnv<'_>) -> Result<Self, String> {
        Ok(ApiKey {
            header: header_name(&c.header)?,
            query_param: c.query_param.clone(),
            identity: IdentityHeaders::compile(&c.consumer_header, &c.groups_header)?,
            strip: c.strip_credential,
            keys: index(&env.config.consumers)?,
        })
    }

    /// The presented key and whether it came from the query string.
    fn presented(&self, req: &http::request::Parts) -> Option<(Vec<u8>, bool)> {
        if let Some(v) = req.headers.get(&self.header) {
            return Some((v.as_bytes().to_vec(), false));
        }
        let param = self.query_param.as_deref()?;
        let query = req.uri.query()?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == param).then(|| (v.as_bytes().to_vec(), true))
        })
    }

    fn strip_query_param(&self, req: &mut http::request::Parts) {
        let (Some(param), Some(query)) = (self.query_param.as_deref(), req.uri.query()) else {
            return;
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| p.split('=').next() != Some(param))
            .collect();
        let pq = if kept.is_empty() {
            req.uri.path().to_owned()
        } else {
            format!("{}?{}", req.uri.path(), kept.join("&"))
        };
        meshgate_core::filter::set_path_and_query(req, pq);
    }
}

impl Filter for ApiKey {
    fn name(&self) -> &'static str {
        "ApiKey"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        // Whatever happens next, the client's own copies of these never go upstream.
        self.identity.strip(&mut req.headers);
        let Some((key, from_query)) = self.presented(req) else {
            cx.note(|| format!("no {} header or query parameter", self.header));
            return Flow::Reject(ProxyError::MissingCredentials);
        };
        let Some(known) = self.keys.get(&key_digest(&key)) else {
            cx.note(|| "the key matches no consumer".into());
            return Flow::Reject(ProxyError::InvalidCredentials);
        };
        if self.strip {
            if from_query {
                self.strip_query_param(req);
            } else {
                req.headers.remove(&self.header);
            }
        }
        self.identity
            .set_values(&mut req.headers, &known.name_value, &known.groups_value);
        cx.note(|| format!("consumer {}", known.consumer.name));
        cx.consumer = Some(known.consumer.clone());
        Flow::Continue
    }
}
