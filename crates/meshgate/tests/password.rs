//! `meshgate keys password`: reads a password from stdin, prints an argon2id hash
//! that verifies the password, validates as a consumer's Basic credential, and is
//! fresh each time; the password itself in config is refused.

use std::io::Write;
use std::process::{Command, Stdio};

use meshgate_policy::basic_auth::StoredHash;

const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

/// Runs `meshgate keys password` with `input` on stdin: (success, stdout, stderr).
fn hash(input: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(["keys", "password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meshgate");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn password_hashes_verify_and_validate() {
    let (ok, out, _) = hash("correct horse battery staple\n");
    assert!(ok);
    let printed = out.trim_end();
    assert_eq!(out.lines().count(), 1, "only the hash on stdout: {out}");
    assert!(printed.starts_with("$argon2id$v=19$"), "{printed}");
    let stored = StoredHash::parse(printed).unwrap();
    assert!(
        stored.verify(b"correct horse battery staple"),
        "the newline is not part of it"
    );
    assert!(!stored.verify(b"correct horse battery staple\n"));

    let (_, again, _) = hash("correct horse battery staple\n");
    assert_ne!(again, out, "a fresh salt each time");

    let dir = std::env::temp_dir().join(format!("meshgate-password-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    let validates = |credential: &str| {
        std::fs::write(
            &file,
            format!(
                "consumers: [{{name: alice, basicAuth: {{passwordHash: \"{credential}\"}}}}]\n"
            ),
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
    assert!(validates(printed), "the printed hash is a valid credential");
    assert!(
        !validates("correct horse battery staple"),
        "a plain password is refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_empty_password_is_refused() {
    let (ok, out, err) = hash("\n");
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("the password is empty"), "{err}");
}
