//! `meshgate keys generate`: a fresh key and its hash; the hash validates as a
//! consumer credential and matches the key.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

fn generate() -> (String, String) {
    let out = Command::new(BIN)
        .args(["keys", "generate"])
        .output()
        .expect("run meshgate");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{text}"))
    };
    (field("key:"), field("hash:"))
}

#[test]
fn generated_keys_are_fresh_and_their_hash_is_a_valid_credential() {
    let (key, hash) = generate();
    let (key2, _) = generate();
    assert_ne!(key, key2);
    assert!(key.starts_with("mgk_"), "{key}");
    assert_eq!(hash, meshgate_policy::credentials::hash_api_key(&key));
    let dir = std::env::temp_dir().join(format!("meshgate-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    let validates = |credential: &str| {
        std::fs::write(
            &file,
            format!("consumers: [{{name: acme, apiKeys: [\"{credential}\"]}}]\n"),
        )
        .unwrap();
        Command::new(BIN)
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(validates(&hash), "the printed hash is a valid credential");
    assert!(!validates(&key), "a plain key in config is refused");
    let _ = std::fs::remove_dir_all(&dir);
}
