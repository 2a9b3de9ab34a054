//! The control-plane config: defaults, the example file, located errors, scopes
//! and the generated CA.

use super::*;

fn errors(src: &str) -> String {
    parse_str(src, "c.yaml").unwrap_err().to_string()
}

#[test]
fn minimal_config_takes_the_defaults() {
    let c = parse_str("dataDir: /var/lib/meshgate\n", "c.yaml").unwrap();
    assert_eq!(c.listen, "127.0.0.1:15010".parse().unwrap());
    assert!(matches!(
        c.store,
        StoreConfig::Embedded(EmbeddedConfig { keep: 20 })
    ));
    assert!(c.tokens.is_empty() && c.admin.is_none() && c.bootstrap.is_none());
    assert!(c.auto_rollback().is_none());
    assert!(!c.replica().is_empty());
}

#[test]
fn the_example_loads_and_resolves_paths() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let file = Path::new(&manifest).join("../../examples/control.yaml");
    let src = std::fs::read_to_string(&file).unwrap();
    assert!(
        src.starts_with(MARKER),
        "the example carries the marker line"
    );
    let c = load_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.data_dir.is_absolute());
    assert!(
        c.bootstrap
            .as_ref()
            .unwrap()
            .value
            .ends_with("quickstart.yaml")
    );
    assert_eq!(c.tokens.len(), 3);
    assert_eq!(c.tokens[0].value.scope(), Scope::Operator);
    assert_eq!(
        c.tokens[2].value.scope(),
        Scope::Registrar {
            services: vec!["orders".into()]
        }
    );
    let rollback = c.auto_rollback().unwrap();
    assert_eq!(rollback.window, std::time::Duration::from_secs(30));
    assert_eq!(c.admin.unwrap().listen.port(), 15011);
}

#[test]
fn etcd_store_and_scopes() {
    let src = "dataDir: d\nstore:\n  etcd: {endpoints: [\"http://127.0.0.1:2379\"]}\ntokens:\n  - {name: gw, token: s3cret, scope: gateway}\n  - {name: sc, token: t, scope: sidecar, services: [orders]}\n";
    let c = parse_str(src, "c.yaml").unwrap();
    let StoreConfig::Etcd(etcd) = &c.store else {
        panic!("etcd")
    };
    assert_eq!(etcd.prefix, "/meshgate");
    assert_eq!(etcd.keep, 20);
    let tokens = c.tokens().unwrap();
    assert_eq!(tokens.0[0].secret, "s3cret");
    assert!(tokens.0[0].scope.allows_proxy("gateway", ""));
    assert!(tokens.0[1].scope.allows_proxy("sidecar", "orders"));
    assert!(!tokens.0[1].scope.allows_proxy("sidecar", "users"));
}

#[test]
fn errors_are_located() {
    let cases = [
        (
            "dataDir: d\nlisten: nope\n",
            "c.yaml:2:9: listen: invalid socket address syntax",
        ),
        (
            "dataDir: d\nbogus: 1\n",
            "c.yaml:2:1: bogus: unknown field `bogus`",
        ),
        ("listen: 127.0.0.1:1\n", "missing field `dataDir`"),
        (
            "dataDir: d\ntokens:\n  - {name: a, scope: operator}\n",
            "c.yaml:3:5: tokens[0]: needs tokenFile (or token)",
        ),
        (
            "dataDir: d\ntokens:\n  - {name: a, token: x, scope: admin}\n",
            "c.yaml:3:32: tokens[0].scope: unknown variant `admin`",
        ),
        (
            "dataDir: d\ntokens:\n  - {name: a, token: x, scope: gateway}\n  - {name: a, token: y, scope: operator, services: [s]}\n",
            "c.yaml:4:5: tokens[1].services: only sidecar and registrar tokens are limited to services\nc.yaml:4:5: tokens[1].name: duplicate token name \"a\"",
        ),
        (
            "dataDir: d\nstore:\n  etcd: {endpoints: [\"https://e:2379\"]}\n",
            "c.yaml:3:21: store.etcd.endpoints[0]: \"https://e:2379\": must start with http://",
        ),
        (
            "dataDir: d\ntls: {certFile: c.pem}\n",
            "c.yaml: tls: certFile and keyFile go together",
        ),
    ];
    for (src, want) in cases {
        let got = errors(src);
        assert!(got.contains(want), "{src}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn token_files_are_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("op.token"), "abc123\n").unwrap();
    let file = dir.path().join("control.yaml");
    std::fs::write(
        &file,
        "dataDir: data\ntokens: [{name: op, tokenFile: op.token, scope: operator}]\n",
    )
    .unwrap();
    let c = load_file(&file).unwrap();
    assert_eq!(c.data_dir, dir.path().join("data"));
    assert_eq!(c.tokens().unwrap().0[0].secret, "abc123");
    std::fs::remove_file(dir.path().join("op.token")).unwrap();
    let e = c.tokens().unwrap_err().to_string();
    assert!(e.starts_with("token \"op\": cannot read "), "{e}");
}

#[test]
fn the_generated_ca_is_kept_and_the_serving_cert_follows_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let first = tls::generated(dir.path(), &names).unwrap();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    assert_eq!(
        first.ca_file.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the CA key is private");

    let again = tls::generated(dir.path(), &["cp.example".to_owned()]).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("ca.pem")).unwrap(),
        ca,
        "CA kept"
    );
    assert_ne!(again.cert_pem, first.cert_pem, "serving cert reissued");
    assert!(tls::generated(dir.path(), &["bad name!".to_owned()]).is_err());
}
