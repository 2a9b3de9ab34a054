//! `meshgate run`: build the runtime the config asks for, start the gateway, and
//! drain gracefully on SIGTERM/SIGINT.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use meshgate_config::Config;
use meshgate_core::{Gateway, Reloader};

use crate::signals::shutdown_signal;

pub fn run_file(path: &Path) -> ExitCode {
    init_tracing();
    match std::fs::read_to_string(path) {
        Ok(src) => run_source(path, src, |_| {}),
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// What `ready` is told once everything listens.
pub struct Started<'a> {
    pub gateway: &'a Gateway,
    pub admin: Option<std::net::SocketAddr>,
}

/// Runs the config `src` read from `path`: gateway, reload triggers (SIGHUP, file
/// watch) and the admin API; calls `ready` once all of them listen.
pub fn run_source(
    path: &Path,
    src: String,
    ready: impl FnOnce(Started<'_>) + Send + 'static,
) -> ExitCode {
    let name = path.display().to_string();
    let config = match meshgate_config::parse_str(&src, &name) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    for w in meshgate_config::warnings(&config, &src, &name) {
        tracing::warn!("{w}");
    }
    let (watch, debounce, admin) = (
        config.reload.watch,
        config.reload.debounce.get(),
        config.admin.clone(),
    );
    let path = path.to_path_buf();
    serve(config, move |gateway| async move {
        let reloader = Arc::new(Reloader::new(gateway.clone(), path.clone(), &src));
        crate::watch::spawn_sighup(reloader.clone());
        let watcher = if watch {
            crate::watch::spawn_file_watch(reloader.clone(), path, debounce)
                .map_err(|e| tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads"))
                .ok()
        } else {
            None
        };
        let admin = if admin.enabled {
            let server = meshgate_admin::serve(reloader.clone(), &admin)
                .await
                .map_err(|e| format!("admin API on {}: {e}", admin.address))?;
            Some(server)
        } else {
            None
        };
        ready(Started {
            gateway: &gateway,
            admin: admin.as_ref().map(|a| a.local_addr()),
        });
        Ok(Box::new((reloader, watcher, admin)) as Box<dyn std::any::Any + Send>)
    })
}

/// Starts `config` with its `runtime.workerThreads` (one: everything on the main
/// thread; more: that many worker threads, thread-per-core), calls `ready` with
/// the running gateway (what it returns is kept alive until exit), and returns after
/// a signal-triggered drain.
pub fn serve<F, Fut>(config: Config, ready: F) -> ExitCode
where
    F: FnOnce(Arc<Gateway>) -> Fut,
    Fut: Future<Output = Result<Box<dyn std::any::Any + Send>, String>>,
{
    let workers = config
        .runtime
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Thread-per-core with more than one worker (`meshgate_core::workers`): the
    // main runtime accepts, admin and background tasks run on it; each worker
    // thread serves its share of the connections on a runtime of its own.
    let Some(runtime) = runtime(1) else {
        return ExitCode::FAILURE;
    };
    if workers > 1
        && let Err(e) = meshgate_core::workers::start(workers)
    {
        eprintln!("cannot start {workers} worker threads: {e}");
        return ExitCode::FAILURE;
    }
    runtime.block_on(async move {
        let gateway = match Gateway::start(config, meshgate_policy::Policies::compiler()).await {
            Ok(g) => Arc::new(g),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let _keep_alive = match ready(gateway.clone()).await {
            Ok(kept) => kept,
            Err(e) => {
                eprintln!("{e}");
                gateway.shutdown().await;
                return ExitCode::FAILURE;
            }
        };
        let signal = shutdown_signal().await;
        tracing::info!(signal, "draining");
        gateway.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// A tokio runtime with `workers` threads (reporting failure on stderr). One worker:
/// a current-thread runtime, which avoids cross-thread wake-ups entirely.
pub fn runtime(workers: usize) -> Option<tokio::runtime::Runtime> {
    let built = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    built
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
}

pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
