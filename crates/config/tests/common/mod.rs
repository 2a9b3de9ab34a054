//! Helpers shared by the config integration tests.

// Each test crate uses a subset of these.
#![allow(dead_code, unused_macros)]

use meshgate_config::parse_str;

/// Strips the common leading indentation and the first newline, so YAML can be
/// written indented in the table. Lines and columns refer to the stripped text.
pub fn dedent(src: &str) -> String {
    let src = src.strip_prefix('\n').unwrap_or(src);
    let indent = src
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min();
    let indent = indent.unwrap_or(0);
    src.lines()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect()
}

/// The rendered errors of a document that must be rejected.
pub fn errors(src: &str) -> String {
    match parse_str(&dedent(src), "t.yaml") {
        Ok(_) => panic!("accepted:\n{}", dedent(src)),
        Err(e) => e.to_string(),
    }
}

/// Appends a valid service `s` after the given lines (so their positions stay put),
/// indented like the rows of the table.
macro_rules! with_s {
    ($src:literal) => {
        concat!(
            $src,
            "services:\n          - {name: s, endpoints: [\"10.0.0.1:80\"]}\n"
        )
    };
}

/// Checks every (document, expected errors) row and reports all rows that differ.
pub fn check_table(table: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (i, (src, want)) in table.iter().enumerate() {
        let got = errors(src);
        if got != *want {
            failures.push(format!(
                "row {i}:\n{}\n  want: {want}\n  got:  {got}",
                dedent(src)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n\n{}",
        failures.len(),
        table.len(),
        failures.join("\n\n")
    );
}
