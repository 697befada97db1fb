//! Every MQTT message decoder, on any payload and any topic: the controller's (hello, presence, report) and the
//! phone's (a signed command message, a bare command). Each decodes or says why, never panics; what decodes
//! encodes again to a payload that decodes the same.
#![no_main]

use bindwave_proto::wire::{parse_topic, Command, CommandMessage, Hello, Presence, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Hello::from_json(data) {
        let again = Hello::from_json(&serde_json::to_vec(&h).unwrap()).expect("a hello re-encodes");
        assert_eq!(again, h);
    }
    if let Ok(p) = Presence::from_json(data) {
        assert_eq!(Presence::from_json(&serde_json::to_vec(&p).unwrap()).unwrap(), p);
    }
    let _ = Report::from_json(data);
    let _ = Command::from_json(data);
    let _ = CommandMessage::from_json(data);
    if let Ok(topic) = std::str::from_utf8(data) {
        let _ = parse_topic(topic);
    }
});
