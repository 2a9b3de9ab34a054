//! The meshgate binary: parses the command line and hands off to a role.
//! Thin by design; the work lives in the library crates.

mod demo;
mod run;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Print the JSON Schema of the config file.
    Schema,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run::run_file(&config),
        Command::Validate { file } => validate(&file),
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
        Command::Schema => {
            println!("{}", meshgate_config::json_schema());
            ExitCode::SUCCESS
        }
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    match meshgate_config::load_file(file) {
        Ok(cfg) => {
            println!(
                "{}: valid ({} listeners, {} routes, {} services)",
                file.display(),
                cfg.listeners.len(),
                cfg.routes.len(),
                cfg.services.len()
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
