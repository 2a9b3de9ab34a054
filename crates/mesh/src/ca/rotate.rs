//! The generated root on disk and its rotation with an overlap, in three steps
//! that each survive a restart (the files in `<dataDir>/mesh-ca/` are the state):
//!
//! 1. [`MeshCa::prepare_rotation`]: a new root is generated (`next.pem`,
//!    `next.key`) and added to the bundle. Certificates still come from the old
//!    root. Wait until every workload has the new bundle.
//! 2. [`MeshCa::activate_rotation`]: the new root issues (`root.*`), the old
//!    root's certificate stays in the bundle (`previous.pem`; its key is gone).
//!    Wait until every workload renewed its certificate (one TTL at most).
//! 3. [`MeshCa::finish_rotation`]: the old root leaves the bundle; certificates
//!    it issued no longer verify.
//!
//! Activation writes `previous.pem` first, then renames `next.key` and
//! `next.pem` over `root.*`; a crash in between is completed on the next start.
//! An intermediate CA loaded from files is rotated by replacing its files.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;

use super::{CaError, MeshCa, State, generate_root, read, read_certs, root_signer};

const ROOT_PEM: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const NEXT_PEM: &str = "next.pem";
const NEXT_KEY: &str = "next.key";
const PREVIOUS_PEM: &str = "previous.pem";

/// Where a CA rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One root.
    Steady,
    /// A new root is trusted, the old one still issues.
    Prepared,
    /// The new root issues, the old one is still trusted.
    Activated,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Prepared => "prepared",
            Phase::Activated => "activated",
        }
    }
}

/// The CA's rotation state, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStatus {
    pub phase: Phase,
    /// `<role> sha256:<fingerprint>` per root in the bundle.
    pub roots: Vec<String>,
    pub bundle_version: u64,
}

/// Why a rotation step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("the CA is an intermediate loaded from files: rotate it by replacing them")]
    NotGenerated,
    #[error("{step} needs phase {needed}, the CA is {actual}")]
    WrongPhase {
        step: &'static str,
        needed: &'static str,
        actual: &'static str,
    },
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl MeshCa {
    pub fn rotation_status(&self) -> RotationStatus {
        let state = self.lock();
        let mut roots: Vec<String> = state
            .active_roots
            .iter()
            .map(|r| format!("active {}", fingerprint(r)))
            .collect();
        if let Some((_, next)) = &state.next {
            roots.push(format!("next {}", fingerprint(next)));
        }
        if let Some(previous) = &state.previous {
            roots.push(format!("previous {}", fingerprint(previous)));
        }
        RotationStatus {
            phase: phase(&state),
            roots,
            bundle_version: self.bundle().version,
        }
    }

    /// Step 1: a new root, trusted but not issuing.
    pub fn prepare_rotation(&self) -> Result<RotationStatus, RotateError> {
        {
            let mut state = self.lock();
            expect(&state, "prepare", Phase::Steady)?;
            let (cert, key) = generate_root(&self.trust_domain).map_err(CaError::from)?;
            write_file(
                &self.dir.join(NEXT_KEY),
                key.serialize_pem().as_bytes(),
                true,
            )?;
            write_file(
                &self.dir.join(NEXT_PEM),
                super::to_pem(&cert).as_bytes(),
                false,
            )?;
            let signer = root_signer(&self.dir.join(NEXT_PEM), &cert, key)?;
            state.next = Some((Arc::new(signer), cert));
            self.publish(&state);
        }
        tracing::info!("mesh CA rotation: new root prepared and added to the trust bundle");
        Ok(self.rotation_status())
    }

    /// Step 2: the new root issues; the old one stays trusted.
    pub fn activate_rotation(&self) -> Result<RotationStatus, RotateError> {
        {
            let mut state = self.lock();
            expect(&state, "activate", Phase::Prepared)?;
            let (signer, cert) = state.next.take().ok_or(RotateError::WrongPhase {
                step: "activate",
                needed: "prepared",
                actual: "steady",
            })?;
            let old = state.active_roots.first().cloned();
            if let Some(old) = &old {
                let written = write_file(
                    &self.dir.join(PREVIOUS_PEM),
                    super::to_pem(old).as_bytes(),
                    false,
                )
                .and_then(|()| complete_activation(&self.dir));
                if let Err(e) = written {
                    state.next = Some((signer, cert));
                    return Err(e.into());
                }
            }
            state.previous = old;
            state.active = signer;
            state.active_roots = vec![cert];
            self.publish(&state);
        }
        tracing::info!("mesh CA rotation: new root issuing, old root still trusted");
        Ok(self.rotation_status())
    }

    /// Step 3: the old root leaves the bundle.
    pub fn finish_rotation(&self) -> Result<RotationStatus, RotateError> {
        {
            let mut state = self.lock();
            expect(&state, "finish", Phase::Activated)?;
            remove(&self.dir.join(PREVIOUS_PEM))?;
            state.previous = None;
            self.publish(&state);
        }
        tracing::info!("mesh CA rotation finished: old root no longer trusted");
        Ok(self.rotation_status())
    }
}

fn phase(state: &State) -> Phase {
    if state.next.is_some() {
        Phase::Prepared
    } else if state.previous.is_some() {
        Phase::Activated
    } else {
        Phase::Steady
    }
}

fn expect(state: &State, step: &'static str, needed: Phase) -> Result<(), RotateError> {
    if !state.generated {
        return Err(RotateError::NotGenerated);
    }
    let actual = phase(state);
    if actual != needed {
        return Err(RotateError::WrongPhase {
            step,
            needed: needed.as_str(),
            actual: actual.as_str(),
        });
    }
    Ok(())
}

/// Loads the generated root and any rotation in progress; creates the root on
/// first start.
pub(crate) fn load_generated(dir: &Path, trust_domain: &str) -> Result<State, CaError> {
    std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    if dir.join(PREVIOUS_PEM).exists() && dir.join(NEXT_PEM).exists() {
        tracing::warn!("mesh CA: completing an interrupted rotation activation");
        complete_activation(dir)?;
    }
    if !dir.join(ROOT_PEM).exists() {
        let (cert, key) = generate_root(trust_domain)?;
        write_file(&dir.join(ROOT_KEY), key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join(ROOT_PEM), super::to_pem(&cert).as_bytes(), false)?;
        tracing::info!(dir = %dir.display(), "mesh CA: generated a new root");
    }
    let (active, root) = load_root(dir, ROOT_PEM, ROOT_KEY)?;
    let next = if dir.join(NEXT_PEM).exists() {
        let (signer, cert) = load_root(dir, NEXT_PEM, NEXT_KEY)?;
        Some((Arc::new(signer), cert))
    } else {
        None
    };
    let previous = if dir.join(PREVIOUS_PEM).exists() {
        Some(read_certs(&dir.join(PREVIOUS_PEM))?.remove(0))
    } else {
        None
    };
    Ok(State {
        active: Arc::new(active),
        active_roots: vec![root],
        next,
        previous,
        generated: true,
    })
}

fn load_root(
    dir: &Path,
    pem: &str,
    key: &str,
) -> Result<(super::Signer, CertificateDer<'static>), CaError> {
    let cert_path = dir.join(pem);
    let cert = read_certs(&cert_path)?.remove(0);
    let key_path = dir.join(key);
    let key_pem = read(&key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
        path: key_path.display().to_string(),
        message: format!("not a usable private key: {e}"),
    })?;
    super::check_key_matches(&cert, &key_pem).map_err(|message| CaError::Invalid {
        path: cert_path.display().to_string(),
        message,
    })?;
    Ok((root_signer(&cert_path, &cert, key)?, cert))
}

/// `next.*` become `root.*` (key first: a crash between the renames leaves
/// `next.pem`, which the next start completes).
fn complete_activation(dir: &Path) -> Result<(), CaError> {
    if dir.join(NEXT_KEY).exists() {
        rename(&dir.join(NEXT_KEY), &dir.join(ROOT_KEY))?;
    }
    rename(&dir.join(NEXT_PEM), &dir.join(ROOT_PEM))
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Writes through a temporary file and a rename, so a crash leaves the old or
/// the new content; keys are readable by the owner only.
fn write_file(path: &Path, content: &[u8], secret: bool) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(content).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn rename(from: &Path, to: &Path) -> Result<(), CaError> {
    std::fs::rename(from, to).map_err(|source| CaError::Io {
        path: from.display().to_string(),
        source,
    })
}

fn remove(path: &Path) -> Result<(), CaError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CaError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}
