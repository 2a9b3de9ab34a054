//! Certificate choice by SNI: an exact hostname first, then a wildcard one label up
//! (`x.example.com` → `*.example.com`), then the default certificate if there is
//! one (none when `sniStrict`: the handshake is refused).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate table of one listener. Built once per config or file change;
/// read on every handshake.
#[derive(Debug, Default)]
pub(super) struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Serves `key` for `hostnames` (the first certificate naming a host wins),
    /// and as the default when `is_default`.
    pub(super) fn add(&mut self, hostnames: &[String], key: Arc<CertifiedKey>, is_default: bool) {
        for h in hostnames {
            let h = h.to_ascii_lowercase();
            let (table, name) = match h.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent.to_owned()),
                None => (&mut self.exact, h),
            };
            table.entry(name).or_insert_with(|| key.clone());
        }
        if is_default && self.default.is_none() {
            self.default = Some(key);
        }
    }

    /// The certificate for `server_name` (the SNI, if the client sent one).
    pub(super) fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref()).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = self.choose(hello.server_name());
        if chosen.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this SNI, refusing the handshake");
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::SigningKey;

    #[derive(Debug)]
    struct NoKey;
    impl SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    fn key(tag: u8) -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(vec![vec![tag].into()], Arc::new(NoKey)))
    }

    fn tag(k: Option<Arc<CertifiedKey>>) -> Option<u8> {
        k.map(|k| k.cert[0].as_ref()[0])
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut r = SniResolver::default();
        r.add(&["a.test".into(), "*.a.test".into()], key(1), true);
        r.add(&["b.a.test".into(), "A.test".into()], key(2), false);
        assert_eq!(tag(r.choose(Some("a.test"))), Some(1));
        assert_eq!(
            tag(r.choose(Some("B.A.test"))),
            Some(2),
            "exact beats wildcard"
        );
        assert_eq!(tag(r.choose(Some("c.a.test"))), Some(1), "wildcard");
        assert_eq!(tag(r.choose(Some("d.c.a.test"))), Some(1), "default");
        assert_eq!(tag(r.choose(None)), Some(1), "no SNI: default");

        let mut strict = SniResolver::default();
        strict.add(&["*.a.test".into()], key(3), false);
        assert_eq!(tag(strict.choose(Some("x.a.test"))), Some(3));
        assert_eq!(
            tag(strict.choose(Some("a.test"))),
            None,
            "a wildcard needs a label"
        );
        assert_eq!(
            tag(strict.choose(Some("y.x.a.test"))),
            None,
            "one label only"
        );
        assert_eq!(tag(strict.choose(None)), None);
    }
}
