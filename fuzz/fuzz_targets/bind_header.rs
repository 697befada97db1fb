//! The bind header parser on any bytes: it answers (complete, incomplete, or a reason), never panics, and never
//! asks for more than a header can hold. A complete header encodes back to bytes that parse to it again.
#![no_main]

use bindwave_proto::bind::{parse_header, MAX_HEADER_LEN};
use bindwave_proto::Parsed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_header(data) {
        Ok(Parsed::Incomplete { needed }) => assert!(needed <= MAX_HEADER_LEN as usize, "asks for {needed} more bytes"),
        Ok(Parsed::Complete { header, header_len }) => {
            assert!(header_len <= data.len());
            let again = header.clone().unsigned().encode().expect("a parsed header encodes");
            match parse_header(&again) {
                Ok(Parsed::Complete { header: h, .. }) => assert_eq!(h, header.unsigned()),
                other => panic!("a re-encoded header read as {other:?}"),
            }
        }
        Err(_) => {}
    }
});
