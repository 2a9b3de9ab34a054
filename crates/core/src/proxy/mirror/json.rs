//! JSON pieces of response diffing: removing `ignoreJsonFields` paths from a value,
//! and finding the first place where two values differ.

use meshgate_config::JsonPathStep;
use serde_json::Value;

/// A parsed `ignoreJsonFields` entry.
pub(super) type Path = Vec<JsonPathStep>;

/// Where two values differ, and the two values there (as JSON text).
#[derive(Debug, PartialEq)]
pub(super) struct Difference {
    /// Dotted path from the root (`$` for the root itself, `$.items.1.price`).
    pub at: String,
    pub primary: String,
    pub shadow: String,
}

/// Removes every field `path` selects from `v`.
pub(super) fn remove(v: &mut Value, path: &[JsonPathStep]) {
    let Some((step, rest)) = path.split_first() else {
        return;
    };
    match (v, step) {
        (Value::Object(map), JsonPathStep::Key(k)) => {
            if rest.is_empty() {
                map.remove(k);
            } else if let Some(child) = map.get_mut(k) {
                remove(child, rest);
            }
        }
        (Value::Object(map), JsonPathStep::Any) => {
            if rest.is_empty() {
                map.clear();
            } else {
                map.values_mut().for_each(|c| remove(c, rest));
            }
        }
        (Value::Array(items), JsonPathStep::Key(k)) => {
            if let Some(child) = k.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                if rest.is_empty() {
                    // Keeps the other elements at their indexes.
                    *child = Value::Null;
                } else {
                    remove(child, rest);
                }
            }
        }
        (Value::Array(items), JsonPathStep::Any) => {
            if rest.is_empty() {
                items.clear();
            } else {
                items.iter_mut().for_each(|c| remove(c, rest));
            }
        }
        _ => {}
    }
}

/// The first difference between `p` and `s`, depth first, object members in the
/// primary's order (then members only the shadow has).
pub(super) fn first_difference(p: &Value, s: &Value) -> Option<Difference> {
    let mut at = String::from("$");
    walk(p, s, &mut at)
}

fn walk(p: &Value, s: &Value, at: &mut String) -> Option<Difference> {
    let here = |at: &str, p: Option<&Value>, s: Option<&Value>| Difference {
        at: at.to_owned(),
        primary: p.map_or("(absent)".into(), Value::to_string),
        shadow: s.map_or("(absent)".into(), Value::to_string),
    };
    match (p, s) {
        (Value::Object(pm), Value::Object(sm)) => {
            for (k, pv) in pm {
                let len = at.len();
                at.push('.');
                at.push_str(k);
                let found = match sm.get(k) {
                    Some(sv) => walk(pv, sv, at),
                    None => Some(here(at, Some(pv), None)),
                };
                at.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            sm.iter()
                .find(|(k, _)| !pm.contains_key(*k))
                .map(|(k, sv)| here(&format!("{at}.{k}"), None, Some(sv)))
        }
        (Value::Array(pa), Value::Array(sa)) => {
            for i in 0..pa.len().max(sa.len()) {
                let len = at.len();
                at.push_str(&format!(".{i}"));
                let found = match (pa.get(i), sa.get(i)) {
                    (Some(pv), Some(sv)) => walk(pv, sv, at),
                    (pv, sv) => Some(here(at, pv, sv)),
                };
                at.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        _ => (p != s).then(|| here(at, Some(p), Some(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::{first_difference, remove};
    use meshgate_config::parse_json_path;
    use serde_json::json;

    fn without(mut v: serde_json::Value, paths: &[&str]) -> serde_json::Value {
        for p in paths {
            remove(&mut v, &parse_json_path(p).unwrap());
        }
        v
    }

    #[test]
    fn removes_paths_and_wildcards() {
        let v = json!({"id": 1, "ts": 2, "items": [{"id": 3, "n": 4}, {"id": 5}], "m": {"a": {"x": 1}, "b": {"x": 2, "y": 3}}});
        assert_eq!(
            without(v, &["$.ts", "id", "items.*.id", "m.*.x", "nope.deeper"]),
            json!({"items": [{"n": 4}, {}], "m": {"a": {}, "b": {"y": 3}}})
        );
        assert_eq!(
            without(json!({"a": [1, 2, 3]}), &["a.1"]),
            json!({"a": [1, null, 3]})
        );
    }

    #[test]
    fn finds_the_first_difference() {
        assert_eq!(
            first_difference(&json!({"a": [1, {"b": 2}]}), &json!({"a": [1, {"b": 2}]})),
            None
        );
        let d =
            first_difference(&json!({"a": [1, {"b": 2}]}), &json!({"a": [1, {"b": "2"}]})).unwrap();
        assert_eq!(
            (d.at.as_str(), d.primary.as_str(), d.shadow.as_str()),
            ("$.a.1.b", "2", "\"2\"")
        );
        let d = first_difference(&json!({"a": 1}), &json!({"a": 1, "z": true})).unwrap();
        assert_eq!((d.at.as_str(), d.primary.as_str()), ("$.z", "(absent)"));
        let d = first_difference(&json!([1]), &json!([1, 2])).unwrap();
        assert_eq!((d.at.as_str(), d.shadow.as_str()), ("$.1", "2"));
        let d = first_difference(&json!(1), &json!("x")).unwrap();
        assert_eq!(d.at, "$");
    }
}
