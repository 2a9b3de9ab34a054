//! The sidecar port scheme and its node-local rewrite. The control plane
//! generates every sidecar config on the default ports — inbound
//! `0.0.0.0:15006`, outbound `127.0.0.1:15001`, the app on the service's first L7
//! port — and TCP ports next to them: the i-th TCP port of the sidecar's own
//! service is inbound at `15006 + 1 + i`, the j-th TCP port of the mesh (counting
//! across `mesh.services` in order) outbound at `15001 + 1 + j`. A sidecar started
//! with other ports (`--inbound-port`, `--outbound-port`, `--app-port`) shifts
//! those listeners by the same amount and points `local-app` at its app
//! ([`localize`]), so two sidecars can share a host.

use meshgate_config::Config;

/// Inbound port of the generated config (other sidecars connect here, mTLS).
pub const DEFAULT_INBOUND: u16 = 15006;
/// Outbound port of the generated config (the app's calls, plain, loopback).
pub const DEFAULT_OUTBOUND: u16 = 15001;

/// A sidecar's own ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub inbound: u16,
    pub outbound: u16,
    /// The app's HTTP port; None: the service's first L7 port, as generated.
    pub app: Option<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            inbound: DEFAULT_INBOUND,
            outbound: DEFAULT_OUTBOUND,
            app: None,
        }
    }
}

/// Why a generated config cannot be moved to a sidecar's ports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("listener {listener:?}: port {port} moved by {shift:+} is not a port")]
pub struct LocalizeError {
    pub listener: String,
    pub port: u16,
    pub shift: i32,
}

/// Moves a generated sidecar config to `ports`: `inbound*` listeners by
/// `ports.inbound - 15006`, `outbound*` listeners by `ports.outbound - 15001`,
/// and `local-app` to `127.0.0.1:<ports.app>` when given.
pub fn localize(config: &mut Config, ports: &Ports) -> Result<(), LocalizeError> {
    let inbound = i32::from(ports.inbound) - i32::from(DEFAULT_INBOUND);
    let outbound = i32::from(ports.outbound) - i32::from(DEFAULT_OUTBOUND);
    for l in &mut config.listeners {
        let shift = if l.name == "inbound" || l.name.starts_with("inbound-tcp-") {
            inbound
        } else if l.name == "outbound" || l.name.starts_with("outbound-tcp-") {
            outbound
        } else {
            continue;
        };
        let port = l.address.port();
        let moved = u16::try_from(i32::from(port) + shift).map_err(|_| LocalizeError {
            listener: l.name.clone(),
            port,
            shift,
        })?;
        l.address.set_port(moved);
    }
    if let Some(app) = ports.app
        && let Some(s) = config.services.iter_mut().find(|s| s.name == "local-app")
    {
        for e in &mut s.endpoints {
            e.address = format!("127.0.0.1:{app}");
        }
    }
    Ok(())
}
