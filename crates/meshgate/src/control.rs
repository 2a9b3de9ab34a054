//! `meshgate control -c control.yaml`: the control plane as a process. Loads its
//! config ([`meshgate_control::config`]), opens the store (embedded or etcd),
//! applies the bootstrap document when the store is empty, serves the gRPC API
//! over TLS and the optional admin endpoint ([`admin`], with the config REST
//! API of [`config_api`]), and stops gracefully on SIGTERM/SIGINT: config
//! streams end (proxies reconnect, here once it is back or to another replica),
//! calls in flight finish, bounded by [`STOP_TIMEOUT`].
//!
//! On start it prints (stdout) where it listens and, with a generated CA, the CA
//! file proxies and operators pass as `--control-ca`.

mod admin;
mod config_api;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use meshgate_control::config::{self, ControlConfig, StoreConfig, tls};
use meshgate_control::server::{ControlPlane, Options};
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::etcd::EtcdStore;
use meshgate_control::store::{NewRevision, Store, StoreError};
use meshgate_mesh::ca::{CaOptions, MeshCa};
use tonic::transport::Identity;

use crate::run::{init_tracing, runtime};
use crate::signals::shutdown_signal;

/// How long a stop waits for connections to close before cutting them.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(path: &Path) -> ExitCode {
    init_tracing();
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let tokens = match config.tokens() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if tokens.0.is_empty() {
        tracing::warn!("no tokens configured: nobody can call this control plane");
    }
    for t in config.tokens.iter().filter(|t| t.value.token.is_some()) {
        tracing::warn!(token = %t.value.name, "token given inline; prefer tokenFile");
    }
    let identity = match tls::serving_identity(&config) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("serving certificate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(runtime) = runtime(workers) else {
        return ExitCode::FAILURE;
    };
    let options = Options {
        replica: config.replica(),
        tokens,
        auto_rollback: config.auto_rollback(),
    };
    let code = runtime.block_on(serve(config, options, identity));
    // Streams and watches run on spawned tasks; do not wait on them forever.
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

async fn serve(
    config: ControlConfig,
    options: Options,
    identity: tls::ServingIdentity,
) -> ExitCode {
    let replica = options.replica.clone();
    let store: Arc<dyn Store> = match open_store(&config, &replica).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("opening the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(file) = &config.bootstrap
        && let Err(e) = bootstrap(&*store, &file.value).await
    {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // Announced before the port listens: whoever waits for the port can rely on it.
    if let Some(ca) = &identity.ca_file {
        println!(
            "meshgate control: serving certificate for {} issued by the CA in {} \
             (give it to proxies and operators as --control-ca)",
            identity.names.join(", "),
            ca.display()
        );
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gRPC API on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(config.listen);
    let cp = ControlPlane::start(store, options);
    let mesh_ca = match MeshCa::open(CaOptions::from_config(&config.mesh, &config.data_dir)) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("mesh CA: {e}");
            return ExitCode::FAILURE;
        }
    };
    let routes = cp.routes().add_service(meshgate_mesh::ca::service(
        mesh_ca,
        cp.options.tokens.clone(),
        cp.stopping(),
    ));
    let identity = Identity::from_pem(identity.cert_pem, identity.key_pem);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut grpc = {
        let cp = cp.clone();
        tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.await;
            };
            cp.serve_routes_with_shutdown(routes, listener, identity, signal)
                .await
        })
    };
    let admin = match &config.admin {
        Some(a) => match admin::serve(a.listen, cp.clone()).await {
            Ok(server) => Some(server),
            Err(e) => {
                eprintln!("admin endpoint on {}: {e}", a.listen);
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    println!("meshgate control: replica {replica}, gRPC API on https://{local}");
    if let Some(a) = &admin {
        println!("meshgate control: admin on http://{}", a.local_addr());
    }
    tracing::info!(%replica, address = %local, "control plane serving");
    tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal, "stopping: ending the config streams");
            let _ = stop.send(());
            match tokio::time::timeout(STOP_TIMEOUT, &mut grpc).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the gRPC server failed while stopping"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the gRPC server failed while stopping"),
                Err(_) => {
                    tracing::warn!(timeout = ?STOP_TIMEOUT, "connections still open; closing them");
                    grpc.abort();
                }
            }
            if let Some(a) = admin {
                a.shutdown().await;
            }
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        ended = &mut grpc => {
            match ended {
                Ok(Ok(())) => eprintln!("the gRPC server stopped"),
                Ok(Err(e)) => eprintln!("the gRPC server failed: {e}"),
                Err(e) => eprintln!("the gRPC server failed: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn open_store(config: &ControlConfig, replica: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.store {
        StoreConfig::Embedded(e) => EmbeddedStore::open(&config.data_dir, e.keep)?,
        StoreConfig::Etcd(e) => {
            EtcdStore::connect(&e.endpoints.value, &e.prefix, e.keep, replica).await?
        }
    })
}

/// Why the bootstrap document was not applied.
#[derive(Debug, thiserror::Error)]
enum BootstrapError {
    #[error("bootstrap: {0}")]
    Invalid(#[from] meshgate_config::ConfigErrors),
    #[error("bootstrap: {0}")]
    Store(#[from] StoreError),
}

/// Applies `file` as version 1 if the store holds no config yet.
async fn bootstrap(store: &dyn Store, file: &Path) -> Result<(), BootstrapError> {
    if store.config().borrow().is_some() {
        tracing::info!(file = %file.display(), "the store has a config; bootstrap not needed");
        return Ok(());
    }
    let yaml = meshgate_config::read_file(file)?;
    let source = file.display().to_string();
    meshgate_config::parse_str(&yaml, &source)?;
    let next = NewRevision {
        yaml,
        source,
        note: "bootstrap".into(),
    };
    match store.commit(0, next).await {
        Ok(r) => {
            tracing::info!(version = r.version, file = %file.display(), "bootstrap config applied");
            Ok(())
        }
        // Another replica bootstrapped first: its version stands.
        Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
