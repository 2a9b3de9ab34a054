//! Checks of `basicAuth` policies and consumer Basic credentials: the stored hash
//! must be an argon2 (PHC) or bcrypt hash, never a password; user names are
//! unique and usable in the `user:password` form of RFC 7617.

use crate::Config;
use crate::model::BasicAuthPolicy;
use crate::validate::Issues;

use super::super::syntax;

const HASH_HELP: &str = "expected an argon2 hash ($argon2id$v=19$m=…) or a bcrypt hash ($2b$…), \
     as printed by `meshgate keys password` (never the password itself)";

/// Checks the settings at `at` (e.g. `policies[3].basicAuth`).
pub(super) fn check(at: &str, p: &BasicAuthPolicy, config: &Config, issues: &mut Issues) {
    if p.realm.is_empty() {
        issues.add(format!("{at}.realm"), "must not be empty");
    } else if p
        .realm
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        issues.add(
            format!("{at}.realm"),
            format!(
                "{:?} must not contain quotes, backslashes or control characters \
                 (it is sent in a quoted WWW-Authenticate parameter)",
                p.realm
            ),
        );
    }
    for (field, name) in [
        ("consumerHeader", &p.consumer_header),
        ("groupsHeader", &p.groups_header),
    ] {
        if let Some(msg) = syntax::header_name(name) {
            issues.add(format!("{at}.{field}"), msg);
        }
    }
    // User names are a property of the consumers, but only matter when a BasicAuth
    // policy exists: the first one reports them, so they are reported once.
    let first = config
        .policies
        .iter()
        .position(|p| p.basic_auth.is_some())
        .map(|i| format!("policies[{i}].basicAuth"));
    if first.as_deref() == Some(at) {
        check_usernames(config, issues);
    }
}

/// Effective user names (`username`, else the consumer's name) must be unique and
/// free of `:`.
fn check_usernames(config: &Config, issues: &mut Issues) {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, c) in config.consumers.iter().enumerate() {
        let Some(b) = &c.basic_auth else { continue };
        let (user, at) = match &b.username {
            Some(u) => (u.as_str(), format!("consumers[{i}].basicAuth.username")),
            None => (c.name.as_str(), format!("consumers[{i}].name")),
        };
        if b.username.is_none() && user.contains(':') {
            issues.add(
                at,
                format!(
                    "{user:?} contains \":\" so it cannot be a Basic user name; \
                     set basicAuth.username"
                ),
            );
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(u, _)| *u == user) {
            issues.add(
                at,
                format!("duplicate Basic user name {user:?} (first at consumers[{first}])"),
            );
        } else {
            seen.push((user, i));
        }
    }
}

/// Checks a consumer's `basicAuth` credential at `at`.
pub(super) fn check_credential(at: &str, c: &crate::model::BasicCredential, issues: &mut Issues) {
    if let Some(u) = &c.username {
        if u.is_empty() {
            issues.add(format!("{at}.username"), "must not be empty");
        } else if u.contains(':') || u.chars().any(char::is_control) {
            issues.add(
                format!("{at}.username"),
                format!("{u:?} must not contain \":\" or control characters (RFC 7617)"),
            );
        }
    }
    if !is_argon2(&c.password_hash) && !is_bcrypt(&c.password_hash) {
        issues.add(format!("{at}.passwordHash"), HASH_HELP);
    }
}

/// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (version optional), salt and hash
/// in unpadded base64.
fn is_argon2(h: &str) -> bool {
    let parts: Vec<&str> = h.split('$').collect();
    let rest = match parts.as_slice() {
        ["", alg, rest @ ..] if ["argon2id", "argon2i", "argon2d"].contains(alg) => rest,
        _ => return false,
    };
    let rest = match rest {
        [v, rest @ ..] if v.starts_with("v=") => {
            if !matches!(*v, "v=16" | "v=19") {
                return false;
            }
            rest
        }
        r => r,
    };
    let [params, salt, hash] = rest else {
        return false;
    };
    let params_ok = ["m", "t", "p"].iter().all(|k| {
        params.split(',').any(|kv| {
            kv.split_once('=').is_some_and(|(pk, v)| {
                pk == *k && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
            })
        })
    });
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    params_ok && b64(salt) && b64(hash)
}

/// `$2b$<two-digit cost 04-31>$<53 characters of bcrypt's base64>`.
fn is_bcrypt(h: &str) -> bool {
    let Some(rest) = ["$2b$", "$2a$", "$2y$"]
        .iter()
        .find_map(|p| h.strip_prefix(p))
    else {
        return false;
    };
    let Some((cost, body)) = rest.split_once('$') else {
        return false;
    };
    cost.len() == 2
        && cost.parse::<u8>().is_ok_and(|c| (4..=31).contains(&c))
        && body.len() == 53
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_forms() {
        assert!(is_argon2(
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$cA0bNL5Fv1HRDe8w0BXkIhHKRKpFdCqxJZ5pLLxJg4A"
        ));
        assert!(is_argon2("$argon2i$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA"));
        assert!(!is_argon2("$argon2id$v=19$m=19456,t=2$c2FsdA$aGFzaA"));
        assert!(!is_argon2("$argon2id$v=19$m=1,t=2,p=1$c2FsdA=$aGFzaA"));
        assert!(!is_argon2("hunter2"));
        assert!(is_bcrypt(
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
        ));
        assert!(!is_bcrypt(
            "$2b$3$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
        ));
        assert!(!is_bcrypt(
            "$2x$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
        ));
        assert!(!is_bcrypt("$2b$12$tooshort"));
    }
}
