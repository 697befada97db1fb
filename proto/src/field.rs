//! Bind header fields: their tags, and the names messages call them by.

use std::fmt;

/// Set on a tag whose field an agent must understand to install the bind.
pub const CRITICAL: u16 = 0x8000;

/// Field tags.
pub mod tag {
    /// UTF-8 software version of the payload, e.g. `V3 R3.18.0`. Required.
    pub const SOFTWARE_VERSION: u16 = 0x0001;
    /// The supported hardware levels, one u16 each. Optional: absent means "decide by software level".
    pub const HARDWARE_LEVELS: u16 = 0x0002;
    /// Payload length in bytes, u64. Required.
    pub const PAYLOAD_LENGTH: u16 = 0x0003;
    /// SHA-256 of the payload, 32 bytes. Required.
    pub const PAYLOAD_SHA256: u16 = 0x0004;
    /// A signature over the header; carried, reserved for signed binds. Optional.
    pub const SIGNATURE: u16 = 0x0005;
}

/// The name of a known tag (critical or not), for messages.
pub fn tag_name(tag: u16) -> Option<&'static str> {
    Some(match tag & !CRITICAL {
        tag::SOFTWARE_VERSION => "software_version",
        tag::HARDWARE_LEVELS => "hardware_levels",
        tag::PAYLOAD_LENGTH => "payload_length",
        tag::PAYLOAD_SHA256 => "payload_sha256",
        tag::SIGNATURE => "signature",
        _ => return None,
    })
}

/// A bind header field, by tag, for error messages: known tags by name, others by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldName(pub u16);

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match tag_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}
