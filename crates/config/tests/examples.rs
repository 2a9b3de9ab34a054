//! Every runnable config in `examples/` and the bench configs stays valid.

#[test]
fn every_example_validates() {
    // Read at run time: a test binary reused from another checkout of the same
    // target dir must still look at this checkout's files.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let root = std::path::Path::new(&manifest).join("../..");
    let mut checked = 0;
    for dir in ["examples", "bench"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            // Control-plane configs (examples/control.yaml) are another format,
            // checked by meshgate-control's own tests.
            let control = std::fs::read_to_string(&path)
                .is_ok_and(|s| s.starts_with("# meshgate control config"));
            if path.extension().is_some_and(|e| e == "yaml") && !control {
                meshgate_config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "found only {checked} configs");
}
