//! Properties of the bind format, the version parser and the compatibility rule, over generated inputs:
//! every header survives encoding and parsing unchanged, a header arriving a byte at a time is never complete
//! early and never refused, no input makes a parser panic, and the rule agrees with a reference table written
//! out from the admin manual.

use bindwave_proto::bind::{pack, parse_header, MAGIC, MAX_PAYLOAD_LEN};
use bindwave_proto::compat::Basis;
use bindwave_proto::{decide, BindHeader, Decision, DeviceProfile, HardwareLevel, Parsed, SoftwareVersion};
use proptest::prelude::*;

/// A version in either spelling, with parts small enough to stay within the parser's 64 characters.
fn version() -> impl Strategy<Value = SoftwareVersion> {
    let parts = prop::collection::vec(0u32..100_000, 2..=8);
    (parts, any::<bool>()).prop_map(|(parts, phone_style)| {
        let dotted = |p: &[u32]| p.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
        let text = if phone_style { format!("V{} R{}", parts[0], dotted(&parts[1..])) } else { dotted(&parts) };
        text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
    })
}

fn levels() -> impl Strategy<Value = Option<Vec<HardwareLevel>>> {
    prop::option::of(prop::collection::vec(any::<u16>().prop_map(HardwareLevel), 1..6))
}

fn header() -> impl Strategy<Value = BindHeader> {
    (version(), levels(), 0..=MAX_PAYLOAD_LEN, any::<[u8; 32]>())
        .prop_map(|(v, l, len, sha)| BindHeader::new(v, l, len, sha))
}

/// The parts compared as the manual's "at least": numerically, left to right, missing parts as zero.
fn at_least(a: &SoftwareVersion, b: &SoftwareVersion) -> bool {
    let n = a.parts().len().max(b.parts().len());
    let pad = |v: &SoftwareVersion| {
        let mut p = v.parts().to_vec();
        p.resize(n, 0);
        p
    };
    pad(a) >= pad(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_header_parses_back_to_itself(h in header()) {
        let bytes = h.encode().unwrap();
        match parse_header(&bytes).unwrap() {
            Parsed::Complete { header, header_len } => {
                prop_assert_eq!(header_len, bytes.len());
                prop_assert_eq!(header, h);
            }
            other => prop_assert!(false, "the whole header read as {:?}", other),
        }
    }

    /// Every strict prefix of a header is incomplete, never refused and never taken for a whole header:
    /// what a download sees as the bytes arrive.
    #[test]
    fn a_header_arriving_in_pieces_is_incomplete_until_its_last_byte(h in header()) {
        let bytes = h.encode().unwrap();
        for end in 0..bytes.len() {
            match parse_header(&bytes[..end]) {
                Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1 && end + needed <= bytes.len()),
                other => prop_assert!(false, "{} of {} bytes read as {:?}", end, bytes.len(), other),
            }
        }
    }

    /// Any bytes, and a real bind with bytes changed anywhere in its header: the parser answers, and never
    /// panics or asks for more than a header can hold.
    #[test]
    fn no_input_makes_the_header_parser_panic(
        noise in prop::collection::vec(any::<u8>(), 0..512),
        h in header(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let _ = parse_header(&noise);
        let mut magic = MAGIC.to_vec();
        magic.extend_from_slice(&noise);
        let _ = parse_header(&magic);
        let mut bytes = h.encode().unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        if let Ok(Parsed::Incomplete { needed }) = parse_header(&bytes) {
            prop_assert!(needed <= 1 << 20, "asks for {} more bytes", needed);
        }
    }

    #[test]
    fn a_version_reads_back_from_its_display(v in version()) {
        let again: SoftwareVersion = v.to_string().parse().unwrap();
        prop_assert_eq!(&again, &v);
        prop_assert_eq!(again.to_string(), v.to_string());
    }

    #[test]
    fn versions_order_by_their_parts(a in version(), b in version()) {
        prop_assert_eq!(a >= b, at_least(&a, &b));
        prop_assert_eq!(a == b, at_least(&a, &b) && at_least(&b, &a));
    }

    #[test]
    fn no_text_makes_the_version_parser_panic(text in ".{0,80}") {
        let _ = text.parse::<SoftwareVersion>();
    }

    /// The rule against the manual's table: the hardware-level field decides when the header has one, the
    /// software level when it has none; compatible or Override set proceeds, and Override is recorded only
    /// where it changed the outcome.
    #[test]
    fn the_rule_agrees_with_the_manuals_table(
        h in header(),
        level in prop_oneof![any::<u16>(), 0u16..8],
        minimum in version(),
        override_set in any::<bool>(),
    ) {
        let device = DeviceProfile { hardware_level: HardwareLevel(level), minimum_software_version: minimum };
        let (basis, compatible) = match &h.hardware_levels {
            Some(levels) => (Basis::HardwareLevel, levels.contains(&device.hardware_level)),
            None => (Basis::SoftwareLevel, at_least(&h.software_version, &device.minimum_software_version)),
        };
        let d = decide(&h, &device, override_set);
        prop_assert_eq!(d.proceeds(), compatible || override_set);
        prop_assert_eq!(d.override_used(), !compatible && override_set);
        let got = match &d {
            Decision::Proceed { basis, .. } | Decision::Reject { basis, .. } => *basis,
        };
        prop_assert_eq!(got, basis);
    }
}

proptest! {
    /// A payload over the limit is refused when the header is written (the parser refuses it when read).
    #[test]
    fn a_header_over_the_payload_limit_is_refused_when_written(h in header(), over in 1..=u64::MAX - MAX_PAYLOAD_LEN) {
        let h = BindHeader::new(h.software_version, h.hardware_levels, MAX_PAYLOAD_LEN + over, h.payload_sha256);
        prop_assert!(h.encode().is_err());
    }
}

/// A whole bind, packed from a payload, parses to the header `pack` wrote.
#[test]
fn a_packed_bind_starts_with_its_header() {
    let bytes = pack("V3 R3.18.0".parse().unwrap(), Some(vec![HardwareLevel(3)]), b"firmware").unwrap();
    let Ok(Parsed::Complete { header, header_len }) = parse_header(&bytes) else { panic!("not a whole header") };
    assert_eq!(&bytes[header_len..], b"firmware");
    assert_eq!(header.payload_len, 8);
}
