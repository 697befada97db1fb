//! Types written as text in JSON and TOML, as operators write them on the command line (`Mon-Fri 19:00-06:00`,
//! `100/min`, `< 0.01`): serialized by their `Display`, read back by their `FromStr`, whose message is serde's.

/// Implements `Serialize` and `Deserialize` for a type with `Display` and `FromStr<Err = String>`, and its
/// OpenAPI schema: a string, described, with an example.
macro_rules! as_text {
    ($t:ty, $description:expr, $example:expr) => {
        bindwave_proto::text_schema!($t, $description, $example, None);
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use as_text;
