//! The control-plane process's own configuration (`meshgate control -c
//! control.yaml`): where it listens, where it keeps its data, which store it uses,
//! who may call it, and an optional bootstrap document. Parsed with serde-saphyr
//! like the gateway config (unknown fields rejected, camelCase keys), and every
//! error carries `file:line:col: field.path` ([`meshgate_config::ConfigErrors`]).
//!
//! Relative paths in the file (`dataDir`, `tokenFile`, `bootstrap`, `certFile`,
//! `keyFile`) are relative to the directory of the config file, so a config and
//! its secrets can move together.
//!
//! [`tls`] makes the serving identity (a generated CA on first start, or the
//! configured files).

pub mod mesh;
#[cfg(test)]
mod tests;
pub mod tls;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meshgate_config::{ConfigError, ConfigErrors, Duration};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::server::rollback::AutoRollback;
use crate::server::{Scope, Token, Tokens};

/// The first line that marks a file as a control-plane config (the gateway's
/// example check skips such files).
pub const MARKER: &str = "# meshgate control config";

/// `control.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlConfig {
    /// Address of the gRPC API (TLS): proxies, registrars and operators connect
    /// here. Default `127.0.0.1:15010`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the control plane's state: `config/` (embedded store
    /// versions) and `ca/` (generated CA and serving certificate). Required.
    pub data_dir: PathBuf,
    /// This replica's name, shown in status next to the proxies it holds.
    /// Default: the host name, else `control-1`.
    #[serde(default)]
    pub replica: Option<String>,
    /// The serving certificate. Absent or without `certFile`: a CA and a serving
    /// certificate are generated under `<dataDir>/ca/`.
    #[serde(default)]
    pub tls: Tls,
    /// Where config versions, registrations and proxy records live.
    /// Default `embedded: {keep: 20}`.
    #[serde(default)]
    pub store: StoreConfig,
    /// Bearer tokens accepted, each with a scope.
    #[serde(default)]
    pub tokens: Vec<Spanned<TokenConfig>>,
    /// Roll a version back automatically when too many proxies refuse it.
    /// Absent: never.
    #[serde(default)]
    pub auto_rollback: Option<AutoRollbackConfig>,
    /// A gateway config (meshgate.yaml) applied as version 1 when the store holds
    /// no config yet. Ignored afterwards.
    #[serde(default)]
    pub bootstrap: Option<Spanned<PathBuf>>,
    /// The control plane's own HTTP admin endpoint (`/healthz`, `/readyz`,
    /// `/metrics`, `/proxies`). Absent: not served.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The mesh CA issuing workload identities (see docs/mesh.md). Absent: the
    /// defaults of [`mesh::MeshCaConfig`].
    #[serde(default)]
    pub mesh: mesh::MeshCaConfig,
}

/// The serving certificate of the gRPC API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain to serve (with `keyFile`). Absent: generated.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `certFile`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Names (DNS names or IP addresses) of the generated serving certificate.
    /// Default: `localhost`, `127.0.0.1` and the host name. Only with a generated
    /// certificate.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// Which store backs the control plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StoreConfig {
    /// Files under `<dataDir>/config/`; registry and proxy records in memory. One
    /// replica only.
    Embedded(EmbeddedConfig),
    /// An etcd cluster shared by every replica.
    Etcd(EtcdConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded(EmbeddedConfig::default())
    }
}

/// `store.embedded`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// How many config versions are kept (for history and rollback). Default 20.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            keep: default_keep(),
        }
    }
}

/// `store.etcd`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members, e.g. `http://10.0.0.5:2379`.
    pub endpoints: Spanned<Vec<String>>,
    /// Key prefix of this mesh's data. Default `/meshgate`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How many config versions are kept. Default 20.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

/// One accepted bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs and errors instead of the secret.
    pub name: String,
    /// File holding the secret (surrounding whitespace ignored). Preferred.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The secret inline (discouraged: config files get copied and shown).
    #[serde(default)]
    pub token: Option<String>,
    /// What the token allows.
    pub scope: ScopeName,
    /// For `sidecar` and `registrar`: the services it may act for (empty: any).
    #[serde(default)]
    pub services: Vec<String>,
}

/// `tokens[].scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScopeName {
    /// plan, apply, rollback, history, status.
    Operator,
    /// `meshgate gateway --control …`.
    Gateway,
    /// A sidecar (limited to `services`).
    Sidecar,
    /// Service instances registering themselves (limited to `services`).
    Registrar,
}

/// `autoRollback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoRollbackConfig {
    /// Roll back when the share of NACKs among the answers exceeds this
    /// (0.5: more than half). Default 0.5.
    #[serde(default = "default_nack_share")]
    pub nack_share: f64,
    /// How long to wait for the connected proxies to answer a new version.
    /// Default 30s.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Decide only when at least this many proxies answered. Default 1.
    #[serde(default = "default_min_proxies")]
    pub min_proxies: usize,
}

/// `admin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the plain-HTTP admin endpoint. It has no authentication, so
    /// keep it on loopback or a management network.
    pub listen: SocketAddr,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 15010))
}
fn default_keep() -> usize {
    20
}
fn default_prefix() -> String {
    "/meshgate".to_owned()
}
fn default_nack_share() -> f64 {
    0.5
}
fn default_window() -> Duration {
    Duration::from_secs(30)
}
fn default_min_proxies() -> usize {
    1
}

/// This host's name, if the system says.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Why the tokens cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("token {name:?}: cannot read {path}: {source}")]
pub struct TokenFileError {
    pub name: String,
    pub path: String,
    pub source: std::io::Error,
}

impl ControlConfig {
    /// The replica name: configured, else the host name, else `control-1`.
    pub fn replica(&self) -> String {
        self.replica
            .clone()
            .or_else(hostname)
            .unwrap_or_else(|| "control-1".to_owned())
    }

    /// The accepted tokens, secrets read from their files.
    pub fn tokens(&self) -> Result<Tokens, TokenFileError> {
        let mut tokens = Vec::with_capacity(self.tokens.len());
        for t in &self.tokens {
            let t = &t.value;
            let secret = match (&t.token, &t.token_file) {
                (Some(inline), _) => inline.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|source| TokenFileError {
                        name: t.name.clone(),
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
                // Refused by validation; an empty secret would match nothing.
                (None, None) => continue,
            };
            tokens.push(Token {
                name: t.name.clone(),
                secret,
                scope: t.scope(),
            });
        }
        Ok(Tokens(tokens))
    }

    /// The automatic-rollback settings for `server::Options`.
    pub fn auto_rollback(&self) -> Option<AutoRollback> {
        self.auto_rollback.as_ref().map(|a| AutoRollback {
            nack_share: a.nack_share,
            window: a.window.get(),
            min_proxies: a.min_proxies,
            ..AutoRollback::default()
        })
    }
}

impl TokenConfig {
    /// The server-side scope.
    pub fn scope(&self) -> Scope {
        let services = self.services.clone();
        match self.scope {
            ScopeName::Operator => Scope::Operator,
            ScopeName::Gateway => Scope::Proxy {
                role: "gateway".into(),
                services,
            },
            ScopeName::Sidecar => Scope::Proxy {
                role: "sidecar".into(),
                services,
            },
            ScopeName::Registrar => Scope::Registrar { services },
        }
    }
}

/// Reads and checks a control-plane config file.
pub fn load_file(path: &Path) -> Result<ControlConfig, ConfigErrors> {
    let src = meshgate_config::read_file(path)?;
    let mut config = parse_str(&src, &path.display().to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    config.resolve_paths(base);
    Ok(config)
}

/// Parses and checks a document; `file` names it in errors. Paths stay as written.
pub fn parse_str(src: &str, file: &str) -> Result<ControlConfig, ConfigErrors> {
    let config = deserialize(src, file)?;
    let errors = validate::validate(&config, file);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

impl ControlConfig {
    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.data_dir);
        if let Some(p) = &mut self.tls.cert_file {
            join(p);
        }
        if let Some(p) = &mut self.tls.key_file {
            join(p);
        }
        if let Some(p) = &mut self.bootstrap {
            join(&mut p.value);
        }
        self.mesh.resolve_paths(base);
        for t in &mut self.tokens {
            if let Some(p) = &mut t.value.token_file {
                join(p);
            }
        }
    }
}

fn deserialize(src: &str, file: &str) -> Result<ControlConfig, ConfigErrors> {
    let mut field_path = String::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(src, options, |de| {
        serde_path_to_error::deserialize::<_, ControlConfig>(de).map_err(|e| {
            field_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = match e.location() {
            Some(loc) if loc.line() > 0 => (loc.line() as usize, loc.column() as usize),
            _ => (0, 0),
        };
        let msg = e.without_snippet().to_string();
        let message = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        };
        // `Spanned` fields add a `.value` step the file does not have (and no
        // field of this config is called `value`).
        let path = field_path
            .split('.')
            .filter(|step| *step != "value" && !step.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line,
            column,
            path,
            message,
        }])
    })
}
