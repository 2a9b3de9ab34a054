//! Telling the upstream who called, without letting clients forge it: every
//! authentication policy first removes the client's own copies of its identity
//! headers, then (on success) sets them from the authenticated consumer.

use http::{HeaderMap, HeaderName, HeaderValue};
use meshgate_core::filter::Consumer;

/// The headers an authentication policy sets upstream.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub consumer: HeaderName,
    pub groups: HeaderName,
}

impl IdentityHeaders {
    pub fn compile(consumer: &str, groups: &str) -> Result<Self, String> {
        Ok(IdentityHeaders {
            consumer: header_name(consumer)?,
            groups: header_name(groups)?,
        })
    }

    /// Removes whatever the client sent under these names.
    pub fn strip(&self, headers: &mut HeaderMap) {
        headers.remove(&self.consumer);
        headers.remove(&self.groups);
    }

    /// Sets both headers from precomputed values.
    pub fn set_values(&self, headers: &mut HeaderMap, name: &HeaderValue, groups: &HeaderValue) {
        headers.insert(self.consumer.clone(), name.clone());
        headers.insert(self.groups.clone(), groups.clone());
    }

    /// Sets both headers from `consumer` (names or groups that are not valid header
    /// values are left out rather than sent mangled).
    pub fn set(&self, headers: &mut HeaderMap, consumer: &Consumer) {
        if let Ok(v) = HeaderValue::from_str(&consumer.name) {
            headers.insert(self.consumer.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(&consumer.groups.join(",")) {
            headers.insert(self.groups.clone(), v);
        }
    }
}

/// A header name from config (validated already; re-checked, never panicking).
pub fn header_name(n: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header {n:?}: {e}"))
}
