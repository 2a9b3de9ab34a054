//! Custom bodies for the errors the gateway itself answers (401, 403, 404, 413,
//! 429, 502, 503, 504…), globally or per route.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A templated body for gateway-generated errors.
///
/// The body may use `{{status}}`, `{{reason}}` (e.g. `rate_limited`), `{{message}}`,
/// `{{requestId}}`, `{{route}}`, `{{method}}` and `{{path}}`. Values are escaped
/// for the content type: JSON string escapes for `*json`, HTML entities for `*html`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorResponse {
    /// Statuses this body is used for. Empty: every gateway-generated error.
    #[serde(default)]
    pub statuses: Vec<u16>,
    /// Default `application/json`.
    #[serde(default = "ErrorResponse::default_content_type")]
    pub content_type: String,
    pub body: String,
}

impl ErrorResponse {
    fn default_content_type() -> String {
        "application/json".into()
    }

    /// Template variables a body may use.
    pub const VARIABLES: [&str; 7] = [
        "status",
        "reason",
        "message",
        "requestId",
        "route",
        "method",
        "path",
    ];

    /// The body split into literal text and `{{variable}}`s; an unknown variable or
    /// an unclosed `{{` is an error.
    pub fn template(&self) -> Result<Vec<TemplatePart<'_>>, String> {
        let mut parts = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open..].find("}}") else {
                return Err("`{{` without a closing `}}`".into());
            };
            if open > 0 {
                parts.push(TemplatePart::Text(&rest[..open]));
            }
            let name = rest[open + 2..open + close].trim();
            let var = match name {
                "status" => TemplateVar::Status,
                "reason" => TemplateVar::Reason,
                "message" => TemplateVar::Message,
                "requestId" => TemplateVar::RequestId,
                "route" => TemplateVar::Route,
                "method" => TemplateVar::Method,
                "path" => TemplateVar::Path,
                other => {
                    return Err(format!(
                        "unknown variable {{{{{other}}}}} (known: {})",
                        Self::VARIABLES.join(", ")
                    ));
                }
            };
            parts.push(TemplatePart::Var(var));
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest));
        }
        Ok(parts)
    }
}

/// A piece of an error body template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    Text(&'a str),
    Var(TemplateVar),
}

/// What a template variable stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateVar {
    Status,
    Reason,
    Message,
    RequestId,
    Route,
    Method,
    Path,
}
