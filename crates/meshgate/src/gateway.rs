//! `meshgate gateway --control URL`: a gateway fed by a control plane. It starts
//! from the last-good snapshot in its data dir when there is one (so it serves
//! while the control plane is away), otherwise waits for the first snapshot;
//! then it follows the control plane through any outage, and drains on
//! SIGTERM/SIGINT.
//!
//! Node-local overrides: every gateway of a fleet receives the same document, so
//! what must differ per node is set on the command line and applied to each
//! snapshot before it starts: `--listen NAME=ADDR` (the address of a listener,
//! e.g. two gateways on one host, or binding to this node's IP) and `--admin
//! ADDR|off` (the gateway's own admin API). A snapshot naming no such listener is
//! taken as it is, with a warning.
//!
//! The overrides are the [`client::Transform`] given to
//! [`client::start_gateway_with`], which does the rest (last-good cache, client).
//!
//! `--mesh` makes the gateway join the mesh (mesh ingress): it first obtains a
//! mesh identity with its gateway token (`spiffe://<td>/ns/<--mesh-namespace>/sa/gateway`,
//! renewed at half-life), and starts with it, so routes to mesh services
//! (`services[].mesh`, endpoints from the registry) continue over mTLS
//! ([`meshgate_mesh::ingress`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use meshgate_config::Config;
use meshgate_control::client::{self, Backoff, Settings};
use meshgate_control::proto::v1::ProxyIdentity;
use meshgate_core::{Gateway, Reloader};

use crate::run::{init_tracing, runtime};
use crate::signals::shutdown_signal;

/// The command line of `meshgate gateway`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Control-plane URL, e.g. `https://127.0.0.1:15010`.
    #[arg(long, value_name = "URL")]
    control: String,
    /// CA certificate (PEM) the control plane's certificate is verified with
    /// (`<dataDir>/ca/ca.pem` of a control plane with a generated CA).
    #[arg(long, value_name = "FILE")]
    control_ca: PathBuf,
    /// File holding a gateway-scope token.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// This gateway's name in `meshgate status`. Default: the host name.
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Where the last-good snapshot is kept (`last-good.json`).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Bind listener NAME at ADDR instead of the address in the config
    /// (`--listen public=0.0.0.0:8080`); repeatable.
    #[arg(long = "listen", value_name = "NAME=ADDR", value_parser = parse_listen)]
    listen: Vec<(String, SocketAddr)>,
    /// Serve this gateway's admin API at ADDR, or `off`; default: as the config says.
    #[arg(long, value_name = "ADDR|off")]
    admin: Option<AdminOverride>,
    /// Join the mesh: obtain a mesh identity (`…/sa/gateway`) from the control
    /// plane with the gateway token and speak mTLS to mesh services.
    #[arg(long)]
    mesh: bool,
    /// The namespace of the gateway's mesh identity.
    #[arg(long, value_name = "NS", default_value = "default", requires = "mesh")]
    mesh_namespace: String,
}

/// `--admin`.
#[derive(Debug, Clone, Copy)]
pub enum AdminOverride {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for AdminOverride {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(AdminOverride::Off);
        }
        s.parse()
            .map(AdminOverride::At)
            .map_err(|e| format!("{s:?}: {e} (an address such as 127.0.0.1:9902, or off)"))
    }
}

fn parse_listen(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=ADDR"))?;
    let addr = addr.parse().map_err(|e| format!("{addr:?}: {e}"))?;
    Ok((name.to_owned(), addr))
}

/// The per-node changes made to every snapshot.
#[derive(Debug, Clone)]
struct Overrides {
    listen: Vec<(String, SocketAddr)>,
    admin: Option<AdminOverride>,
}

impl Overrides {
    fn apply(&self, config: &mut Config) {
        for (name, addr) in &self.listen {
            match config.listeners.iter_mut().find(|l| &l.name == name) {
                Some(l) => l.address = *addr,
                None => {
                    tracing::warn!(listener = %name, "--listen: the config has no such listener")
                }
            }
        }
        match self.admin {
            Some(AdminOverride::Off) => config.admin.enabled = false,
            Some(AdminOverride::At(addr)) => {
                config.admin.enabled = true;
                config.admin.address = addr;
            }
            None => {}
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    init_tracing();
    let ca_pem = match std::fs::read(&args.control_ca) {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("--control-ca {}: {e}", args.control_ca.display());
            return ExitCode::FAILURE;
        }
    };
    let token = match std::fs::read_to_string(&args.token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            eprintln!("--token-file {}: {e}", args.token_file.display());
            return ExitCode::FAILURE;
        }
    };
    let node_id = args
        .node_id
        .clone()
        .or_else(meshgate_control::config::hostname)
        .unwrap_or_else(|| "gateway-1".to_owned());
    let settings = Settings {
        control: args.control.clone(),
        ca_pem,
        token,
        identity: ProxyIdentity {
            role: "gateway".into(),
            node_id,
            service: String::new(),
            namespace: String::new(),
        },
        data_dir: args.data_dir.clone(),
        build: env!("CARGO_PKG_VERSION").to_owned(),
        backoff: Backoff::default(),
    };
    let overrides = Overrides {
        listen: args.listen,
        admin: args.admin,
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(runtime) = runtime(workers) else {
        return ExitCode::FAILURE;
    };
    let mesh = args.mesh.then_some(args.mesh_namespace);
    runtime.block_on(serve(settings, overrides, mesh))
}

/// A gateway fed by the control plane, in the mesh or not.
enum Fed {
    Edge(client::FedGateway),
    Mesh(meshgate_mesh::ingress::MeshGateway),
}

impl Fed {
    fn gateway(&self) -> &Arc<Gateway> {
        match self {
            Fed::Edge(f) => &f.gateway,
            Fed::Mesh(m) => &m.fed.gateway,
        }
    }

    async fn shutdown(self) {
        match self {
            Fed::Edge(f) => f.shutdown().await,
            Fed::Mesh(m) => m.shutdown().await,
        }
    }
}

/// Starts the gateway; `mesh`: the namespace of its mesh identity when it joins
/// the mesh.
async fn start(
    settings: Settings,
    transform: client::Transform,
    mesh: Option<String>,
) -> Result<Fed, String> {
    let compiler = meshgate_policy::Policies::compiler();
    match mesh {
        None => client::start_gateway_with(settings, compiler, transform)
            .await
            .map(Fed::Edge)
            .map_err(|e| e.to_string()),
        Some(namespace) => {
            let fed = meshgate_mesh::ingress::start(settings, &namespace, compiler, transform)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(spiffe_id = %fed.identity().spiffe_id(), "joined the mesh");
            Ok(Fed::Mesh(fed))
        }
    }
}

async fn serve(settings: Settings, overrides: Overrides, mesh: Option<String>) -> ExitCode {
    let source = format!("control plane {}", settings.control);
    let transform: client::Transform = Arc::new(move |config: &mut Config| {
        overrides.apply(config);
        Ok(())
    });
    let started = start(settings, transform, mesh);
    let fed = tokio::select! {
        fed = started => match fed {
            Ok(fed) => fed,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        signal = shutdown_signal() => {
            tracing::info!(signal, "stopped before any config arrived");
            return ExitCode::SUCCESS;
        }
    };
    let admin = start_admin(fed.gateway(), &source).await;
    let signal = shutdown_signal().await;
    tracing::info!(signal, "draining");
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    fed.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The gateway's own admin API, as the config it started with says. A failure is
/// logged, not fatal: the gateway serves traffic without it (several gateways on
/// one host share a document; give each its own `--admin`).
async fn start_admin(gateway: &Arc<Gateway>, source: &str) -> Option<meshgate_admin::Admin> {
    let config = gateway.snapshot().config.clone();
    if !config.admin.enabled {
        return None;
    }
    // The Reloader's file is not used here: the control plane replaces configs,
    // so an admin-API reload finds no file and changes nothing.
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
