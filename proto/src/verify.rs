//! The streaming bind verifier: feed it the bytes of a bind as they arrive, in chunks of any size.
//!
//! It holds at most the header in memory. As soon as the header is complete it hands it back, so the
//! caller can apply the compatibility rule and stop the download of a bind that is not for this phone. It
//! then passes payload bytes through (for the caller to write) while hashing them, and on [`Verifier::finish`]
//! checks the file's size and SHA-256 against the command and the payload's against the header.
//! No IO happens here.

use crate::bind::{self, Parsed, MAX_HEADER_LEN, PRELUDE_LEN};
use crate::sha256::Sha256;
use crate::wire::Reason;
use crate::BindHeader;

/// What the command promised about the whole file. An upload of a new image promises nothing: then only the
/// header's own length and digest are checked.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

pub struct Verifier {
    expected: Expected,
    /// Header bytes gathered so far; emptied once the header is parsed.
    head: Vec<u8>,
    header: Option<BindHeader>,
    file_hash: Sha256,
    payload_hash: Sha256,
    received: u64,
    /// The file's length as the header declares it, once known.
    file_len: u64,
}

/// What one chunk yielded.
#[derive(Debug, Default)]
pub struct Fed<'a> {
    /// The header, on the chunk that completed it (once per bind).
    pub header: Option<BindHeader>,
    /// Payload bytes in this chunk, for the caller to write out.
    pub payload: &'a [u8],
}

impl Verifier {
    pub fn new(expected: Expected) -> Self {
        Verifier {
            expected,
            head: Vec::with_capacity(PRELUDE_LEN),
            header: None,
            file_hash: Sha256::new(),
            payload_hash: Sha256::new(),
            received: 0,
            file_len: 0,
        }
    }

    /// Bytes of the file received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn feed<'a>(&mut self, chunk: &'a [u8]) -> Result<Fed<'a>, Reason> {
        self.received += chunk.len() as u64;
        if let Some(size) = self.expected.size.filter(|&s| self.received > s) {
            return Err(Reason::SizeMismatch { expected: size, actual: self.received });
        }
        self.file_hash.update(chunk);
        let mut fed = Fed::default();
        let mut rest = chunk;
        if self.header.is_none() {
            // Take no more than the header can need: the prelude first, then exactly the declared length.
            loop {
                match bind::parse_header(&self.head).map_err(malformed)? {
                    Parsed::Incomplete { needed } => {
                        debug_assert!(self.head.len() + needed <= PRELUDE_LEN + MAX_HEADER_LEN as usize);
                        if rest.is_empty() {
                            return Ok(fed);
                        }
                        let take = needed.min(rest.len());
                        self.head.extend_from_slice(&rest[..take]);
                        rest = &rest[take..];
                    }
                    Parsed::Complete { header, header_len } => {
                        let total = header_len as u64 + header.payload_len;
                        if let Some(size) = self.expected.size.filter(|&s| s != total) {
                            return Err(Reason::SizeMismatch { expected: size, actual: total });
                        }
                        self.file_len = total;
                        self.head = Vec::new();
                        self.header = Some(header.clone());
                        fed.header = Some(header);
                        break;
                    }
                }
            }
        }
        if self.received > self.file_len {
            return Err(Reason::SizeMismatch { expected: self.file_len, actual: self.received });
        }
        self.payload_hash.update(rest);
        fed.payload = rest;
        Ok(fed)
    }

    /// Checks what arrived against the command and the header; returns the header when all agree.
    pub fn finish(self) -> Result<Verified, Reason> {
        let Some(header) = self.header else {
            return Err(Reason::MalformedBind {
                detail: format!("file ended after {} bytes, inside the header", self.received),
                field: None,
            });
        };
        if self.received != self.file_len {
            return Err(Reason::SizeMismatch { expected: self.file_len, actual: self.received });
        }
        let file_digest = hex::encode(self.file_hash.finish());
        if let Some(expected) = self.expected.sha256.filter(|e| !file_digest.eq_ignore_ascii_case(e)) {
            return Err(Reason::ChecksumMismatch { expected: expected.to_lowercase(), actual: file_digest });
        }
        let payload_digest = self.payload_hash.finish();
        if payload_digest != header.payload_sha256 {
            return Err(Reason::ChecksumMismatch {
                expected: header.payload_sha256_hex(),
                actual: hex::encode(payload_digest),
            });
        }
        Ok(Verified { header, file_sha256: file_digest, file_len: self.file_len })
    }
}

/// A bind that arrived whole and matched every length and digest.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: BindHeader,
    /// SHA-256 of the whole file, lowercase hex: the image's content address.
    pub file_sha256: String,
    pub file_len: u64,
}

fn malformed(e: crate::ProtoError) -> Reason {
    Reason::MalformedBind { detail: e.to_string(), field: e.field().map(|f| f.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HardwareLevel;

    fn bind(payload: &[u8]) -> Vec<u8> {
        bind::pack("V3 R3.18.0".parse().unwrap(), Some(vec![HardwareLevel(3)]), payload).unwrap()
    }

    fn expected(file: &[u8]) -> Expected {
        Expected { size: Some(file.len() as u64), sha256: Some(hex::encode(crate::sha256::digest(file))) }
    }

    fn run(file: &[u8], exp: Expected, chunk: usize) -> (Result<Verified, Reason>, Vec<u8>, usize) {
        let mut v = Verifier::new(exp);
        let mut out = Vec::new();
        let mut headers = 0;
        for c in file.chunks(chunk.max(1)) {
            match v.feed(c) {
                Ok(fed) => {
                    headers += usize::from(fed.header.is_some());
                    out.extend_from_slice(fed.payload);
                }
                Err(e) => return (Err(e), out, headers),
            }
        }
        (v.finish(), out, headers)
    }

    #[test]
    fn any_chunking_yields_the_header_once_and_the_exact_payload() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let file = bind(&payload);
        for chunk in [1, 2, 7, 13, 14, 15, 64, 1000, file.len()] {
            let (res, out, headers) = run(&file, expected(&file), chunk);
            assert!(res.is_ok(), "chunk {chunk}: {res:?}");
            assert_eq!(headers, 1);
            assert_eq!(out, payload, "chunk {chunk}");
        }
    }

    #[test]
    fn the_header_arrives_before_the_payload() {
        let file = bind(&[9u8; 10_000]);
        let mut v = Verifier::new(expected(&file));
        let (_, len) = match bind::parse_header(&file).unwrap() {
            Parsed::Complete { header, header_len } => (header, header_len),
            _ => unreachable!(),
        };
        let fed = v.feed(&file[..len]).unwrap();
        assert!(fed.header.is_some() && fed.payload.is_empty());
    }

    #[test]
    fn corruption_is_caught() {
        let file = bind(b"payload payload payload");
        let mut bad = file.clone();
        *bad.last_mut().unwrap() ^= 1;
        // The command's digest is of the good file: the file digest fails.
        assert!(matches!(run(&bad, expected(&file), 5).0, Err(Reason::ChecksumMismatch { .. })));
        // The command matches the corrupted file, but the header's payload digest does not.
        assert!(matches!(run(&bad, expected(&bad), 5).0, Err(Reason::ChecksumMismatch { .. })));
    }

    #[test]
    fn size_mismatches_fail_early() {
        let file = bind(&[1u8; 100]);
        let mut exp = expected(&file);
        exp.size = exp.size.map(|s| s - 1);
        // The header already disagrees with the command.
        assert!(matches!(run(&file, exp, 1000).0, Err(Reason::SizeMismatch { .. })));
        // A truncated file.
        let (res, ..) = run(&file[..file.len() - 10], expected(&file), 7);
        assert!(matches!(res, Err(Reason::SizeMismatch { .. })), "{res:?}");
        // Without expectations (an upload), the header's own length still bounds the file.
        let mut long = file.clone();
        long.push(0);
        let (res, ..) = run(&long, Expected::default(), 7);
        assert!(matches!(res, Err(Reason::SizeMismatch { .. })), "{res:?}");
        let (res, ..) = run(&file, Expected::default(), 7);
        assert_eq!(res.unwrap().file_len, file.len() as u64);
        // A file that ends inside the header.
        let (res, ..) = run(&file[..20], expected(&file), 7);
        assert!(matches!(res, Err(Reason::MalformedBind { .. })), "{res:?}");
    }

    #[test]
    fn a_malformed_field_is_named() {
        let mut file = bind(b"x");
        // Corrupt the software version's length so that it overruns the header.
        file[PRELUDE_LEN + 5] = 0xff;
        let (res, ..) = run(&file, Expected::default(), 4);
        match res {
            Err(Reason::MalformedBind { field, .. }) => assert_eq!(field.as_deref(), Some("software_version")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_from_the_first_bytes() {
        let junk = b"<html>404 not found</html>".to_vec();
        let (res, out, _) = run(&junk, expected(&junk), 3);
        assert!(matches!(res, Err(Reason::MalformedBind { .. })));
        assert!(out.is_empty());
    }
}
