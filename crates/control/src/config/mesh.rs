//! control.yaml's `mesh:` block: the settings of the mesh CA that issues workload
//! identities. Plain data: the CA itself lives in the mesh crate
//! (`meshgate_mesh::ca`), which the `meshgate control` process wires in.

use std::path::{Path, PathBuf};

use meshgate_config::Duration;
use serde::Deserialize;

/// `mesh`. Absent: the defaults (a CA generated under `<dataDir>/mesh-ca/` for
/// trust domain `cluster.local`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshCaConfig {
    /// SPIFFE trust domain of the issued identities
    /// (`spiffe://<trustDomain>/ns/<namespace>/sa/<service>`); must equal the
    /// mesh document's `mesh.trustDomain`. Default `cluster.local`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Lifetime of a workload certificate when the workload asks for none.
    /// Workloads renew at half-life. Default `24h`.
    #[serde(default = "default_cert_ttl")]
    pub cert_ttl: Duration,
    /// Longest lifetime a workload may ask for (longer is cut). Default `168h`.
    #[serde(default = "default_max_cert_ttl")]
    pub max_cert_ttl: Duration,
    /// Sign with this intermediate CA instead of a generated root (required
    /// when several control-plane replicas must issue under one CA).
    #[serde(default)]
    pub intermediate: Option<IntermediateCaConfig>,
}

/// `mesh.intermediate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntermediateCaConfig {
    /// PEM: the intermediate certificate, then its issuers up to the root
    /// (the last one is what workloads trust).
    pub cert_file: PathBuf,
    /// PEM private key of the intermediate certificate.
    pub key_file: PathBuf,
}

impl Default for MeshCaConfig {
    fn default() -> Self {
        MeshCaConfig {
            trust_domain: default_trust_domain(),
            cert_ttl: default_cert_ttl(),
            max_cert_ttl: default_max_cert_ttl(),
            intermediate: None,
        }
    }
}

impl MeshCaConfig {
    /// Makes relative file paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(i) = &mut self.intermediate {
            for p in [&mut i.cert_file, &mut i.key_file] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
    }
}

fn default_trust_domain() -> String {
    "cluster.local".to_owned()
}
fn default_cert_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_cert_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn defaults_and_a_full_block() {
        let c = parse_str("dataDir: /d\n", "c.yaml").unwrap();
        assert_eq!(c.mesh.trust_domain, "cluster.local");
        assert_eq!(c.mesh.cert_ttl.get(), Duration::from_secs(86_400));
        assert_eq!(c.mesh.max_cert_ttl.get(), Duration::from_secs(7 * 86_400));
        assert!(c.mesh.intermediate.is_none());

        let src = "dataDir: /d\nmesh:\n  trustDomain: prod.example\n  certTtl: 1h\n  \
                   maxCertTtl: 12h\n  intermediate: {certFile: ca.pem, keyFile: /k/ca.key}\n";
        let mut c = parse_str(src, "c.yaml").unwrap();
        c.mesh.resolve_paths(Path::new("/etc/meshgate"));
        assert_eq!(c.mesh.trust_domain, "prod.example");
        assert_eq!(c.mesh.cert_ttl.get(), Duration::from_secs(3600));
        assert_eq!(c.mesh.max_cert_ttl.get(), Duration::from_secs(12 * 3600));
        let i = c.mesh.intermediate.unwrap();
        assert_eq!(i.cert_file, Path::new("/etc/meshgate/ca.pem"));
        assert_eq!(i.key_file, Path::new("/k/ca.key"));
    }

    #[test]
    fn unknown_fields_are_located() {
        let err = parse_str("dataDir: /d\nmesh:\n  certTTL: 1h\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml:3") && err.contains("certTTL"), "{err}");
    }
}
