//! Loading a document: YAML → model (serde-saphyr, field path via
//! serde_path_to_error), then semantic validation; every error located.

use std::path::Path;

use crate::locate::PathIndex;
use crate::validate::validate;
use crate::{Config, ConfigError, ConfigErrors};

/// Reads and checks a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError { file: file.clone(), line: 0, column: 0, path: String::new(), message: format!("cannot read: {e}") }])
    })?;
    parse_str(&src, &file)
}

/// Parses and checks a document; `file` names it in errors.
pub fn parse_str(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    let config = deserialize(src, file)?;
    let issues = validate(&config);
    if issues.is_empty() {
        return Ok(config);
    }
    let index = PathIndex::build(src);
    Err(ConfigErrors(
        issues
            .into_iter()
            .map(|issue| {
                let (line, column) = index.locate(&issue.path);
                ConfigError { file: file.to_owned(), line, column, path: issue.path, message: issue.message }
            })
            .collect(),
    ))
}

fn deserialize(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut field_path = String::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(src, options, |de| {
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            field_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = match e.location() {
            Some(loc) if loc.line() > 0 => (loc.line() as usize, loc.column() as usize),
            _ => PathIndex::build(src).locate(&field_path),
        };
        let path = if field_path == "." { String::new() } else { field_path };
        ConfigErrors(vec![ConfigError { file: file.to_owned(), line, column, path, message: plain_message(&e) }])
    })
}

/// serde-saphyr's message without its own location suffix (we print ours).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_error(src: &str) -> String {
        parse_str(src, "t.yaml").unwrap_err().0[0].to_string()
    }

    #[test]
    fn type_errors_carry_location_and_path() {
        let src = "listeners:\n  - name: a\n    address: 127.0.0.1:1\nroutes:\n  - name: r\n    matches:\n      - path: {type: Prefix, value: /x}\n";
        println!("{}", first_error(src));
        let src = "routes:\n  - name: r\n    bogus: 1\n";
        println!("{}", first_error(src));
        let src = "routes:\n  - name: r\n    timeouts:\n      request: 5\n";
        println!("{}", first_error(src));
        let src = "services:\n  - name: s\n    endpoints:\n      - {address: a:1, wieght: 2}\n";
        println!("{}", first_error(src));
        let src = "listeners:\n  - name: a\n    address: nope\n";
        println!("{}", first_error(src));
        let src = "listeners: [\n";
        println!("{}", first_error(src));
    }
}
