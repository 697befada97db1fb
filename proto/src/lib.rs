//! What the Bindwave agent and controller share, and nothing else: the bind file format ([`bind`], its
//! header fields in [`field`]),
//! software versions ([`version`]), keys and signatures ([`signature`]), SHA-256 ([`sha256`]), what a command signs ([`command_signing`]), the streaming verifier ([`verify`]), the compatibility rule ([`compat`]), install windows ([`window`]) and the MQTT wire ([`wire`]).
//!
//! This crate does no IO: it parses and builds bytes, and decides. It knows nothing of sockets, files,
//! brokers or storage, so both sides, and their tests, can use it as it is.

pub mod bind;
pub mod command_signing;
pub mod compat;
mod error;
pub mod field;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod sha256;
pub mod signature;
pub mod verify;
pub mod version;
pub mod window;
pub mod wire;

pub use bind::{BindHeader, HardwareLevel, Parsed};
pub use compat::{decide, Decision, DeviceProfile, Rejection};
pub use error::ProtoError;
pub use signature::{KeyId, PublicKey, Signature, TrustedKeys, Untrusted};
pub use version::SoftwareVersion;
