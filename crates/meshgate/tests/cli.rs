//! The command line as a user meets it: `--version`, `--help` for every subcommand,
//! `validate` on good and bad files (located `FILE:LINE:COL: path: message` lines),
//! `schema` as JSON, and `run` refusing an invalid config without ever listening.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Proc, TempDir};

fn meshgate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run meshgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GOOD: &str = "listeners:\n  - {name: web, address: \"127.0.0.1:1\"}\n\
                    routes:\n  - name: r\n    backendRefs: [{name: orders}]\n\
                    services:\n  - {name: orders, endpoints: [\"127.0.0.1:9\"]}\n";

#[test]
fn version_prints_the_package_version() {
    let out = meshgate(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!("meshgate {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_works_for_every_subcommand() {
    let top = meshgate(&["--help"]);
    assert!(top.status.success(), "{top:?}");
    let top = text(&top.stdout);
    let cases = [
        ("run", "--config <FILE>"),
        ("validate", "<FILE>"),
        ("demo", "--port <PORT>"),
        ("schema", "JSON Schema"),
    ];
    for (sub, expect) in cases {
        assert!(top.contains(sub), "top-level help lacks {sub}:\n{top}");
        let out = meshgate(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help: {out:?}");
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("Usage: meshgate {sub}")),
            "{sub}:\n{help}"
        );
        assert!(
            help.contains(expect),
            "{sub} help lacks {expect:?}:\n{help}"
        );
    }
    // And an unknown subcommand is a usage error, not a silent success.
    let out = meshgate(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn validate_accepts_a_good_file() {
    let dir = TempDir::new("cli-good");
    let file = dir.write("good.yaml", GOOD);
    let out = meshgate(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: valid (1 listeners, 1 routes, 1 services, 0 policies)\n",
            file.display()
        )
    );
}

/// Runs `validate` on `yaml` and returns the file name and stderr lines.
fn validate_bad(yaml: &str) -> (String, Vec<String>) {
    let dir = TempDir::new("cli-bad");
    let file = dir.write("bad.yaml", yaml);
    let out = meshgate(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let lines = text(&out.stderr).lines().map(str::to_owned).collect();
    (file.display().to_string(), lines)
}

#[test]
fn validate_reports_an_unknown_field_with_its_location() {
    let yaml = "services:\n  - name: s\n    endpoints:\n      - {address: \"a:1\", wieght: 2}\n";
    let (file, lines) = validate_bad(yaml);
    assert_eq!(
        lines,
        [
            format!(
                "{file}:4:26: services[0].endpoints[0].wieght: unknown field `wieght`, expected one of address, weight"
            ),
            format!("{file}: 1 error(s)"),
        ]
    );
}

#[test]
fn validate_reports_every_semantic_error_with_its_location() {
    let yaml =
        GOOD.replace("[{name: orders}]", "[{name: ordrs}]") + "  - {name: empty, endpoints: []}\n";
    let (file, lines) = validate_bad(&yaml);
    assert_eq!(
        lines,
        [
            format!(
                "{file}:5:26: routes[0].backendRefs[0].name: unknown service \"ordrs\" (did you mean \"orders\"?)"
            ),
            format!("{file}:8:30: services[1].endpoints: must list at least one endpoint"),
            format!("{file}: 2 error(s)"),
        ]
    );
}

#[test]
fn schema_is_json_describing_routes() {
    let out = meshgate(&["schema"]);
    assert!(out.status.success(), "{out:?}");
    let schema: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("schema is valid JSON");
    let props = schema["properties"]
        .as_object()
        .expect("a `properties` object");
    for key in ["routes", "services", "listeners"] {
        assert!(props.contains_key(key), "no {key} in {props:?}");
    }
}

#[tokio::test]
async fn run_with_an_invalid_config_exits_1_without_listening() {
    let dir = TempDir::new("cli-run-bad");
    let port = meshgate_testkit::free_port();
    let yaml = GOOD
        .replace("127.0.0.1:1", &format!("127.0.0.1:{port}"))
        .replace("[{name: orders}]", "[{name: ordrs}]");
    let file = dir.write("bad.yaml", &yaml);
    let mut gw = Proc::spawn(&dir, &["run", "-c", file.to_str().unwrap()]);
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("run exits on a bad config");
    assert_eq!(status.code(), Some(1));
    let stderr = gw.stderr_text();
    let want = format!(
        "{}:5:26: routes[0].backendRefs[0].name: unknown service \"ordrs\" (did you mean \"orders\"?)",
        file.display()
    );
    assert!(
        stderr.lines().any(|l| l == want),
        "want {want:?} in:\n{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(gw.stdout_text().is_empty());
    assert!(common::refused(([127, 0, 0, 1], port).into()).await);
}

#[tokio::test]
async fn run_on_a_busy_port_exits_1_naming_the_listener() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().unwrap();
    let dir = TempDir::new("cli-run-busy");
    let file = dir.write("busy.yaml", &GOOD.replace("127.0.0.1:1", &addr.to_string()));
    let mut gw = Proc::spawn(&dir, &["run", "-c", file.to_str().unwrap()]);
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("run exits when it cannot bind");
    assert_eq!(status.code(), Some(1));
    let stderr = gw.stderr_text();
    let want = format!("cannot listen on {addr} (listener \"web\"): ");
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "want {want:?} in:\n{stderr}"
    );
}
