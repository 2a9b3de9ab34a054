//! Who may call the control plane: bearer tokens, each with a scope. A proxy token
//! limits which identities its holder may claim (role, services), so a proxy only
//! receives config it is entitled to; an operator token allows plan/apply/rollback
//! and status. Tokens are compared in constant time.

use tonic::{Request, Status};

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `meshgate plan/apply/rollback/status`.
    Operator,
    /// A proxy of `role`; for sidecars, only the listed services (empty: any).
    Proxy { role: String, services: Vec<String> },
    /// Service instances registering themselves (only the listed services; empty: any).
    Registrar { services: Vec<String> },
}

/// A named bearer token.
#[derive(Debug, Clone)]
pub struct Token {
    /// Shown in logs instead of the secret.
    pub name: String,
    pub secret: String,
    pub scope: Scope,
}

/// Every accepted token.
#[derive(Debug, Clone, Default)]
pub struct Tokens(pub Vec<Token>);

impl Tokens {
    /// The token a request carries (`authorization: Bearer …`), or UNAUTHENTICATED.
    pub fn check<T>(&self, request: &Request<T>) -> Result<&Token, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        self.0
            .iter()
            .find(|t| {
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    t.secret.as_bytes(),
                    presented.as_bytes(),
                )
                .is_ok()
            })
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }

    /// The token, if it has operator scope; else PERMISSION_DENIED.
    pub fn operator<T>(&self, request: &Request<T>) -> Result<&Token, Status> {
        let token = self.check(request)?;
        match token.scope {
            Scope::Operator => Ok(token),
            _ => Err(Status::permission_denied(format!(
                "token {:?} is not an operator token",
                token.name
            ))),
        }
    }
}

impl Scope {
    /// May the holder claim to be a proxy of `role` for `service`?
    pub fn allows_proxy(&self, role: &str, service: &str) -> bool {
        match self {
            Scope::Proxy { role: r, services } => {
                r == role && (services.is_empty() || services.iter().any(|s| s == service))
            }
            _ => false,
        }
    }

    /// May the holder register instances of `service`?
    pub fn allows_registration(&self, service: &str) -> bool {
        match self {
            Scope::Registrar { services } => {
                services.is_empty() || services.iter().any(|s| s == service)
            }
            _ => false,
        }
    }
}
