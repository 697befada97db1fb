use crate::field::FieldName;

/// Everything that can be wrong with bytes or strings handed to this crate.
///
/// Messages are lowercase, name the field or value that was wrong, and end with a hint where one helps.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    #[error("not a bind file: it does not start with the bind magic (is this a raw payload? build a bind with `bindwave image pack`)")]
    BadMagic,
    #[error("bind format version {found} is not supported (this build reads version {supported}; upgrade the agent or controller)")]
    UnsupportedFormatVersion { found: u16, supported: u16 },
    #[error("bind header declares {declared} bytes, over the limit of {limit} (the file is corrupt or not a bind)")]
    HeaderTooLarge { declared: u32, limit: u32 },
    #[error("bind header field {field} runs past the end of the header (declared {declared} bytes, {remaining} left)")]
    FieldOverrunsHeader { field: FieldName, declared: u32, remaining: usize },
    #[error("bind header field {field} has a bad length {len}: {expected}")]
    FieldLength { field: FieldName, len: u32, expected: &'static str },
    #[error("bind header field {field} appears twice")]
    DuplicateField { field: FieldName },
    #[error("bind header lacks the required field {field}")]
    MissingField { field: FieldName },
    #[error("bind header field {field} is not valid UTF-8")]
    InvalidUtf8 { field: FieldName },
    #[error("bind header field {field} is invalid: {detail}")]
    InvalidField { field: FieldName, detail: String },
    #[error("bind header carries critical field {field} that this build does not understand (upgrade the agent)")]
    UnsupportedCriticalField { field: FieldName },
    #[error(
        "invalid software version {input:?}: {reason} (expected e.g. \"V3 R3.18.0\", \"V3R3.18.0\" or \"3.3.18.0\")"
    )]
    InvalidVersion { input: String, reason: &'static str },
    #[error("invalid device id {input:?}: {reason} (use 1-64 characters of A-Z a-z 0-9 . _ -)")]
    InvalidDeviceId { input: String, reason: &'static str },
    #[error("invalid key or signature {input:?}: {reason}")]
    InvalidKey { input: String, reason: &'static str },
    #[error("malformed {kind} message: {detail}")]
    MalformedMessage { kind: &'static str, detail: String },
    #[error("cannot encode a {kind} message: {detail} (this is a bug; please report it)")]
    Encode { kind: &'static str, detail: String },
}

impl ProtoError {
    /// The bind header field at fault, if the error is about one.
    pub fn field(&self) -> Option<FieldName> {
        match self {
            ProtoError::FieldOverrunsHeader { field, .. }
            | ProtoError::FieldLength { field, .. }
            | ProtoError::DuplicateField { field }
            | ProtoError::MissingField { field }
            | ProtoError::InvalidUtf8 { field }
            | ProtoError::InvalidField { field, .. }
            | ProtoError::UnsupportedCriticalField { field } => Some(*field),
            _ => None,
        }
    }
}
