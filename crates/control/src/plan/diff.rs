//! Field-by-field difference of two config documents, as JSON values (the model's
//! serde form, so field names are the ones written in YAML and defaults are
//! filled in: writing a default explicitly is no change).
//!
//! Lists of objects that all carry a unique `name` (routes, services, filters'
//! headers…) or `address` (endpoints) are compared by that key, so removing the
//! first item does not show every later one as changed; other lists of objects
//! by position; lists of scalars as whole values.
//!
//! Secrets are never printed: a string (or list of strings) under a field whose
//! name says it holds a secret shows as `(secret)` / `(changed)`; see
//! [`is_secret_field`].

use serde_json::{Map, Value};

/// What happened at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A keyed item or a field appeared; the value (compact, secrets hidden) if
    /// worth showing.
    Added(Option<String>),
    Removed(Option<String>),
    Changed {
        from: String,
        to: String,
    },
    /// A secret changed; its values are not shown.
    SecretChanged,
}

/// One difference, at a path such as `routes[orders].timeouts.request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub path: String,
    pub detail: Detail,
}

/// Does a field with this name hold a secret? Names containing `secret`,
/// `password`, `passphrase`, `token`, `credential`, `apikey` or `privatekey`
/// (case-insensitive) do — unless they end with `env`, `file`, `path`, `header`,
/// `param`, `from`, `name` or `url`, which name *where* a secret is (an
/// environment variable, a file), not the secret. Only string values are hidden:
/// a boolean such as `forwardToken` or `stripCredential` is a setting.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const WHERE: [&str; 8] = [
        "env", "file", "path", "header", "param", "from", "name", "url",
    ];
    const SECRET: [&str; 7] = [
        "secret",
        "password",
        "passphrase",
        "token",
        "credential",
        "apikey",
        "privatekey",
    ];
    !WHERE.iter().any(|w| n.ends_with(w)) && SECRET.iter().any(|s| n.contains(s))
}

fn stringish(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(|i| matches!(i, Value::String(_))),
        _ => false,
    }
}

fn scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Appends the differences between `old` and `new` at `path` to `out`. `field` is
/// the name of the nearest enclosing field (list items inherit their list's).
pub fn diff(path: &str, field: &str, old: &Value, new: &Value, out: &mut Vec<Line>) {
    if old == new {
        return;
    }
    if is_secret_field(field) && (stringish(old) || stringish(new)) {
        out.push(Line {
            path: path.into(),
            detail: Detail::SecretChanged,
        });
        return;
    }
    match (old, new) {
        // An optional setting turned on or off.
        (Value::Null, _) => out.push(Line {
            path: path.into(),
            detail: Detail::Added(Some(render(field, new))),
        }),
        (_, Value::Null) => out.push(Line {
            path: path.into(),
            detail: Detail::Removed(Some(render(field, old))),
        }),
        (Value::Object(a), Value::Object(b)) => diff_objects(path, a, b, out),
        (Value::Array(a), Value::Array(b)) if !(a.iter().all(scalar) && b.iter().all(scalar)) => {
            match list_key(a, b) {
                Some(key) => diff_keyed(path, field, key, a, b, out),
                None => diff_positional(path, field, a, b, out),
            }
        }
        _ => out.push(Line {
            path: path.into(),
            detail: Detail::Changed {
                from: render(field, old),
                to: render(field, new),
            },
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.into()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_objects(path: &str, a: &Map<String, Value>, b: &Map<String, Value>, out: &mut Vec<Line>) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let at = join(path, key);
        match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => diff(&at, key, x, y, out),
            (None, Some(y)) => out.push(Line {
                path: at,
                detail: Detail::Added(Some(render(key, y))),
            }),
            (Some(x), None) => out.push(Line {
                path: at,
                detail: Detail::Removed(Some(render(key, x))),
            }),
            (None, None) => {}
        }
    }
}

/// The field identifying the items of both lists, if every item is an object
/// with a unique string value for it.
fn list_key(a: &[Value], b: &[Value]) -> Option<&'static str> {
    ["name", "address"]
        .into_iter()
        .find(|key| unique_by(a, key) && unique_by(b, key))
}

fn unique_by(items: &[Value], key: &str) -> bool {
    let mut seen = std::collections::HashSet::new();
    items.iter().all(|i| {
        i.get(key)
            .and_then(Value::as_str)
            .is_some_and(|k| seen.insert(k))
    })
}

fn diff_keyed(path: &str, field: &str, key: &str, a: &[Value], b: &[Value], out: &mut Vec<Line>) {
    let by_key = |items: &[Value]| -> std::collections::BTreeMap<String, Value> {
        items
            .iter()
            .filter_map(|i| Some((i.get(key)?.as_str()?.to_owned(), i.clone())))
            .collect()
    };
    let (old, new) = (by_key(a), by_key(b));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let at = format!("{path}[{name}]");
        match (old.get(name), new.get(name)) {
            (Some(x), Some(y)) => diff(&at, field, x, y, out),
            (None, Some(y)) => out.push(Line {
                path: at,
                detail: Detail::Added(rest(field, key, y)),
            }),
            (Some(x), None) => out.push(Line {
                path: at,
                detail: Detail::Removed(rest(field, key, x)),
            }),
            (None, None) => {}
        }
    }
}

/// What to show of an added or removed keyed item: nothing for named items (a
/// route or a policy is too big for one line; its name says which), the other
/// fields of small ones such as endpoints (`{weight: 3}`).
fn rest(field: &str, key: &str, item: &Value) -> Option<String> {
    if key == "name" {
        return None;
    }
    let mut item = item.clone();
    let others = item.as_object_mut()?;
    others.remove(key);
    (!others.is_empty()).then(|| render(field, &item))
}

fn diff_positional(path: &str, field: &str, a: &[Value], b: &[Value], out: &mut Vec<Line>) {
    for i in 0..a.len().max(b.len()) {
        let at = format!("{path}[{i}]");
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => diff(&at, field, x, y, out),
            (None, Some(y)) => out.push(Line {
                path: at,
                detail: Detail::Added(Some(render(field, y))),
            }),
            (Some(x), None) => out.push(Line {
                path: at,
                detail: Detail::Removed(Some(render(field, x))),
            }),
            (None, None) => {}
        }
    }
}

/// A value on one line, YAML-flow style (`{attempts: 2, retryOn: [reset]}`), with
/// secrets replaced by `(secret)`. `field` is the name the value sits under.
pub fn render(field: &str, v: &Value) -> String {
    let mut s = String::new();
    write_value(&mut s, field, v);
    s
}

fn write_value(s: &mut String, field: &str, v: &Value) {
    if is_secret_field(field) && stringish(v) {
        s.push_str("(secret)");
        return;
    }
    match v {
        Value::Null => s.push_str("none"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => s.push_str(&n.to_string()),
        Value::String(text) => write_str(s, text),
        Value::Array(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_value(s, field, item);
            }
            s.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            s.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(key);
                s.push_str(": ");
                write_value(s, key, &map[key]);
            }
            s.push('}');
        }
    }
}

/// Plain when unambiguous (`5s`, `10.0.0.1:80`, `/api`), JSON-quoted otherwise.
fn write_str(s: &mut String, text: &str) {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || "._-/:@*+=".contains(c))
        && !matches!(text, "true" | "false" | "none" | "null")
        && text.parse::<f64>().is_err();
    if plain {
        s.push_str(text);
    } else {
        s.push_str(&Value::String(text.into()).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(old: Value, new: Value) -> Vec<String> {
        let mut out = Vec::new();
        diff("x", "x", &old, &new, &mut out);
        out.iter()
            .map(|l| format!("{}: {:?}", l.path, l.detail))
            .collect()
    }

    #[test]
    fn secret_rule() {
        for name in [
            "apiKeys",
            "passwordHash",
            "clientSecret",
            "cookieSecret",
            "secret",
            "token",
            "privateKeyPem",
            "credentials",
        ] {
            assert!(is_secret_field(name), "{name}");
        }
        for name in [
            "clientSecretEnv",
            "tokenEnv",
            "secretEnv",
            "tokenFrom",
            "keyFile",
            "cookieName",
            "header",
            "publicKeyPem",
            "key",
        ] {
            assert!(!is_secret_field(name), "{name}");
        }
        // The ApiKey policy's settings are named `apiKey`, but they are an object:
        // only string values are hidden, so its fields are checked one by one.
        let out = lines(
            json!({"apiKey": {"header": "a"}}),
            json!({"apiKey": {"header": "b"}}),
        );
        assert_eq!(out, ["x.apiKey.header: Changed { from: \"a\", to: \"b\" }"]);
    }

    #[test]
    fn secrets_never_printed() {
        let out = lines(
            json!({"apiKeys": ["sha256:aa"], "basicAuth": {"passwordHash": "h1", "username": "u"}}),
            json!({"apiKeys": ["sha256:bb"], "basicAuth": {"passwordHash": "h2", "username": "v"}}),
        );
        let all = out.join("\n");
        assert!(
            !all.contains("sha256") && !all.contains("h1") && !all.contains("h2"),
            "{all}"
        );
        assert!(all.contains("x.apiKeys: SecretChanged"), "{all}");
        let shown = render("oidc", &json!({"clientId": "a", "clientSecret": "s3cr3t"}));
        assert_eq!(shown, "{clientId: a, clientSecret: (secret)}");
        // A setting about a secret is not one.
        assert_eq!(
            lines(
                json!({"forwardToken": true}),
                json!({"forwardToken": false})
            )
            .len(),
            1
        );
        assert!(
            lines(
                json!({"forwardToken": true}),
                json!({"forwardToken": false})
            )[0]
            .contains("true")
        );
    }

    #[test]
    fn keyed_and_positional_lists() {
        let out = lines(
            json!([{"name": "a", "v": 1}, {"name": "b", "v": 1}]),
            json!([{"name": "b", "v": 2}, {"name": "c", "v": 1}]),
        );
        assert_eq!(
            out,
            [
                "x[a]: Removed(None)",
                "x[b].v: Changed { from: \"1\", to: \"2\" }",
                "x[c]: Added(None)"
            ]
        );
        let out = lines(json!([{"v": 1}]), json!([{"v": 1}, {"v": 2}]));
        assert_eq!(out, ["x[1]: Added(Some(\"{v: 2}\"))"]);
        let out = lines(json!(["a", "b"]), json!(["a", "b", "c"]));
        assert_eq!(out, ["x: Changed { from: \"[a, b]\", to: \"[a, b, c]\" }"]);
    }

    #[test]
    fn strings_are_quoted_only_when_ambiguous() {
        assert_eq!(render("f", &json!("5s")), "5s");
        assert_eq!(render("f", &json!("a b")), "\"a b\"");
        assert_eq!(render("f", &json!("true")), "\"true\"");
        assert_eq!(render("f", &json!("")), "\"\"");
        assert_eq!(render("f", &json!(null)), "none");
    }
}
