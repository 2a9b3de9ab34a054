//! The etcd key layout under the store's prefix (see the module doc of
//! [`super`]), in one place so every part names keys the same way.

/// Builds and parses the store's keys.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The prefix without a trailing slash ("/meshgate").
    root: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            root: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// `<prefix>/config/current`: the current version, in decimal.
    pub fn current(&self) -> Vec<u8> {
        format!("{}/config/current", self.root).into_bytes()
    }

    /// `<prefix>/config/versions/`: every kept version.
    pub fn versions(&self) -> Vec<u8> {
        format!("{}/config/versions/", self.root).into_bytes()
    }

    /// `<prefix>/config/versions/<20-digit version>`, so key order is version
    /// order.
    pub fn version(&self, version: u64) -> Vec<u8> {
        format!("{}/config/versions/{version:020}", self.root).into_bytes()
    }

    /// `<prefix>/registry/`: every registered instance.
    pub fn registry(&self) -> Vec<u8> {
        format!("{}/registry/", self.root).into_bytes()
    }

    /// `<prefix>/registry/<service>/<instance>`.
    pub fn instance(&self, service: &str, instance: &str) -> Vec<u8> {
        format!("{}/registry/{service}/{instance}", self.root).into_bytes()
    }

    /// The service and instance named by a registry key.
    pub fn parse_instance(&self, key: &[u8]) -> Option<(String, String)> {
        let rest = key.strip_prefix(self.registry().as_slice())?;
        let rest = std::str::from_utf8(rest).ok()?;
        let (service, instance) = rest.split_once('/')?;
        (!service.is_empty() && !instance.is_empty())
            .then(|| (service.to_owned(), instance.to_owned()))
    }

    /// `<prefix>/proxies/`: every proxy record.
    pub fn proxies(&self) -> Vec<u8> {
        format!("{}/proxies/", self.root).into_bytes()
    }

    /// `<prefix>/proxies/<role>/<node id>`.
    pub fn proxy(&self, record_key: &str) -> Vec<u8> {
        format!("{}/proxies/{record_key}", self.root).into_bytes()
    }
}

/// A key for messages.
pub(super) fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_parsing() {
        let keys = Keys::new("/mg/");
        assert_eq!(show(&keys.current()), "/mg/config/current");
        assert_eq!(
            show(&keys.version(7)),
            "/mg/config/versions/00000000000000000007"
        );
        assert!(keys.version(7).starts_with(&keys.versions()));
        let key = keys.instance("orders", "a/1");
        assert_eq!(
            keys.parse_instance(&key),
            Some(("orders".into(), "a/1".into()))
        );
        assert_eq!(keys.parse_instance(b"/mg/registry/orders"), None);
        assert_eq!(keys.parse_instance(b"/other/registry/a/b"), None);
        assert_eq!(show(&keys.proxy("gateway/n1")), "/mg/proxies/gateway/n1");
    }
}
