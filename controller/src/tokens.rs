//! Operators' API tokens and roles: the pure part (no store, no HTTP).
//!
//! A token is `bw_` and 43 characters of base64url: 32 random bytes, which say nothing about its name or role.
//! The controller keeps only the token's SHA-256 ([`hash`]), beside its name, role and creation time, and
//! finds a token by that hash. A role is one of three, each allowed what the one below is, and more
//! ([`Role`]); [`required`] says which role each route of the API needs.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Millis;

/// What a token may do. Ordered: each role may do everything the roles before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// Reads: devices, images, rollouts, plans, the audit log, metrics.
    Viewer,
    /// Rollouts and their actions, emergency stops, image uploads.
    Operator,
    /// Tokens (and keys): everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// True if this role may do what `needed` is required for.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health checks, and bind downloads by phones (content-addressed, see ARCHITECTURE.md).
    Public,
    /// A token with at least this role.
    Needs(Role),
    /// A route missing from [`ROUTES`]: refused to everyone, for nobody has said who may call it.
    Unlisted,
}

/// Every route of the HTTP API, by method and route pattern (axum's, e.g. `/api/v1/rollouts/{id}`), and who
/// may call it. The middleware looks a request up here ([`required`]); the OpenAPI description has exactly
/// these operations (a test holds the two together), and says which role each needs from this table.
pub const ROUTES: &[(&str, &str, Access)] = {
    use Access::{Needs, Public};
    use Role::{Admin, Operator, Viewer};
    &[
        ("GET", "/healthz", Public),
        // Content-addressed, and fetched by phones, which hold no token (see ARCHITECTURE.md).
        ("GET", "/binds/{file}", Public),
        // The same for every controller of this version: it is in the source.
        ("GET", "/api/v1/openapi.json", Public),
        // The console's page and files hold no data: everything they show comes through the API, with a token.
        ("GET", "/", Public),
        ("GET", "/console/{file}", Public),
        ("GET", "/metrics", Needs(Viewer)),
        ("GET", "/api/v1/devices", Needs(Viewer)),
        ("GET", "/api/v1/devices/{id}", Needs(Viewer)),
        ("GET", "/api/v1/fleet/summary", Needs(Viewer)),
        ("GET", "/api/v1/whoami", Needs(Viewer)),
        ("GET", "/api/v1/events", Needs(Viewer)),
        ("GET", "/api/v1/images", Needs(Viewer)),
        ("GET", "/api/v1/rollouts", Needs(Viewer)),
        ("GET", "/api/v1/rollouts/{id}", Needs(Viewer)),
        ("GET", "/api/v1/audit", Needs(Viewer)),
        ("GET", "/api/v1/webhooks/deliveries", Needs(Viewer)),
        // A plan changes nothing.
        ("POST", "/api/v1/rollouts/plan", Needs(Viewer)),
        ("POST", "/api/v1/images", Needs(Operator)),
        ("POST", "/api/v1/rollouts", Needs(Operator)),
        ("POST", "/api/v1/rollouts/{id}/{action}", Needs(Operator)),
        ("POST", "/api/v1/stop", Needs(Operator)),
        ("GET", "/api/v1/tokens", Needs(Admin)),
        ("POST", "/api/v1/tokens", Needs(Admin)),
        ("DELETE", "/api/v1/tokens/{name}", Needs(Admin)),
        // It holds the controller's keys.
        ("GET", "/api/v1/backup", Needs(Admin)),
    ]
};

/// The role a request needs, by its method and its route pattern ([`ROUTES`]); `route` `None` is a path no
/// route matches. HEAD is GET's. Another method on a listed route needs the admin role (and gets its 405
/// from there): closed, not open. A route the router has and the table lacks is [`Access::Unlisted`].
pub fn required(method: &str, route: Option<&str>) -> Access {
    let Some(route) = route else {
        // No such endpoint: a 404, but only for those who may read.
        return Access::Needs(Role::Viewer);
    };
    let method = if method == "HEAD" { "GET" } else { method };
    let mut listed = false;
    for (m, r, access) in ROUTES {
        if *r == route {
            if *m == method {
                return *access;
            }
            listed = true;
        }
    }
    if listed {
        Access::Needs(Role::Admin)
    } else {
        Access::Unlisted
    }
}

/// The prefix of every token, so that a leaked one is easy to recognize (and to search for in logs).
pub const PREFIX: &str = "bw_";

/// A new random token: `bw_` and 32 random bytes in unpadded base64url.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of a token, lowercase hex: what the store keeps and looks tokens up by.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A token as the controller stores it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// The token's SHA-256, lowercase hex.
    pub sha256: String,
    pub created_at: Millis,
}

/// A token as `bindwave token list` shows it: no secret, and no hash either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> Self {
        TokenInfo { name: r.name.clone(), role: r.role, created_at: r.created_at }
    }
}

/// Checks a token's name: 1 to 64 of `a-z A-Z 0-9 . _ @ -`, as it appears in the audit log.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a token name: use 1 to 64 letters, digits, '.', '_', '@' or '-' (e.g. alice)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_route_needs_the_role_its_work_needs() {
        use Access::{Needs, Public};
        use Role::{Admin, Operator, Viewer};
        let table = [
            ("GET", Some("/healthz"), Public),
            ("GET", Some("/binds/{file}"), Public),
            ("HEAD", Some("/binds/{file}"), Public),
            ("GET", Some("/metrics"), Needs(Viewer)),
            ("GET", Some("/api/v1/devices"), Needs(Viewer)),
            ("GET", Some("/api/v1/images"), Needs(Viewer)),
            ("GET", Some("/api/v1/rollouts"), Needs(Viewer)),
            ("GET", Some("/api/v1/rollouts/{id}"), Needs(Viewer)),
            ("GET", Some("/api/v1/audit"), Needs(Viewer)),
            ("POST", Some("/api/v1/rollouts/plan"), Needs(Viewer)),
            ("POST", Some("/api/v1/images"), Needs(Operator)),
            ("POST", Some("/api/v1/rollouts"), Needs(Operator)),
            ("POST", Some("/api/v1/rollouts/{id}/{action}"), Needs(Operator)),
            ("POST", Some("/api/v1/stop"), Needs(Operator)),
            ("GET", Some("/api/v1/tokens"), Needs(Admin)),
            ("POST", Some("/api/v1/tokens"), Needs(Admin)),
            ("DELETE", Some("/api/v1/tokens/{name}"), Needs(Admin)),
            ("GET", Some("/api/v1/webhooks/deliveries"), Needs(Viewer)),
            ("GET", Some("/api/v1/openapi.json"), Public),
            ("GET", Some("/api/v1/backup"), Needs(Admin)),
            // Closed by default: another method on a route, or a route nobody listed.
            ("POST", Some("/healthz"), Needs(Admin)),
            ("DELETE", Some("/api/v1/rollouts/{id}"), Needs(Admin)),
            ("GET", Some("/api/v1/keys"), Access::Unlisted),
            ("GET", None, Needs(Viewer)),
        ];
        for (method, route, access) in table {
            assert_eq!(required(method, route), access, "{method} {route:?}");
        }
    }

    #[test]
    fn each_role_allows_what_the_roles_below_it_allow() {
        use Role::{Admin, Operator, Viewer};
        assert!(Admin.allows(Operator) && Admin.allows(Viewer) && Operator.allows(Viewer));
        assert!(!Viewer.allows(Operator) && !Operator.allows(Admin) && !Viewer.allows(Admin));
        for r in Role::VARIANTS {
            assert!(r.allows(*r));
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_their_hash() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        assert!(a[PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
        let h = hash(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a[PREFIX.len()..]));
        assert_eq!(hash(&format!("{a}\n")), h, "a token read from a file with its newline is the same token");
        assert_ne!(hash(&b), h);
        // The published SHA-256 of "abc".
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("alice").is_ok() && check_name("ci-bot@site.b").is_ok());
        for bad in ["", "a b", "alice:admin", &"x".repeat(65), "ünï"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
