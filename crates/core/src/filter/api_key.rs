//! The `ApiKey` policy: finds the key (header, then query parameter), looks up its
//! SHA-256 among the consumers' stored hashes, and tells the upstream who called.
//! The lookup is by hash, so timing can reveal at most something about the hash of
//! a guess, never about a stored key (no per-byte comparison of secrets).

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use meshgate_config as config;

use super::{Filter, Flow, RequestCx};
use crate::credentials::{key_digest, parse_hash};
use crate::rescue::ProxyError;

/// An authenticated caller.
#[derive(Debug)]
pub struct Consumer {
    pub name: Arc<str>,
    /// Comma-separated, ready to send upstream.
    pub groups: HeaderValue,
    pub name_header: HeaderValue,
}

/// Every consumer's keys, by digest; built once per snapshot.
pub type KeyIndex = Arc<HashMap<[u8; 32], Arc<Consumer>>>;

pub fn index(consumers: &[config::Consumer]) -> Result<KeyIndex, String> {
    let mut keys = HashMap::new();
    for c in consumers {
        let consumer = Arc::new(Consumer {
            name: c.name.as_str().into(),
            groups: HeaderValue::from_str(&c.groups.join(","))
                .map_err(|e| format!("consumer {:?} groups: {e}", c.name))?,
            name_header: HeaderValue::from_str(&c.name)
                .map_err(|e| format!("consumer {:?}: {e}", c.name))?,
        });
        for stored in &c.api_keys {
            let digest = parse_hash(stored)
                .ok_or_else(|| format!("consumer {:?}: bad key hash {stored:?}", c.name))?;
            keys.insert(digest, consumer.clone());
        }
    }
    Ok(Arc::new(keys))
}

#[derive(Debug)]
pub struct ApiKey {
    header: HeaderName,
    query_param: Option<String>,
    consumer_header: HeaderName,
    groups_header: HeaderName,
    strip: bool,
    keys: KeyIndex,
}

impl ApiKey {
    pub fn compile(c: &config::ApiKeyPolicy, keys: KeyIndex) -> Result<Self, String> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header {n:?}: {e}"))
        };
        Ok(ApiKey {
            header: name(&c.header)?,
            query_param: c.query_param.clone(),
            consumer_header: name(&c.consumer_header)?,
            groups_header: name(&c.groups_header)?,
            strip: c.strip_credential,
            keys,
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
        super::set_path_and_query(req, pq);
    }
}

impl Filter for ApiKey {
    fn name(&self) -> &'static str {
        "ApiKey"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        // Whatever happens next, the client's own copies of these never go upstream.
        req.headers.remove(&self.consumer_header);
        req.headers.remove(&self.groups_header);
        let Some((key, from_query)) = self.presented(req) else {
            return Flow::Reject(ProxyError::MissingCredentials);
        };
        let Some(consumer) = self.keys.get(&key_digest(&key)) else {
            return Flow::Reject(ProxyError::InvalidCredentials);
        };
        if self.strip {
            if from_query {
                self.strip_query_param(req);
            } else {
                req.headers.remove(&self.header);
            }
        }
        req.headers
            .insert(self.consumer_header.clone(), consumer.name_header.clone());
        req.headers
            .insert(self.groups_header.clone(), consumer.groups.clone());
        cx.consumer = Some(consumer.clone());
        Flow::Continue
    }
}
