//! Ed25519 public keys, key ids and signatures, and the one check both sides make: does a signature over a
//! message verify under one of the keys this side trusts?
//!
//! What is signed is each message's own business ([`crate::bind`] signs its header fields, [`crate::wire`]
//! its commands); every message starts with a context string of its own, so a signature made for one kind
//! of message never verifies as another.
//!
//! Key texts:
//! - a public key is either PEM (`-----BEGIN PUBLIC KEY-----`, the SubjectPublicKeyInfo that
//!   `openssl pkey -pubout` writes) or one line `ed25519:<64 hex digits>`;
//! - a key id is the first 8 bytes of the SHA-256 of the 32 raw public-key bytes, in hex (16 digits).
//!
//! Verification uses ring, which the agent links already for TLS.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

use crate::ProtoError;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow it.
pub const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// The one signature algorithm, as its number in signed structures.
pub const ALGORITHM_ED25519: u8 = 1;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Which key made a signature: the first 8 bytes of the SHA-256 of the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for KeyId {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, ProtoError> {
        let bad = |reason| ProtoError::InvalidKey { input: s.to_string(), reason };
        let bytes = hex::decode(s).map_err(|_| bad("a key id is 16 hex digits"))?;
        Ok(KeyId(bytes.try_into().map_err(|_| bad("a key id is 16 hex digits"))?))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        let digest = crate::sha256::digest(&self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// The one-line form, `ed25519:<hex>`, for config files.
    pub fn to_line(&self) -> String {
        format!("ed25519:{}", hex::encode(self.0))
    }

    /// The PEM form (SubjectPublicKeyInfo), as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem_encode("PUBLIC KEY", &der)
    }

    /// Reads either form (surrounding whitespace and `#` comment lines outside a PEM block are ignored).
    pub fn parse(text: &str) -> Result<PublicKey, ProtoError> {
        let bad = |reason| ProtoError::InvalidKey { input: abbreviate(text), reason };
        let trimmed = text.trim();
        if let Some(hex_part) = trimmed.strip_prefix("ed25519:") {
            let bytes = hex::decode(hex_part.trim()).map_err(|_| bad("after `ed25519:` come 64 hex digits"))?;
            return Ok(PublicKey(bytes.try_into().map_err(|_| bad("after `ed25519:` come 64 hex digits"))?));
        }
        if trimmed.contains("-----BEGIN") {
            let der = pem_decode("PUBLIC KEY", trimmed).ok_or(bad(
                "expected one PEM block `-----BEGIN PUBLIC KEY-----` (an Ed25519 key, as `bindwave image keygen` writes)",
            ))?;
            let key = der
                .strip_prefix(&SPKI_PREFIX[..])
                .filter(|k| k.len() == 32)
                .ok_or(bad("the PEM block is not an Ed25519 public key (only Ed25519 is supported)"))?;
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(key);
            return Ok(PublicKey(bytes));
        }
        Err(bad("expected `ed25519:<64 hex digits>` or a PEM public key"))
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, self.0).verify(message, signature).is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, ProtoError> {
        PublicKey::parse(s)
    }
}

/// A signature, with the id of the key that made it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub key_id: KeyId,
    pub bytes: [u8; SIGNATURE_LEN],
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(key {}, {}…)", self.key_id, hex::encode(&self.bytes[..4]))
    }
}

impl Signature {
    /// Encoded length: algorithm (1), key id (8), signature (64).
    pub const ENCODED_LEN: usize = 1 + 8 + SIGNATURE_LEN;

    /// `algorithm u8 | key id [8] | signature [64]`, as the bind's signature field holds it.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = ALGORITHM_ED25519;
        out[1..9].copy_from_slice(&self.key_id.0);
        out[9..].copy_from_slice(&self.bytes);
        out
    }

    /// Reads [`Signature::encode`]'s bytes; the error says what is wrong, for the field's error message.
    pub fn decode(bytes: &[u8]) -> Result<Signature, &'static str> {
        if bytes.len() != Self::ENCODED_LEN {
            return Err("expected 73 bytes: algorithm 1 (ed25519), an 8-byte key id, a 64-byte signature");
        }
        if bytes[0] != ALGORITHM_ED25519 {
            return Err("unknown signature algorithm (only 1, ed25519, is defined)");
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[1..9]);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(&bytes[9..]);
        Ok(Signature { key_id: KeyId(key_id), bytes: sig })
    }

    /// The text form for JSON messages: `<key id>:<base64 signature>`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.key_id, base64::engine::general_purpose::STANDARD.encode(self.bytes))
    }

    /// Reads [`Signature::to_text`].
    pub fn from_text(text: &str) -> Result<Signature, ProtoError> {
        let bad = |reason| ProtoError::InvalidKey { input: abbreviate(text), reason };
        let (id, sig) = text.split_once(':').ok_or(bad("a signature is `<key id>:<base64>`"))?;
        let key_id: KeyId = id.parse()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .map_err(|_| bad("the signature after `:` is not base64"))?;
        let bytes: [u8; SIGNATURE_LEN] = bytes.try_into().map_err(|_| bad("an ed25519 signature is 64 bytes"))?;
        Ok(Signature { key_id, bytes })
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Signature::from_text(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// Nothing was signed.
    Unsigned,
    /// Signed by a key this side does not trust.
    UnknownKey(KeyId),
    /// Signed under a trusted key id, but the signature does not verify: the message was altered, or forged.
    Invalid(KeyId),
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Unsigned => f.write_str("not signed"),
            Untrusted::UnknownKey(id) => write!(f, "signed by key {id}, which is not trusted here"),
            Untrusted::Invalid(id) => write!(f, "the signature by key {id} does not verify (altered or forged)"),
        }
    }
}

/// The keys a side trusts for one purpose (releases, or the controller's commands). More than one, so that
/// a key can be rotated without stranding anything that trusts only the old one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> TrustedKeys {
        let mut keys: Vec<PublicKey> = keys.into_iter().collect();
        keys.sort_by_key(|k| k.key_id());
        keys.dedup();
        TrustedKeys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(PublicKey::key_id)
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Checks `signature` over `message`: the key that made it, or why it is not accepted.
    pub fn verify(&self, message: &[u8], signature: Option<&Signature>) -> Result<KeyId, Untrusted> {
        let signature = signature.ok_or(Untrusted::Unsigned)?;
        let key =
            self.keys.iter().find(|k| k.key_id() == signature.key_id).ok_or(Untrusted::UnknownKey(signature.key_id))?;
        if key.verifies(message, &signature.bytes) {
            Ok(signature.key_id)
        } else {
            Err(Untrusted::Invalid(signature.key_id))
        }
    }
}

/// PEM: `-----BEGIN <label>-----`, base64 lines of 64 characters, `-----END <label>-----`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first PEM block labelled `label`, if there is one and it is valid base64.
pub fn pem_decode(label: &str, text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn abbreviate(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    if line.chars().count() > 80 {
        format!("{}…", line.chars().take(80).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032, section 7.1, test 2: a one-byte message.
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC_SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn rfc_key() -> PublicKey {
        PublicKey::parse(&format!("ed25519:{RFC_PUBLIC}")).unwrap()
    }

    fn rfc_signature() -> Signature {
        let bytes: [u8; 64] = hex::decode(RFC_SIGNATURE).unwrap().try_into().unwrap();
        Signature { key_id: rfc_key().key_id(), bytes }
    }

    #[test]
    fn an_rfc_8032_signature_verifies_and_a_flipped_bit_does_not() {
        let keys = TrustedKeys::new([rfc_key()]);
        assert_eq!(keys.verify(&[0x72], Some(&rfc_signature())), Ok(rfc_key().key_id()));
        assert_eq!(keys.verify(&[0x73], Some(&rfc_signature())), Err(Untrusted::Invalid(rfc_key().key_id())));
        let mut sig = rfc_signature();
        sig.bytes[10] ^= 1;
        assert_eq!(keys.verify(&[0x72], Some(&sig)), Err(Untrusted::Invalid(rfc_key().key_id())));
        assert_eq!(keys.verify(&[0x72], None), Err(Untrusted::Unsigned));
        assert_eq!(
            TrustedKeys::default().verify(&[0x72], Some(&rfc_signature())),
            Err(Untrusted::UnknownKey(rfc_key().key_id()))
        );
    }

    #[test]
    fn public_keys_read_back_from_both_forms() {
        let key = rfc_key();
        assert_eq!(PublicKey::parse(&key.to_line()).unwrap(), key);
        assert_eq!(PublicKey::parse(&key.to_pem()).unwrap(), key);
        assert!(key.to_pem().starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
        assert_eq!(key.key_id().to_string().len(), 16);
        assert_eq!(key.key_id().to_string().parse::<KeyId>().unwrap(), key.key_id());
    }

    #[test]
    fn bad_key_texts_say_what_is_expected() {
        for text in
            ["", "ed25519:zz", "ed25519:00", "rsa:1234", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]
        {
            let err = PublicKey::parse(text).unwrap_err().to_string();
            assert!(err.contains("expected") || err.contains("ed25519") || err.contains("Ed25519"), "{text:?}: {err}");
        }
    }

    #[test]
    fn signatures_round_trip_in_bytes_and_text() {
        let sig = rfc_signature();
        assert_eq!(Signature::decode(&sig.encode()).unwrap(), sig);
        assert_eq!(Signature::from_text(&sig.to_text()).unwrap(), sig);
        assert!(Signature::decode(&sig.encode()[..72]).is_err());
        let mut other_alg = sig.encode();
        other_alg[0] = 2;
        assert!(Signature::decode(&other_alg).unwrap_err().contains("algorithm"));
        assert!(Signature::from_text("nocolon").is_err());
        assert!(Signature::from_text(&format!("{}:AAAA", sig.key_id)).is_err());
    }
}
