//! `meshgate explain`: what the gateway would do with one request, offline. The
//! config is compiled exactly as `run` compiles it (policies included) and the
//! request goes through the same pipeline code, stopping before anything is sent.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use meshgate_config::Config;
use meshgate_core::Snapshot;

/// The request to explain, as given on the command line.
pub struct Args<'a> {
    pub file: &'a Path,
    /// `GET https://host/path` or just a URL (GET).
    pub request: &'a str,
    /// `name: value` lines.
    pub headers: &'a [String],
    pub listener: Option<&'a str>,
    pub client: SocketAddr,
}

pub fn run(args: Args<'_>) -> ExitCode {
    let config = match meshgate_config::load_file(args.file) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let parts = match request_parts(args.request, args.headers) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = crate::run::runtime(1) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        match explain(config, parts, args.listener, args.client).await {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The explanation as printed.
pub async fn explain(
    config: Config,
    parts: http::request::Parts,
    listener: Option<&str>,
    client: SocketAddr,
) -> Result<String, String> {
    let metrics = Arc::new(meshgate_observe::Metrics::new());
    let compiler = meshgate_policy::Policies::compiler();
    let snapshot =
        Snapshot::compile(config, None, &metrics, &*compiler).map_err(|e| e.to_string())?;
    let listener = pick_listener(&snapshot.config, &parts.uri, listener)?;
    let mut out = format!(
        "request: {} {}\nlistener: {} ({})\n",
        parts.method, parts.uri, listener.name, listener.address
    );
    let name = listener.name.clone();
    let trace = meshgate_core::proxy::explain_request(&snapshot, &name, client, parts).await;
    out.push_str(&trace.render());
    Ok(out)
}

/// `--listener`, else the listener on the URL's port, else the only (or first) one.
fn pick_listener<'c>(
    config: &'c Config,
    uri: &http::Uri,
    wanted: Option<&str>,
) -> Result<&'c meshgate_config::Listener, String> {
    if let Some(name) = wanted {
        return config
            .listeners
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| format!("no listener named {name:?}"));
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    config
        .listeners
        .iter()
        .find(|l| l.address.port() == port)
        .or_else(|| config.listeners.first())
        .ok_or_else(|| "the config has no listeners".to_owned())
}

/// Builds the request head from `METHOD URL` and `name: value` header lines.
pub fn request_parts(request: &str, headers: &[String]) -> Result<http::request::Parts, String> {
    let (method, url) = match request.trim().split_once(char::is_whitespace) {
        Some((m, u)) => (m.trim(), u.trim()),
        None => ("GET", request.trim()),
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.authority().is_none() {
        return Err(format!(
            "{url:?}: give an absolute URL (http://host/path) so the host is known"
        ));
    }
    let mut builder = http::Request::builder().method(method).uri(uri.clone());
    if let Some(a) = uri.authority() {
        builder = builder.header(http::header::HOST, a.as_str());
    }
    for line in headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header {line:?}: expected `name: value`"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .map_err(|e| format!("bad request: {e}"))
}
