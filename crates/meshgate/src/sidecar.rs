//! `meshgate sidecar --service NAME --control URL …`: the proxy beside one
//! workload. It takes a mesh identity from the control plane's CA, serves the
//! config the control plane generates for its service (inbound mTLS in front of
//! the app on `--app-port`, outbound routes to the other mesh services on
//! `--outbound-port`), registers its inbound address so the others find it, and
//! on SIGTERM/SIGINT deregisters (with drain) and drains. The work is in
//! `meshgate_mesh::sidecar`; this is the command line.
//!
//! With `--intercept` it also installs the transparent-interception rules
//! (`meshgate_mesh::intercept`) once it serves, and removes them after draining;
//! `--dry-run` prints them and exits without contacting anything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use meshgate_config::Duration;
use meshgate_control::client::Backoff;
use meshgate_control::sidecar::Ports;
use meshgate_control::sidecar::ports::{DEFAULT_INBOUND, DEFAULT_OUTBOUND};
use meshgate_core::{Gateway, Reloader};
use meshgate_mesh::intercept::{self, Interception, Spec};
use meshgate_mesh::sidecar::{Sidecar, SidecarSettings};

use crate::run::{init_tracing, runtime};
use crate::signals::shutdown_signal;

/// The command line of `meshgate sidecar`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Worker threads. Default 1: a sidecar carries one workload's traffic, and one
    /// worker never wakes a second thread per request (Linkerd's proxy does the same).
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,
    /// The mesh service this workload is (`mesh.services[].name`).
    #[arg(long, value_name = "NAME")]
    service: String,
    /// Its namespace (`mesh.services[].namespace`).
    #[arg(long, value_name = "NS", default_value = "default")]
    namespace: String,
    /// Control-plane URL, e.g. `https://127.0.0.1:15010`.
    #[arg(long, value_name = "URL")]
    control: String,
    /// CA certificate (PEM) the control plane's certificate is verified with.
    #[arg(long, value_name = "FILE")]
    control_ca: PathBuf,
    /// File holding a sidecar-scope token (config stream, certificate signing).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// File holding a registrar-scope token, to register the inbound address.
    /// Absent: not registered (other sidecars will not find this one).
    #[arg(long, value_name = "FILE")]
    registrar_token_file: Option<PathBuf>,
    /// The app's HTTP port on 127.0.0.1. Default: the service's first HTTP,
    /// HTTP2 or GRPC port.
    #[arg(long, value_name = "PORT")]
    app_port: Option<u16>,
    /// Where other sidecars connect (mTLS), on every address; the service's
    /// TCP ports follow it (inbound port + 1, + 2, …).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_INBOUND)]
    inbound_port: u16,
    /// Where the app sends its calls to other services (127.0.0.1); the mesh's
    /// TCP ports follow it (outbound port + 1, + 2, …).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_OUTBOUND)]
    outbound_port: u16,
    /// The address other sidecars reach the inbound port at (registered).
    /// Default: 127.0.0.1:<inbound port>.
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Where the last-good snapshot is kept (`last-good.json`).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// This sidecar's name in `meshgate status` and in the registry.
    /// Default: <service>-<host name>-<inbound port>.
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Access log: stdout (default), stderr, off or a file path.
    #[arg(long, value_name = "PATH")]
    access_log: Option<String>,
    /// Serve this sidecar's admin API (metrics, status) at ADDR. Default: off.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Lease of the registration (heartbeats every third of it), 1s-300s.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    registration_ttl: Duration,
    /// Transparent interception: install iptables rules (nat table, this network
    /// namespace) sending the app's TCP connections to the outbound port and
    /// connections from the network to the inbound port; removed on exit. Needs
    /// CAP_NET_ADMIN, and the app must run as another uid than the sidecar.
    #[arg(long)]
    intercept: bool,
    /// With --intercept: print the iptables commands and exit (nothing is
    /// contacted or installed).
    #[arg(long, requires = "intercept")]
    dry_run: bool,
    #[command(flatten)]
    exclusions: crate::intercept::Exclusions,
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn token(what: &str, path: &Path) -> Result<String, String> {
    let bytes = read(what, path)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

fn settings(args: Args) -> Result<SidecarSettings, String> {
    let control_ca_pem = read("--control-ca", &args.control_ca)?;
    let token_value = token("--token-file", &args.token_file)?;
    let registrar_token = match &args.registrar_token_file {
        Some(p) => Some(token("--registrar-token-file", p)?),
        None => None,
    };
    let node_id = args.node_id.unwrap_or_else(|| {
        let host = meshgate_control::config::hostname().unwrap_or_else(|| "host".into());
        format!("{}-{host}-{}", args.service, args.inbound_port)
    });
    Ok(SidecarSettings {
        control: args.control,
        control_ca_pem,
        token: token_value,
        registrar_token,
        service: args.service,
        namespace: args.namespace,
        node_id,
        ports: Ports {
            inbound: args.inbound_port,
            outbound: args.outbound_port,
            app: args.app_port,
        },
        advertise: args
            .advertise
            .unwrap_or_else(|| format!("127.0.0.1:{}", args.inbound_port)),
        data_dir: args.data_dir,
        access_log: args.access_log,
        admin: args.admin,
        registration_ttl: args.registration_ttl.get(),
        certificate_ttl: None,
        backoff: Backoff::default(),
        build: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// The interception rules `--intercept` asks for, as far as the command line
/// knows them: a non-loopback admin port is left alone too (the inbound ports of
/// the service's TCP ports are added once the config is known, see `serve`).
fn intercept_spec(args: &Args) -> Result<Option<Spec>, String> {
    if !args.intercept {
        return Ok(None);
    }
    let mut spec = args
        .exclusions
        .spec(args.outbound_port, Some(args.inbound_port))?;
    if let Some(admin) = args.admin
        && !admin.ip().is_loopback()
    {
        exclude_inbound(&mut spec, admin.port());
    }
    Ok(Some(spec))
}

fn exclude_inbound(spec: &mut Spec, port: u16) {
    if Some(port) != spec.inbound_port && !spec.exclude_inbound_ports.contains(&port) {
        spec.exclude_inbound_ports.push(port);
    }
}

pub fn run(args: Args) -> ExitCode {
    init_tracing();
    let spec = match intercept_spec(&args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("meshgate sidecar --intercept: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.dry_run
        && let Some(spec) = &spec
    {
        return match intercept::start(spec, true) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshgate sidecar --dry-run: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if spec.is_some() && args.advertise.is_none() {
        // Redirected traffic comes from other pods, which cannot dial 127.0.0.1.
        tracing::warn!("--intercept without --advertise: other sidecars are told 127.0.0.1");
    }
    let args_workers = args.workers.max(1);
    let settings = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = runtime(args_workers) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(serve(settings, spec))
}

async fn serve(settings: SidecarSettings, spec: Option<Spec>) -> ExitCode {
    let source = format!("control plane {}", settings.control);
    let (service, namespace) = (settings.service.clone(), settings.namespace.clone());
    let started = Sidecar::start(settings, meshgate_policy::Policies::compiler());
    let sidecar = tokio::select! {
        s = started => match s {
            Ok(s) => s,
            Err(e) => {
                eprintln!("meshgate sidecar: {e}");
                return ExitCode::FAILURE;
            }
        },
        signal = shutdown_signal() => {
            tracing::info!(signal, "stopped before the sidecar started");
            return ExitCode::SUCCESS;
        }
    };
    let addrs: Vec<String> = sidecar
        .gateway()
        .addrs()
        .iter()
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect();
    eprintln!(
        "meshgate sidecar: {service}.{namespace} as {}, listening {}",
        sidecar.identity().spiffe_id(),
        addrs.join(" ")
    );
    let admin = start_admin(sidecar.gateway(), &source).await;
    let rules = match spec {
        Some(spec) => match install(spec, sidecar.gateway()).await {
            Ok(rules) => Some(rules),
            Err(e) => {
                eprintln!("meshgate sidecar --intercept: {e}");
                if let Some(admin) = admin {
                    admin.shutdown().await;
                }
                sidecar.shutdown().await;
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let signal = shutdown_signal().await;
    tracing::info!(signal, "deregistering and draining");
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    sidecar.shutdown().await;
    // After the drain: connections the app opens meanwhile still reach the
    // (draining) sidecar rather than bypassing the mesh.
    if let Some(rules) = rules {
        let removed = tokio::task::spawn_blocking(move || rules.remove()).await;
        match removed {
            Ok(Ok(())) => tracing::info!("interception rules removed"),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the interception rules"),
            Err(e) => tracing::error!(error = %e, "cannot remove the interception rules"),
        }
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Installs the rules once the sidecar serves, so its listeners are known: the
/// ports it listens on beyond the loopback besides the inbound port (the inbound
/// TCP listeners at inbound port + 1, + 2, …) are dialled directly by other
/// sidecars and must not be redirected to the inbound port. (A TCP port added by
/// a later config is not excluded until the sidecar restarts.) Runs the
/// `iptables` processes off the async workers.
async fn install(mut spec: Spec, gateway: &Arc<Gateway>) -> Result<Interception, String> {
    for (_, addr) in gateway.addrs() {
        if !addr.ip().is_loopback() {
            exclude_inbound(&mut spec, addr.port());
        }
    }
    let installed = tokio::task::spawn_blocking(move || intercept::start(&spec, false)).await;
    match installed {
        Ok(Ok(Some(rules))) => {
            eprintln!(
                "meshgate sidecar: interception rules installed ({} commands)",
                rules.rules().install_lines().len()
            );
            Ok(rules)
        }
        Ok(Ok(None)) => Err("no rules installed".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The sidecar's admin API (`--admin`), as `meshgate gateway` serves its own. A
/// failure is logged, not fatal.
async fn start_admin(gateway: &Arc<Gateway>, source: &str) -> Option<meshgate_admin::Admin> {
    let config = gateway.snapshot().config.clone();
    if !config.admin.enabled {
        return None;
    }
    let reloader = Arc::new(Reloader::new(gateway.clone(), PathBuf::from(source), ""));
    match meshgate_admin::serve(reloader, &config.admin).await {
        Ok(admin) => Some(admin),
        Err(e) => {
            tracing::error!(address = %config.admin.address, error = %e,
                "cannot serve the admin API; serving traffic without it");
            None
        }
    }
}
