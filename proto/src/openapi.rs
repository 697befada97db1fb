//! The wire types' schemas for the controller's OpenAPI description, where serde's JSON is written by hand
//! (each such type is a string of a given form). Only with the `openapi` feature: a phone carries none of it.

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

/// A string schema: what it is, an example, and its pattern where the form has one.
pub fn text(description: &str, example: &str, pattern: Option<&str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([example])
        .pattern(pattern)
        .into()
}

/// Implements `utoipa::ToSchema` for a type whose JSON is a string: `text_schema!(Type, "what it is",
/// "example", Some("pattern"))`.
#[macro_export]
macro_rules! text_schema {
    ($ty:ty, $description:expr, $example:expr, $pattern:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::openapi::text($description, $example, $pattern)
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

text_schema!(
    crate::wire::DeviceId,
    "A device's id: 1-64 characters of A-Z a-z 0-9 . _ -",
    "phone-0042",
    Some("^[A-Za-z0-9._-]{1,64}$")
);
text_schema!(
    crate::SoftwareVersion,
    "A software version as the bind header writes it: major, release, and dotted numbers",
    "V3 R3.18.0",
    None
);
text_schema!(
    crate::KeyId,
    "A signing key's id: 16 hex digits of its public key's hash",
    "3d4017c3e843895a",
    Some("^[0-9a-f]{16}$")
);
