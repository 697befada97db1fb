//! The streaming verifier on any bytes, fed in chunks whose sizes the input chooses (the first byte), as a
//! download delivers them: it holds at most a header, hands payload bytes through, and ends with a verdict.
#![no_main]

use bindwave_proto::verify::{Expected, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut v = Verifier::new(Expected { size: Some(rest.len() as u64), sha256: None });
    let mut passed = 0;
    for piece in rest.chunks(chunk) {
        match v.feed(piece) {
            Ok(fed) => passed += fed.payload.len(),
            Err(_) => return,
        }
    }
    assert!(passed <= rest.len());
    let _ = v.finish();
});
