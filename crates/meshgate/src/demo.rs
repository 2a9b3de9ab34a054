//! `meshgate demo`: three demo backends and a gateway on an embedded config, with
//! the curl commands to try printed once everything listens.

use std::process::ExitCode;

use meshgate_testkit::Backend;

const DEMO_CONFIG: &str = include_str!("demo.yaml");

pub fn run(port: u16) -> ExitCode {
    crate::run::init_tracing();
    // Backends need a runtime before the gateway's exists; a small one of their own.
    // The backends run on a worker thread of their own while the main thread blocks
    // on the gateway's runtime, so this one must be multi-threaded.
    let backends_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    let Ok(backends_rt) = backends_rt.map_err(|e| eprintln!("cannot start the runtime: {e}"))
    else {
        return ExitCode::FAILURE;
    };
    let backends: Vec<Backend> = backends_rt.block_on(async {
        vec![
            Backend::start("orders-v1").await,
            Backend::start("orders-v2").await,
            Backend::start("users").await,
        ]
    });
    let yaml = DEMO_CONFIG
        .replace("{port}", &port.to_string())
        .replace("{orders_v1}", &backends[0].addr.to_string())
        .replace("{orders_v2}", &backends[1].addr.to_string())
        .replace("{users}", &backends[2].addr.to_string());
    // Written to a file so the demo reloads like `run` does (edit it and save).
    let path = std::env::temp_dir().join(format!("meshgate-demo-{}.yaml", std::process::id()));
    if let Err(e) = std::fs::write(&path, &yaml) {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let shown = path.clone();
    let code = crate::run::run_source(&path, yaml, move |started| {
        let addr = started
            .gateway
            .local_addr("public")
            .map(|a| a.to_string())
            .unwrap_or_default();
        let admin = started.admin.map(|a| a.to_string()).unwrap_or_default();
        print_tries(&addr, &admin, &shown.display().to_string());
    });
    let _ = std::fs::remove_file(&path);
    drop(backends);
    drop(backends_rt);
    code
}

fn print_tries(addr: &str, admin: &str, file: &str) {
    let base = format!("http://{addr}");
    eprintln!(
        "\nmeshgate demo is up: gateway on {base}, backends orders-v1, orders-v2, users. Try:\n\n\
         curl -s {base}/orders/42                           # 90% orders-v1, 10% orders-v2 (see \"backend\")\n\
         curl -s -H 'x-canary: true' {base}/orders/42       # always orders-v2 (header match)\n\
         curl -s {base}/users/7                             # users, path rewritten to /v1/users/7\n\
         curl -s --http2-prior-knowledge {base}/users/7     # the same over h2c\n\
         curl -si {base}/old/docs                           # 301 redirect to /docs\n\
         curl -si {base}/maintenance                        # direct response 503 from the gateway\n\
         curl -s {base}/nowhere                             # 404 JSON: no route\n\
         curl -s {base}/orders/status/503                   # upstream 503, retried, then returned\n\
         curl -s -H 'x-request-id: demo-1' -i {base}/users/1  # request id passed through and back\n\n\
         Admin API (no token: loopback only): curl -s http://{admin}/routes ; /services ; /config ; /metrics\n\
         The config is {file}: edit and save it, and the gateway reloads it.\n\
         The access log (one JSON line per request) goes to stdout. Ctrl-C stops everything.\n"
    );
}

/// `meshgate echo`: one demo backend until Ctrl-C.
pub fn echo(listen: std::net::SocketAddr, name: &str) -> ExitCode {
    crate::run::init_tracing();
    let Some(runtime) = crate::run::runtime(1) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let backend = match Backend::start_on(listen, name).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("echo backend {name:?} on http://{}", backend.addr);
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
