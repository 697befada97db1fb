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
use crate::{ProtoError, SoftwareVersion};

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
/// The largest signature accepted.
pub const MAX_SIGNATURE_LEN: usize = 8 * 1024;

/// A phone's hardware level, as printed in the admin manual's "Supported Hardware Level".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
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
    pub signature: Option<Vec<u8>>,
    /// Tags of non-critical fields this build skipped (a newer bind read by an older agent).
    pub skipped_fields: Vec<u16>,
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
    let header = parse_fields(&buf[PRELUDE_LEN..total])?;
    Ok(Parsed::Complete { header, header_len: total })
}

fn parse_fields(mut fields: &[u8]) -> Result<BindHeader, ProtoError> {
    let mut software_version = None;
    let mut hardware_levels = None;
    let mut payload_len = None;
    let mut payload_sha256 = None;
    let mut signature = None;
    let mut skipped_fields = Vec::new();

    while !fields.is_empty() {
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
                if value.is_empty() || value.len() > MAX_SIGNATURE_LEN {
                    return Err(bad_len("1 to 8192 bytes"));
                }
                set_once(&mut signature, value.to_vec(), field)?;
            }
            _ if raw_tag & CRITICAL != 0 => return Err(ProtoError::UnsupportedCriticalField { field }),
            _ => skipped_fields.push(raw_tag),
        }
    }

    let missing = |t| ProtoError::MissingField { field: FieldName(t) };
    Ok(BindHeader {
        software_version: software_version.ok_or(missing(tag::SOFTWARE_VERSION))?,
        hardware_levels,
        payload_len: payload_len.ok_or(missing(tag::PAYLOAD_LENGTH))?,
        payload_sha256: payload_sha256.ok_or(missing(tag::PAYLOAD_SHA256))?,
        signature,
        skipped_fields,
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
            skipped_fields: Vec::new(),
        }
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
        if let Some(sig) = &self.signature {
            put(tag::SIGNATURE, sig);
        }
        let mut out = Vec::with_capacity(PRELUDE_LEN + fields.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        out.extend_from_slice(&fields);
        // Round-trip through the parser: the one place that knows every bound.
        match parse_header(&out)? {
            Parsed::Complete { .. } => Ok(out),
            Parsed::Incomplete { .. } => Err(ProtoError::HeaderTooLarge { declared: u32::MAX, limit: MAX_HEADER_LEN }),
        }
    }
}

/// A whole bind in memory: header then payload. For tests, demos and small images; large payloads are
/// streamed by the caller around [`BindHeader::encode`].
pub fn pack(
    software_version: SoftwareVersion,
    hardware_levels: Option<Vec<HardwareLevel>>,
    payload: &[u8],
) -> Result<Vec<u8>, ProtoError> {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(payload).into();
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
        assert_eq!(h.skipped_fields, vec![0x0042]);

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
