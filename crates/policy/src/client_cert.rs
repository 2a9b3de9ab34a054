//! The `ClientCert` policy: the caller is who the client certificate says, once the
//! listener's `tls.clientAuth` has verified it (chain, validity). This policy only
//! decides which verified certificates are accepted (`allow`), which certificate
//! field names the consumer (`consumerFrom`), and tells the upstream, after removing
//! whatever identity headers the client sent itself.
//!
//! Nothing here runs unless the policy is configured; on its path a request costs
//! a few string comparisons and, for `subjectCN`, one read of the subject string.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use meshgate_config as config;
use meshgate_core::filter::{Consumer, Filter, Flow, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;
use meshgate_core::server::tls::ClientCert as Cert;

use config::ClientCertIdentity as Field;

use crate::api_key::KnownConsumer;
use crate::identity::{IdentityHeaders, header_name};

/// Compiles the policy.
pub fn compile(
    c: &config::ClientCertPolicy,
    env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(ClientCert::compile(c, &env.config.consumers)?))
}

#[derive(Debug)]
pub struct ClientCert {
    from: Field,
    allow: Vec<Allow>,
    require_consumer: bool,
    /// The policy's `groups`, for callers that are not a `consumers:` entry.
    groups: Vec<String>,
    /// `consumers:` entries by name, the policy's groups appended to theirs.
    known: HashMap<Box<str>, Arc<KnownConsumer>>,
    identity: IdentityHeaders,
    subject_header: HeaderName,
}

/// One `allow` entry, compiled: the subject in the canonical RFC 4514 form the TLS
/// layer writes certificate subjects in, so comparing is string equality.
#[derive(Debug, Default)]
struct Allow {
    subject: Option<String>,
    uri: Option<Text>,
    dns: Option<Text>,
}

#[derive(Debug)]
enum Text {
    /// URIs: exactly this.
    Exact(String),
    /// DNS names: this, ignoring ASCII case.
    ExactNoCase(String),
    /// URIs: starting with this.
    Prefix(String),
    /// DNS names: ending with this (which starts with `.`), ignoring ASCII case.
    Suffix(String),
}

impl Text {
    fn accepts(&self, value: &str) -> bool {
        match self {
            Text::Exact(want) => value == want,
            Text::ExactNoCase(want) => value.eq_ignore_ascii_case(want),
            Text::Prefix(p) => value.starts_with(p.as_str()),
            Text::Suffix(s) => {
                value.len() > s.len()
                    && value
                        .get(value.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            }
        }
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Text::Exact(v) | Text::ExactNoCase(v) => write!(f, "= {v}"),
            Text::Prefix(v) => write!(f, "prefix {v}"),
            Text::Suffix(v) => write!(f, "suffix {v}"),
        }
    }
}

impl Allow {
    fn compile(m: &config::ClientCertMatch) -> Result<Self, String> {
        let subject = m
            .subject
            .as_deref()
            .map(|s| config::canonical_subject(s).map_err(|e| format!("subject {s:?}: {e}")))
            .transpose()?;
        let uri = match (&m.uri, &m.uri_prefix) {
            (Some(u), _) => Some(Text::Exact(u.clone())),
            (None, Some(p)) => Some(Text::Prefix(p.clone())),
            (None, None) => None,
        };
        let dns = match (&m.dns, &m.dns_suffix) {
            (Some(d), _) => Some(Text::ExactNoCase(d.clone())),
            (None, Some(s)) => Some(Text::Suffix(s.clone())),
            (None, None) => None,
        };
        if subject.is_none() && uri.is_none() && dns.is_none() {
            return Err("an allow entry needs at least one condition".into());
        }
        Ok(Allow { subject, uri, dns })
    }

    fn accepts(&self, cert: &Cert) -> bool {
        self.subject.as_deref().is_none_or(|s| *cert.subject == *s)
            && self
                .uri
                .as_ref()
                .is_none_or(|t| cert.uris.iter().any(|u| t.accepts(u)))
            && self
                .dns
                .as_ref()
                .is_none_or(|t| cert.dns_names.iter().any(|d| t.accepts(d)))
    }

    /// What matched, for `explain`.
    fn describe(&self, cert: &Cert) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.subject {
            parts.push(format!("subject {s}"));
        }
        if let Some(t) = &self.uri
            && let Some(u) = cert.uris.iter().find(|u| t.accepts(u))
        {
            parts.push(format!("URI {u} ({t})"));
        }
        if let Some(t) = &self.dns
            && let Some(d) = cert.dns_names.iter().find(|d| t.accepts(d))
        {
            parts.push(format!("DNS {d} ({t})"));
        }
        parts.join(", ")
    }
}

impl ClientCert {
    pub fn compile(
        c: &config::ClientCertPolicy,
        consumers: &[config::Consumer],
    ) -> Result<Self, String> {
        let allow = c
            .allow
            .iter()
            .enumerate()
            .map(|(i, m)| Allow::compile(m).map_err(|e| format!("allow[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let mut known = HashMap::new();
        for consumer in consumers {
            let mut with_groups = consumer.clone();
            for g in &c.groups {
                if !with_groups.groups.contains(g) {
                    with_groups.groups.push(g.clone());
                }
            }
            known.insert(
                consumer.name.as_str().into(),
                Arc::new(KnownConsumer::new(&with_groups)?),
            );
        }
        Ok(ClientCert {
            from: c.consumer_from,
            allow,
            require_consumer: c.require_consumer,
            groups: c.groups.clone(),
            known,
            identity: IdentityHeaders::compile(&c.consumer_header, &c.groups_header)?,
            subject_header: header_name(&c.subject_header)?,
        })
    }

    /// The consumer name the certificate gives, under `consumerFrom` and the allow
    /// entry that matched (a URI or DNS name that entry accepts comes first).
    fn name_of<'c>(
        &self,
        cert: &'c Cert,
        entry: Option<&Allow>,
    ) -> Option<std::borrow::Cow<'c, str>> {
        use std::borrow::Cow;
        let pick = |values: &'c [String], cond: Option<&Text>| {
            values
                .iter()
                .find(|v| cond.is_none_or(|t| t.accepts(v)))
                .map(|v| Cow::Borrowed(v.as_str()))
        };
        match self.from {
            Field::SubjectCn => config::subject_common_name(&cert.subject).map(Cow::Owned),
            Field::Subject => (!cert.subject.is_empty()).then(|| Cow::Borrowed(&*cert.subject)),
            Field::Uri => pick(&cert.uris, entry.and_then(|e| e.uri.as_ref())),
            Field::Dns => pick(&cert.dns_names, entry.and_then(|e| e.dns.as_ref())),
        }
    }

    /// Refuses, saying why for `explain`.
    fn refuse(cx: &mut RequestCx<'_>, err: ProxyError, why: impl FnOnce() -> String) -> Flow {
        cx.note(why);
        Flow::Reject(err)
    }
}

/// The certificate's names, for `explain`.
fn summary(cert: &Cert) -> String {
    format!(
        "{} (URIs: [{}], DNS: [{}])",
        cert.subject,
        cert.uris.join(", "),
        cert.dns_names.join(", ")
    )
}

impl Filter for ClientCert {
    fn name(&self) -> &'static str {
        "ClientCert"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        // Whatever happens next, the client's own copies of these never go upstream.
        self.identity.strip(&mut req.headers);
        req.headers.remove(&self.subject_header);
        let Some(cert) = cx.client_cert else {
            let scheme = cx.scheme;
            return Self::refuse(cx, ProxyError::MissingCredentials, || {
                if scheme == "https" {
                    "no client certificate: none was presented (or the listener has no \
                     tls.clientAuth)"
                        .into()
                } else {
                    "no client certificate: the connection is plain HTTP".into()
                }
            });
        };
        let entry = if self.allow.is_empty() {
            None
        } else {
            match self.allow.iter().position(|a| a.accepts(cert)) {
                Some(i) => Some(i),
                None => {
                    return Self::refuse(cx, ProxyError::Forbidden, || {
                        format!("certificate {} matches no allow entry", summary(cert))
                    });
                }
            }
        };
        let matched = entry.map(|i| &self.allow[i]);
        let Some(name) = self.name_of(cert, matched) else {
            let from = self.from.as_str();
            return Self::refuse(cx, ProxyError::Forbidden, || {
                format!(
                    "certificate {} has no {from} to name the consumer (consumerFrom: {from})",
                    summary(cert)
                )
            });
        };
        let consumer = match self.known.get(&*name) {
            Some(known) => {
                self.identity
                    .set_values(&mut req.headers, &known.name_value, &known.groups_value);
                known.consumer.clone()
            }
            None if self.require_consumer => {
                return Self::refuse(cx, ProxyError::Forbidden, || {
                    format!(
                        "consumer {name} (from {}) is not a consumers: entry (requireConsumer)",
                        self.from.as_str()
                    )
                });
            }
            None => {
                let consumer = Arc::new(Consumer {
                    name: name.as_ref().into(),
                    groups: self.groups.clone(),
                    claims: None,
                });
                self.identity.set(&mut req.headers, &consumer);
                consumer
            }
        };
        if let Ok(v) = HeaderValue::from_str(&cert.subject) {
            req.headers.insert(self.subject_header.clone(), v);
        }
        cx.note(|| {
            let why = match (entry, matched) {
                (Some(i), Some(a)) => format!("allow[{i}] matched {}", a.describe(cert)),
                _ => "no allow list: any verified certificate".into(),
            };
            format!(
                "consumer {} from {} of certificate {}; {why}",
                consumer.name,
                self.from.as_str(),
                cert.subject
            )
        });
        cx.consumer = Some(consumer);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests;
