//! The meshgate binary: parses the command line and hands off to a role.
//! Thin by design; the work lives in the library crates.

mod control;
mod demo;
mod explain;
mod gateway;
mod intercept;
mod mesh_ca;
mod operator;
mod run;
mod sidecar;
mod signals;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists instead of glibc's arenas, whose
/// consolidation and cross-thread frees (records built on a worker, freed by the
/// access-log writer) cost ~10 % of the proxy's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meshgate",
    version,
    about = "API gateway and service mesh in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file.
    Run {
        /// Config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a config file; print every error with file:line:col and field path.
    Validate {
        /// Config file (YAML).
        file: PathBuf,
    },
    /// Start demo backends and a gateway on embedded defaults; print what to curl.
    Demo {
        /// Port for the gateway (0: any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Show what the gateway would do with a request: the route that matches (and
    /// why earlier candidates did not), each policy's verdict and reason, and where
    /// the request would go. Nothing is sent.
    Explain {
        /// Config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The request: `'GET https://api.example.com/orders/7'` (method optional).
        request: String,
        /// A request header, `-H 'name: value'`; repeatable.
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// Listener to use. Default: the one on the URL's port, else the first.
        #[arg(long)]
        listener: Option<String>,
        /// Client address the request comes from (for IP rules and limits).
        #[arg(long, default_value = "127.0.0.1:40000")]
        client: std::net::SocketAddr,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Run a control plane (`-c control.yaml`): config store, gRPC API over TLS
    /// for proxies and operators.
    Control {
        /// Control-plane config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a gateway fed by a control plane (last-good cache in --data-dir).
    Gateway(gateway::Args),
    /// Run a mesh sidecar beside one workload: inbound mTLS to the app, outbound
    /// routes to the other mesh services, config and identity from a control plane.
    Sidecar(Box<sidecar::Args>),
    /// Transparent-interception iptables rules on their own (dev/init step).
    #[command(subcommand, hide = true)]
    Intercept(intercept::Command),
    /// Mesh CA rotation steps on a running control plane (operator token).
    #[command(subcommand, name = "mesh-ca")]
    MeshCa(mesh_ca::Command),
    #[command(flatten)]
    Operator(operator::Command),
    /// API key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run a demo echo backend (answers with a JSON echo of each request).
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: std::net::SocketAddr,
        /// Name the backend reports in its echo.
        #[arg(long, default_value = "echo")]
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random API key (give it to the consumer) and its hash (put it in
    /// `consumers[].apiKeys`).
    Generate,
    /// Read a password from stdin and print its argon2id hash (put it in
    /// `consumers[].basicAuth.passwordHash`).
    Password,
}

/// `meshgate keys password`: the hash goes to stdout alone, so it can be captured.
fn password_hash() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
        eprintln!("reading the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match meshgate_policy::basic_auth::hash_password_input(&input) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run::run_file(&config),
        Command::Validate { file } => validate(&file),
        Command::Explain {
            config,
            request,
            headers,
            listener,
            client,
        } => explain::run(explain::Args {
            file: &config,
            request: &request,
            headers: &headers,
            listener: listener.as_deref(),
            client,
        }),
        Command::Demo { port } => demo::run(port),
        Command::Echo { listen, name } => demo::echo(listen, &name),
        Command::Keys {
            command: KeysCommand::Generate,
        } => match meshgate_policy::credentials::generate_api_key() {
            Ok(key) => {
                println!("key:  {key}");
                println!("hash: {}", meshgate_policy::credentials::hash_api_key(&key));
                eprintln!(
                    "Give the key to the consumer; put only the hash in consumers[].apiKeys."
                );
                ExitCode::SUCCESS
            }
            Err(_) => {
                eprintln!("the system random generator failed");
                ExitCode::FAILURE
            }
        },
        Command::Keys {
            command: KeysCommand::Password,
        } => password_hash(),
        Command::Operator(command) => operator::run(command),
        Command::Control { config } => control::run(&config),
        Command::Gateway(args) => gateway::run(args),
        Command::Sidecar(args) => sidecar::run(*args),
        Command::Intercept(command) => intercept::run(command),
        Command::MeshCa(command) => mesh_ca::run(command),
        Command::Schema => {
            println!("{}", meshgate_config::json_schema());
            ExitCode::SUCCESS
        }
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    let src = match meshgate_config::read_file(file) {
        Ok(src) => src,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let name = file.display().to_string();
    match meshgate_config::parse_str(&src, &name) {
        Ok(cfg) => {
            let warnings = meshgate_config::warnings(&cfg, &src, &name);
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: valid ({} listeners, {} routes, {} services, {} policies{})",
                file.display(),
                cfg.listeners.len(),
                cfg.routes.len(),
                cfg.services.len(),
                cfg.policies.len(),
                match warnings.len() {
                    0 => String::new(),
                    n => format!("; {n} warning(s)"),
                }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}
