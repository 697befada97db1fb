//! The software-version parser on any text: a version or a reason, never a panic; what it reads displays as
//! text that reads back to the same version.
#![no_main]

use bindwave_proto::SoftwareVersion;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(v) = text.parse::<SoftwareVersion>() {
        let again: SoftwareVersion = v.to_string().parse().expect("a version's display reads back");
        assert_eq!(again, v);
    }
});
