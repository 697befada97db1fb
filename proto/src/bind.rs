//! The bind file: a small self-describing header, then the firmware payload.
//!
//! The byte layout is documented in `proto/BIND_FORMAT.md`. In short (all integers big-endian):
//!
//! ```text
//!  0        8     10        14                         14+header_len
//!  +--------+-----+---------+--------------------------+-------------------+
//!  | magic  | fmt | hdr len | fields (hdr len bytes)   | payload ...       |
//!  +--------+-----+---------+--------------------------+-------------------+
//!  field: | tag u16 | len u32 | value (len bytes) |   tag bit 15 set = critical
//! ```
//!
//! [`parse_header`] works on whatever prefix of the file has arrived so far: it says how many more bytes it
//! needs, refuses an oversized header before anything is allocated, never reads past a declared length, and
//! names the field that is wrong. It only answers "is this a well-formed bind header?"; whether the bind is
//! for a given phone is [`crate::compat::decide`], and whether the payload matches its digest is the
//! caller's streaming check against [`BindHeader::payload_sha256`].

use std::fmt;

use crate::field::FieldName;
pub use crate::field::{tag, CRITICAL};
use crate::signature::{Signature, TrustedKeys, Untrusted};
use crate::{KeyId, ProtoError, SoftwareVersion};

/// The first eight bytes of every bind. The CR LF catches files mangled by a text-mode transfer.
pub const MAGIC: [u8; 8] = *b"BWBIND\r\n";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the fields: magic, format version, header length.
pub const PRELUDE_LEN: usize = 14;
/// The largest header (fields only) accepted: anything larger is refused before allocating.
pub const MAX_HEADER_LEN: u32 = 64 * 1024;
/// The largest payload a bind may declare (16 GiB).
pub const MAX_PAYLOAD_LEN: u64 = 16 * 1024 * 1024 * 1024;
/// The most hardware levels one bind may list.
pub const MAX_HARDWARE_LEVELS: usize = 1024;
/// What a bind signature's message starts with, so that no other signed message can pass for a bind's.
pub const SIGNING_CONTEXT: &[u8] = b"bindwave bind header v1\0";
/// Bytes of the signature field, tag and length included.
const SIGNATURE_FIELD_LEN: usize = 6 + Signature::ENCODED_LEN;

/// A phone's hardware level, as printed in the admin manual's "Supported Hardware Level".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct HardwareLevel(pub u16);

impl fmt::Display for HardwareLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A parsed, well-formed bind header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindHeader {
    pub software_version: SoftwareVersion,
    /// `None`: the header has no hardware-level field, and the software level decides.
    pub hardware_levels: Option<Vec<HardwareLevel>>,
    pub payload_len: u64,
    pub payload_sha256: [u8; 32],
    /// The release signature, if the bind is signed. Its message is [`BindHeader::signed_message`].
    pub signature: Option<Box<Signature>>,
    /// Non-critical fields this build does not know (a newer bind read by an older agent), in file order.
    /// They are kept, so that signing or re-signing a bind never drops them.
    pub unknown_fields: Vec<UnknownField>,
    /// What the signature covers, exactly as read: every byte of the header before the signature field
    /// (magic, format, header length and all other fields). `None` when the header is not signed.
    signed_prefix: Option<Vec<u8>>,
}

/// A non-critical header field this build does not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    pub tag: u16,
    pub value: Vec<u8>,
}

/// The result of parsing a prefix of a bind file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The header is complete; the payload starts at `header_len` (prelude included).
    Complete { header: BindHeader, header_len: usize },
    /// The prefix is well-formed so far; at least `needed` more bytes are required.
    Incomplete { needed: usize },
}

/// Parses a bind header from the start of `buf`, which may hold any prefix of the file.
pub fn parse_header(buf: &[u8]) -> Result<Parsed, ProtoError> {
    // The magic is checked on whatever has arrived, so a wrong file fails on its first byte.
    let have = buf.len().min(MAGIC.len());
    if buf[..have] != MAGIC[..have] {
        return Err(ProtoError::BadMagic);
    }
    if buf.len() < PRELUDE_LEN {
        return Ok(Parsed::Incomplete { needed: PRELUDE_LEN - buf.len() });
    }
    let format = u16::from_be_bytes([buf[8], buf[9]]);
    if format != FORMAT_VERSION {
        return Err(ProtoError::UnsupportedFormatVersion { found: format, supported: FORMAT_VERSION });
    }
    let header_len = u32::from_be_bytes([buf[10], buf[11], buf[12], buf[13]]);
    if header_len > MAX_HEADER_LEN {
        return Err(ProtoError::HeaderTooLarge { declared: header_len, limit: MAX_HEADER_LEN });
    }
    let total = PRELUDE_LEN + header_len as usize;
    if buf.len() < total {
        return Ok(Parsed::Incomplete { needed: total - buf.len() });
    }
    let mut header = parse_fields(&buf[PRELUDE_LEN..total])?;
    if header.signature.is_some() {
        // The signature field is the last one (the parser refuses anything after it). Its tag and length
        // are signed too: only the 73 bytes of its value are not.
        header.signed_prefix = Some(buf[..total - Signature::ENCODED_LEN].to_vec());
    }
    Ok(Parsed::Complete { header, header_len: total })
}

fn parse_fields(mut fields: &[u8]) -> Result<BindHeader, ProtoError> {
    let mut software_version = None;
    let mut hardware_levels = None;
    let mut payload_len = None;
    let mut payload_sha256 = None;
    let mut signature = None;
    let mut unknown_fields = Vec::new();

    while !fields.is_empty() {
        if signature.is_some() {
            // What the signature covers is everything before it: nothing may follow it unsigned.
            return Err(ProtoError::InvalidField {
                field: FieldName(tag::SIGNATURE),
                detail: "it must be the header's last field (bytes follow it)".to_string(),
            });
        }
        if fields.len() < 6 {
            return Err(ProtoError::FieldOverrunsHeader {
                field: FieldName(u16::from_be_bytes([fields[0], *fields.get(1).unwrap_or(&0)])),
                declared: 6,
                remaining: fields.len(),
            });
        }
        let raw_tag = u16::from_be_bytes([fields[0], fields[1]]);
        let len = u32::from_be_bytes([fields[2], fields[3], fields[4], fields[5]]);
        let field = FieldName(raw_tag);
        let rest = &fields[6..];
        if len as usize > rest.len() {
            return Err(ProtoError::FieldOverrunsHeader { field, declared: len, remaining: rest.len() });
        }
        let (value, rest) = rest.split_at(len as usize);
        fields = rest;

        let bad_len = |expected| ProtoError::FieldLength { field, len, expected };
        match raw_tag & !CRITICAL {
            tag::SOFTWARE_VERSION => {
                let s = std::str::from_utf8(value).map_err(|_| ProtoError::InvalidUtf8 { field })?;
                let version =
                    s.parse().map_err(|e: ProtoError| ProtoError::InvalidField { field, detail: e.to_string() })?;
                set_once(&mut software_version, version, field)?;
            }
            tag::HARDWARE_LEVELS => {
                if value.is_empty() || value.len() % 2 != 0 || value.len() / 2 > MAX_HARDWARE_LEVELS {
                    return Err(bad_len("an even number of bytes, 2 to 2048 (one u16 per level)"));
                }
                let mut levels: Vec<_> =
                    value.chunks_exact(2).map(|c| HardwareLevel(u16::from_be_bytes([c[0], c[1]]))).collect();
                levels.sort_unstable();
                levels.dedup();
                set_once(&mut hardware_levels, levels, field)?;
            }
            tag::PAYLOAD_LENGTH => {
                let bytes: [u8; 8] = value.try_into().map_err(|_| bad_len("exactly 8 bytes"))?;
                let n = u64::from_be_bytes(bytes);
                if n > MAX_PAYLOAD_LEN {
                    return Err(ProtoError::InvalidField {
                        field,
                        detail: format!("{n} bytes is over the 16 GiB limit"),
                    });
                }
                set_once(&mut payload_len, n, field)?;
            }
            tag::PAYLOAD_SHA256 => {
                let digest: [u8; 32] = value.try_into().map_err(|_| bad_len("exactly 32 bytes"))?;
                set_once(&mut payload_sha256, digest, field)?;
            }
            tag::SIGNATURE => {
                let sig = Signature::decode(value).map_err(|detail| {
                    if value.len() == Signature::ENCODED_LEN {
                        ProtoError::InvalidField { field, detail: detail.to_string() }
                    } else {
                        bad_len("exactly 73 bytes: algorithm 1 (ed25519), an 8-byte key id, a 64-byte signature")
                    }
                })?;
                set_once(&mut signature, Box::new(sig), field)?;
            }
            _ if raw_tag & CRITICAL != 0 => return Err(ProtoError::UnsupportedCriticalField { field }),
            _ => unknown_fields.push(UnknownField { tag: raw_tag, value: value.to_vec() }),
        }
    }

    let missing = |t| ProtoError::MissingField { field: FieldName(t) };
    Ok(BindHeader {
        software_version: software_version.ok_or(missing(tag::SOFTWARE_VERSION))?,
        hardware_levels,
        payload_len: payload_len.ok_or(missing(tag::PAYLOAD_LENGTH))?,
        payload_sha256: payload_sha256.ok_or(missing(tag::PAYLOAD_SHA256))?,
        signature,
        unknown_fields,
        signed_prefix: None,
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, field: FieldName) -> Result<(), ProtoError> {
    if slot.is_some() {
        return Err(ProtoError::DuplicateField { field });
    }
    *slot = Some(value);
    Ok(())
}

impl BindHeader {
    /// The header of a bind for a payload of `payload_len` bytes with digest `payload_sha256`.
    pub fn new(
        software_version: SoftwareVersion,
        hardware_levels: Option<Vec<HardwareLevel>>,
        payload_len: u64,
        payload_sha256: [u8; 32],
    ) -> Self {
        let hardware_levels = hardware_levels.map(|mut l| {
            l.sort_unstable();
            l.dedup();
            l
        });
        BindHeader {
            software_version,
            hardware_levels,
            payload_len,
            payload_sha256,
            signature: None,
            unknown_fields: Vec::new(),
            signed_prefix: None,
        }
    }

    /// Tags of the fields this build skipped.
    pub fn skipped_fields(&self) -> Vec<u16> {
        self.unknown_fields.iter().map(|f| f.tag).collect()
    }

    /// The message a release signature signs: [`SIGNING_CONTEXT`], then every byte of the header before the
    /// signature's value (the signature field's own tag and length included). For a parsed header these are the bytes as read, so one flipped bit anywhere in the
    /// header (or, through the payload digest, in the payload) fails the signature. For a header built here
    /// it is what [`BindHeader::encode`] will write once [`BindHeader::signed`] has added the signature.
    pub fn signed_message(&self) -> Result<Vec<u8>, ProtoError> {
        let prefix = match &self.signed_prefix {
            Some(prefix) => prefix.clone(),
            None => self.encode_prefix(true)?,
        };
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&prefix);
        Ok(message)
    }

    /// This header with `signature` (made over [`BindHeader::signed_message`] of the unsigned header).
    /// A previous signature is replaced.
    pub fn signed(mut self, signature: Signature) -> Result<BindHeader, ProtoError> {
        self.signature = None;
        let prefix = self.encode_prefix(true)?;
        self.signature = Some(Box::new(signature));
        self.signed_prefix = Some(prefix);
        Ok(self)
    }

    /// This header without its signature, as [`BindHeader::encode`] writes fields (for re-signing: the
    /// message is then [`BindHeader::signed_message`] of the result).
    pub fn unsigned(mut self) -> BindHeader {
        self.signature = None;
        self.signed_prefix = None;
        self
    }

    /// Checks the signature against the keys trusted for releases: the signer's key id, or why not.
    pub fn verify_signature(&self, trusted: &TrustedKeys) -> Result<KeyId, Untrusted> {
        let Some(signature) = &self.signature else { return Err(Untrusted::Unsigned) };
        let message = self.signed_message().map_err(|_| Untrusted::Invalid(signature.key_id))?;
        trusted.verify(&message, Some(&**signature))
    }

    /// The payload digest as lowercase hex.
    pub fn payload_sha256_hex(&self) -> String {
        hex::encode(self.payload_sha256)
    }

    /// The header's bytes: prelude and fields. The payload follows them in the file.
    ///
    /// Fails if a field is out of bounds (too many hardware levels, an empty level list, an oversized
    /// signature), so that what is written can always be read back.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut out = match &self.signed_prefix {
            Some(prefix) if self.signature.is_some() => prefix.clone(),
            _ => self.encode_prefix(self.signature.is_some())?,
        };
        if let Some(sig) = &self.signature {
            out.extend_from_slice(&sig.encode());
        }
        // Round-trip through the parser: the one place that knows every bound.
        match parse_header(&out)? {
            Parsed::Complete { .. } => Ok(out),
            Parsed::Incomplete { .. } => Err(ProtoError::HeaderTooLarge { declared: u32::MAX, limit: MAX_HEADER_LEN }),
        }
    }

    /// The prelude and every field but the signature, in ascending tag order, unknown fields last. With
    /// `room_for_signature`, the header length counts the signature field, whose tag and length end the
    /// prefix: only the signature's value follows.
    fn encode_prefix(&self, room_for_signature: bool) -> Result<Vec<u8>, ProtoError> {
        let mut fields = Vec::with_capacity(128);
        let mut put = |tag: u16, value: &[u8]| {
            fields.extend_from_slice(&tag.to_be_bytes());
            fields.extend_from_slice(&(value.len() as u32).to_be_bytes());
            fields.extend_from_slice(value);
        };
        put(tag::SOFTWARE_VERSION, self.software_version.to_string().as_bytes());
        if let Some(levels) = &self.hardware_levels {
            let bytes: Vec<u8> = levels.iter().flat_map(|l| l.0.to_be_bytes()).collect();
            put(tag::HARDWARE_LEVELS, &bytes);
        }
        put(tag::PAYLOAD_LENGTH, &self.payload_len.to_be_bytes());
        put(tag::PAYLOAD_SHA256, &self.payload_sha256);
        for field in &self.unknown_fields {
            put(field.tag, &field.value);
        }
        let header_len = fields.len() + if room_for_signature { SIGNATURE_FIELD_LEN } else { 0 };
        let header_len = u32::try_from(header_len)
            .ok()
            .filter(|len| *len <= MAX_HEADER_LEN)
            .ok_or(ProtoError::HeaderTooLarge { declared: u32::MAX, limit: MAX_HEADER_LEN })?;
        let mut out = Vec::with_capacity(PRELUDE_LEN + fields.len() + SIGNATURE_FIELD_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&header_len.to_be_bytes());
        out.extend_from_slice(&fields);
        if room_for_signature {
            out.extend_from_slice(&tag::SIGNATURE.to_be_bytes());
            out.extend_from_slice(&(Signature::ENCODED_LEN as u32).to_be_bytes());
        }
        Ok(out)
    }
}

/// A whole bind in memory: header then payload. For tests, demos and small images; large payloads are
/// streamed by the caller around [`BindHeader::encode`].
pub fn pack(
    software_version: SoftwareVersion,
    hardware_levels: Option<Vec<HardwareLevel>>,
    payload: &[u8],
) -> Result<Vec<u8>, ProtoError> {
    let digest = crate::sha256::digest(payload);
    let header = BindHeader::new(software_version, hardware_levels, payload.len() as u64, digest);
    let mut out = header.encode()?;
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SoftwareVersion {
        s.parse().unwrap()
    }

    fn sample(levels: Option<Vec<u16>>) -> Vec<u8> {
        pack(v("V3 R3.18.0"), levels.map(|l| l.into_iter().map(HardwareLevel).collect()), b"firmware bytes").unwrap()
    }

    fn complete(buf: &[u8]) -> (BindHeader, usize) {
        match parse_header(buf).unwrap() {
            Parsed::Complete { header, header_len } => (header, header_len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    /// Builds a header from raw fields, to craft malformed ones.
    fn raw(fields: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, value) in fields {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(value.len() as u32).to_be_bytes());
            body.extend_from_slice(value);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn required() -> Vec<(u16, Vec<u8>)> {
        vec![
            (tag::SOFTWARE_VERSION, b"V3 R3.18.0".to_vec()),
            (tag::PAYLOAD_LENGTH, 5u64.to_be_bytes().to_vec()),
            (tag::PAYLOAD_SHA256, vec![7; 32]),
        ]
    }

    #[test]
    fn round_trip_with_and_without_hardware_levels() {
        let with = sample(Some(vec![4, 3, 4]));
        let (h, len) = complete(&with);
        assert_eq!(h.hardware_levels, Some(vec![HardwareLevel(3), HardwareLevel(4)]));
        assert_eq!(h.software_version, v("V3 R3.18.0"));
        assert_eq!(&with[len..], b"firmware bytes");
        assert_eq!(h.payload_len, 14);

        let (h, _) = complete(&sample(None));
        assert_eq!(h.hardware_levels, None);
    }

    #[test]
    fn every_prefix_asks_for_exactly_what_is_missing() {
        let bind = sample(Some(vec![3]));
        let (_, len) = complete(&bind);
        for cut in 0..len {
            match parse_header(&bind[..cut]).unwrap() {
                Parsed::Incomplete { needed } => {
                    assert!(needed > 0 && cut + needed <= len, "cut {cut}: needed {needed}");
                    if cut >= PRELUDE_LEN {
                        assert_eq!(cut + needed, len);
                    }
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_magic_fails_on_the_first_byte() {
        assert_eq!(parse_header(b"P"), Err(ProtoError::BadMagic));
        assert_eq!(parse_header(b"BWBIND\n\n"), Err(ProtoError::BadMagic));
        assert_eq!(parse_header(b""), Ok(Parsed::Incomplete { needed: PRELUDE_LEN }));
    }

    #[test]
    fn oversized_header_is_refused_from_the_prelude_alone() {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&1u16.to_be_bytes());
        buf.extend_from_slice(&(MAX_HEADER_LEN + 1).to_be_bytes());
        assert_eq!(
            parse_header(&buf),
            Err(ProtoError::HeaderTooLarge { declared: MAX_HEADER_LEN + 1, limit: MAX_HEADER_LEN })
        );
        let mut buf2 = buf.clone();
        buf2[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_header(&buf2), Err(ProtoError::HeaderTooLarge { .. })));
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let mut bind = sample(None);
        bind[9] = 2;
        assert_eq!(parse_header(&bind), Err(ProtoError::UnsupportedFormatVersion { found: 2, supported: 1 }));
    }

    #[test]
    fn unknown_fields_are_skipped_but_unknown_critical_fields_refused() {
        let mut fields = required();
        fields.push((0x0042, b"from the future".to_vec()));
        let (h, _) = complete(&raw(&fields));
        assert_eq!(h.skipped_fields(), vec![0x0042]);

        let mut fields = required();
        fields.push((0x8042, vec![1]));
        assert_eq!(parse_header(&raw(&fields)), Err(ProtoError::UnsupportedCriticalField { field: FieldName(0x8042) }));
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (i, name) in [(0, "software_version"), (1, "payload_length"), (2, "payload_sha256")] {
            let mut fields = required();
            fields.remove(i);
            let err = parse_header(&raw(&fields)).unwrap_err();
            assert!(matches!(err, ProtoError::MissingField { .. }));
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn malformed_fields_are_named() {
        let cases: Vec<((u16, Vec<u8>), &str)> = vec![
            ((tag::HARDWARE_LEVELS, vec![]), "hardware_levels"),
            ((tag::HARDWARE_LEVELS, vec![0, 3, 1]), "hardware_levels"),
            ((tag::HARDWARE_LEVELS, vec![0; 2 * MAX_HARDWARE_LEVELS + 2]), "hardware_levels"),
            ((tag::SIGNATURE, vec![]), "signature"),
        ];
        for (field, name) in cases {
            let mut fields = required();
            fields.push(field);
            let err = parse_header(&raw(&fields)).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let mut fields = required();
        fields[0].1 = vec![0xff, 0xfe];
        assert!(matches!(parse_header(&raw(&fields)), Err(ProtoError::InvalidUtf8 { .. })));
        fields[0].1 = b"latest".to_vec();
        let err = parse_header(&raw(&fields)).unwrap_err();
        assert!(err.to_string().contains("software_version"), "{err}");
        let mut fields = required();
        fields[1].1 = vec![0; 4];
        assert!(matches!(parse_header(&raw(&fields)), Err(ProtoError::FieldLength { .. })));
        fields[1].1 = u64::MAX.to_be_bytes().to_vec();
        assert!(matches!(parse_header(&raw(&fields)), Err(ProtoError::InvalidField { .. })));
        let mut fields = required();
        fields[2].1 = vec![0; 31];
        assert!(matches!(parse_header(&raw(&fields)), Err(ProtoError::FieldLength { .. })));
        let mut fields = required();
        fields.push(required()[0].clone());
        assert!(matches!(parse_header(&raw(&fields)), Err(ProtoError::DuplicateField { .. })));
    }

    #[test]
    fn a_field_never_reads_past_the_header() {
        let mut bind = raw(&required());
        // Claim the last field is longer than what the header holds; payload bytes follow, and must not be read.
        let last_len_at = bind.len() - 32 - 4;
        bind[last_len_at..last_len_at + 4].copy_from_slice(&40u32.to_be_bytes());
        bind.extend_from_slice(&[0u8; 64]);
        assert!(matches!(parse_header(&bind), Err(ProtoError::FieldOverrunsHeader { .. })));
        // A truncated field header (fewer than 6 bytes left).
        let mut bind = raw(&required());
        let new_len = u32::from_be_bytes(bind[10..14].try_into().unwrap()) + 3;
        bind[10..14].copy_from_slice(&new_len.to_be_bytes());
        bind.extend_from_slice(&[0, 9, 0]);
        assert!(matches!(parse_header(&bind), Err(ProtoError::FieldOverrunsHeader { .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every truncation and every single-byte corruption of a real header.
        let bind = sample(Some(vec![2, 3]));
        let (_, len) = complete(&bind);
        for i in 0..len {
            for x in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut b = bind.clone();
                b[i] ^= x;
                let _ = parse_header(&b);
                let _ = parse_header(&b[..i]);
            }
        }
    }

    #[test]
    fn encode_refuses_what_parse_would_refuse() {
        let mut h = complete(&sample(None)).0;
        h.hardware_levels = Some(vec![]);
        assert!(h.encode().is_err());
    }
}

#[cfg(test)]
mod doc_example {
    /// The example in BIND_FORMAT.md is what `pack` writes.
    #[test]
    fn bind_format_md_example_is_exact() {
        let bytes = super::pack(
            "V3 R3.18.0".parse().unwrap(),
            Some(vec![super::HardwareLevel(3), super::HardwareLevel(4)]),
            b"hello",
        )
        .unwrap();
        let doc = include_str!("../BIND_FORMAT.md");
        let example =
            doc.split("## Example").nth(1).unwrap().split("```text").nth(1).unwrap().split("```").next().unwrap();
        let hex: String = example
            .lines()
            .map(|l| l.split("   ").next().unwrap_or(""))
            .flat_map(|l| l.split_whitespace().filter(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit())))
            .collect();
        assert_eq!(hex, hex::encode(&bytes));
    }
}

#[cfg(test)]
mod signing_tests {
    use ring::signature::KeyPair as _;

    use super::*;
    use crate::PublicKey;

    fn key_pair() -> (ring::signature::Ed25519KeyPair, PublicKey) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = PublicKey(pair.public_key().as_ref().try_into().unwrap());
        (pair, public)
    }

    fn sign(header: BindHeader, pair: &ring::signature::Ed25519KeyPair, public: PublicKey) -> BindHeader {
        let message = header.signed_message().unwrap();
        let bytes: [u8; 64] = pair.sign(&message).as_ref().try_into().unwrap();
        header.signed(Signature { key_id: public.key_id(), bytes }).unwrap()
    }

    fn unsigned() -> BindHeader {
        let mut header = BindHeader::new("V3 R3.18.0".parse().unwrap(), Some(vec![HardwareLevel(3)]), 5, [7; 32]);
        header.unknown_fields.push(UnknownField { tag: 0x0042, value: b"extra".to_vec() });
        header
    }

    fn parse(bytes: &[u8]) -> Result<BindHeader, ProtoError> {
        match parse_header(bytes)? {
            Parsed::Complete { header, .. } => Ok(header),
            Parsed::Incomplete { needed } => panic!("incomplete, {needed} more"),
        }
    }

    #[test]
    fn a_signed_header_verifies_after_a_round_trip_and_keeps_unknown_fields() {
        let (pair, public) = key_pair();
        let header = sign(unsigned(), &pair, public);
        let bytes = header.encode().unwrap();
        let read = parse(&bytes).unwrap();
        assert_eq!(read, header);
        assert_eq!(read.skipped_fields(), vec![0x0042]);
        let trusted = TrustedKeys::new([public]);
        assert_eq!(read.verify_signature(&trusted), Ok(public.key_id()));
        // Re-signing replaces the signature and keeps the rest.
        let (pair2, public2) = key_pair();
        let resigned = sign(read, &pair2, public2);
        let reread = parse(&resigned.encode().unwrap()).unwrap();
        assert_eq!(reread.verify_signature(&TrustedKeys::new([public2])), Ok(public2.key_id()));
        assert_eq!(reread.verify_signature(&trusted), Err(Untrusted::UnknownKey(public2.key_id())));
        assert_eq!(reread.unknown_fields, unsigned().unknown_fields);
    }

    #[test]
    fn every_flipped_bit_in_a_signed_header_is_caught() {
        let (pair, public) = key_pair();
        let bytes = sign(unsigned(), &pair, public).encode().unwrap();
        let trusted = TrustedKeys::new([public]);
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let verdict = match parse_header(&damaged) {
                    Ok(Parsed::Complete { header, .. }) => header.verify_signature(&trusted).err(),
                    // A longer declared header is "incomplete": the reader waits for bytes that are not the
                    // header's, and the signature check then fails on them; either way nothing verifies.
                    Ok(Parsed::Incomplete { .. }) | Err(_) => Some(Untrusted::Unsigned),
                };
                assert!(verdict.is_some(), "byte {byte} bit {bit} flipped and the header still verifies");
            }
        }
    }

    #[test]
    fn unsigned_headers_and_fields_after_the_signature_are_refused() {
        let (pair, public) = key_pair();
        let trusted = TrustedKeys::new([public]);
        let plain = parse(&unsigned().encode().unwrap()).unwrap();
        assert_eq!(plain.verify_signature(&trusted), Err(Untrusted::Unsigned));

        let mut bytes = sign(unsigned(), &pair, public).encode().unwrap();
        // Append a field after the signature and fix up the header length.
        bytes.extend_from_slice(&[0x00, 0x43, 0, 0, 0, 1, b'x']);
        let len = u32::from_be_bytes(bytes[10..14].try_into().unwrap()) + 7;
        bytes[10..14].copy_from_slice(&len.to_be_bytes());
        let err = parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("last field"), "{err}");
    }

    #[test]
    fn a_read_signed_header_re_signs_with_another_key_and_keeps_its_fields() {
        let (first, first_public) = key_pair();
        let (second, second_public) = key_pair();
        let read = parse(&sign(unsigned(), &first, first_public).encode().unwrap()).unwrap();
        let stripped = read.unsigned();
        assert_eq!(stripped.signature, None);
        assert_eq!(stripped.encode().unwrap(), unsigned().encode().unwrap());
        let again = parse(&sign(stripped, &second, second_public).encode().unwrap()).unwrap();
        assert_eq!(again.verify_signature(&TrustedKeys::new([second_public])), Ok(second_public.key_id()));
        assert_eq!(
            again.verify_signature(&TrustedKeys::new([first_public])),
            Err(Untrusted::UnknownKey(second_public.key_id()))
        );
        assert_eq!(again.unknown_fields, unsigned().unknown_fields);
    }
}
