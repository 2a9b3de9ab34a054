//! Checks of a parsed control-plane config that serde cannot express (pairs of
//! fields, token sources, etcd URLs, value ranges); every problem is reported,
//! located at the item it concerns where the parser recorded a position.

use meshgate_config::ConfigError;

use super::{ControlConfig, ScopeName, StoreConfig};

/// Checks serde cannot express; every problem, located.
pub(super) fn validate(config: &ControlConfig, file: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |at: &serde_saphyr::Location, path: String, message: String| {
        errors.push(ConfigError {
            file: file.to_owned(),
            line: at.line() as usize,
            column: at.column() as usize,
            path,
            message,
        });
    };
    if config.data_dir.as_os_str().is_empty() {
        error(
            &serde_saphyr::Location::UNKNOWN,
            "dataDir".into(),
            "must not be empty".into(),
        );
    }
    let tls = &config.tls;
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        error(
            &serde_saphyr::Location::UNKNOWN,
            "tls".into(),
            "certFile and keyFile go together".into(),
        );
    }
    if tls.cert_file.is_some() && !tls.server_names.is_empty() {
        error(
            &serde_saphyr::Location::UNKNOWN,
            "tls.serverNames".into(),
            "only for a generated certificate (the names of certFile are its own)".into(),
        );
    }
    if let StoreConfig::Etcd(etcd) = &config.store {
        let at = &etcd.endpoints.referenced;
        if etcd.endpoints.value.is_empty() {
            error(
                at,
                "store.etcd.endpoints".into(),
                "list at least one".into(),
            );
        }
        for (i, e) in etcd.endpoints.value.iter().enumerate() {
            if !e.starts_with("http://") {
                error(
                    at,
                    format!("store.etcd.endpoints[{i}]"),
                    format!("{e:?}: must start with http:// (TLS to etcd is not supported yet)"),
                );
            }
        }
    }
    for (i, t) in config.tokens.iter().enumerate() {
        let (at, t) = (&t.referenced, &t.value);
        let path = |f: &str| format!("tokens[{i}]{f}");
        match (&t.token, &t.token_file) {
            (Some(_), Some(_)) => error(at, path(""), "give token or tokenFile, not both".into()),
            (None, None) => error(at, path(""), "needs tokenFile (or token)".into()),
            (Some(s), None) if s.trim().is_empty() => {
                error(at, path(".token"), "must not be empty".into())
            }
            _ => {}
        }
        if matches!(t.scope, ScopeName::Operator | ScopeName::Gateway) && !t.services.is_empty() {
            error(
                at,
                path(".services"),
                "only sidecar and registrar tokens are limited to services".into(),
            );
        }
        if config.tokens[..i].iter().any(|o| o.value.name == t.name) {
            error(
                at,
                path(".name"),
                format!("duplicate token name {:?}", t.name),
            );
        }
    }
    if let Some(a) = &config.auto_rollback
        && !(a.nack_share > 0.0 && a.nack_share < 1.0)
    {
        error(
            &serde_saphyr::Location::UNKNOWN,
            "autoRollback.nackShare".into(),
            "must be between 0 and 1 (exclusive)".into(),
        );
    }
    errors
}
