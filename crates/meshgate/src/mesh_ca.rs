//! `meshgate mesh-ca status|prepare|activate|finish`: the mesh CA rotation
//! steps, called online on a running control plane (its `Identity.RotateCa` API,
//! operator token). Each step is persisted by the control plane in its data
//! dir; see docs/mesh.md "CA rotation" for when to run the next one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use meshgate_control::proto::v1::CaRotation;
use meshgate_control::proto::v1::identity_client::IdentityClient;
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// Where the control plane is and the operator token.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Control-plane URL, e.g. `https://cp.example.com:15010` (env MESHGATE_CONTROL).
    #[arg(long, value_name = "URL")]
    control: Option<String>,
    /// CA certificate (PEM) of the control plane's serving certificate (env
    /// MESHGATE_CONTROL_CA).
    #[arg(long, value_name = "FILE")]
    control_ca: Option<PathBuf>,
    /// File holding an operator token (env MESHGATE_TOKEN_FILE).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the rotation phase and the roots in the trust bundle.
    Status(Connection),
    /// Step 1: create a new root and add it to the trust bundle (the old root
    /// still issues).
    #[command(alias = "rotate")]
    Prepare(Connection),
    /// Step 2 (once every workload has the new bundle): issue from the new root;
    /// the old root stays trusted.
    Activate(Connection),
    /// Step 3 (once every workload renewed, i.e. one certificate TTL later):
    /// drop the old root from the trust bundle.
    Finish(Connection),
}

pub fn run(command: Command) -> ExitCode {
    let (step, connection) = match command {
        Command::Status(c) => ("status", c),
        Command::Prepare(c) => ("prepare", c),
        Command::Activate(c) => ("activate", c),
        Command::Finish(c) => ("finish", c),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(call(step, &connection)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn call(step: &str, connection: &Connection) -> Result<String, String> {
    let flag = |value: &Option<PathBuf>, env: &str| {
        value.clone().or_else(|| {
            std::env::var_os(env)
                .filter(|v| !v.is_empty())
                .map(Into::into)
        })
    };
    let url = connection
        .control
        .clone()
        .or_else(|| std::env::var("MESHGATE_CONTROL").ok())
        .filter(|u| !u.is_empty())
        .ok_or("--control URL (or MESHGATE_CONTROL) is required")?;
    let url = if url.contains("://") {
        url
    } else {
        format!("https://{url}")
    };
    let ca = flag(&connection.control_ca, "MESHGATE_CONTROL_CA")
        .ok_or("--control-ca FILE (or MESHGATE_CONTROL_CA) is required")?;
    let token_file = flag(&connection.token_file, "MESHGATE_TOKEN_FILE")
        .ok_or("--token-file FILE (or MESHGATE_TOKEN_FILE) is required")?;
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let pem = read(&ca)?;
    let token = String::from_utf8_lossy(&read(&token_file)?)
        .trim()
        .to_owned();
    let channel = Channel::from_shared(url.clone())
        .map_err(|e| format!("{url}: {e}"))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
        .map_err(|e| format!("{url}: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let mut request = Request::new(CaRotation { step: step.into() });
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token file holds characters a header cannot")?;
    request.metadata_mut().insert("authorization", value);
    let status = IdentityClient::new(channel)
        .rotate_ca(request)
        .await
        .map_err(|s| format!("{} ({:?})", s.message(), s.code()))?
        .into_inner();
    let mut text = format!(
        "phase: {}\nbundle version: {}\n",
        status.phase, status.bundle_version
    );
    for root in &status.roots {
        text.push_str(&format!("root: {root}\n"));
    }
    Ok(text)
}
