//! Who may use which topic: the rule the embedded broker enforces, and the shipped Mosquitto ACL repeats.
//!
//! Every device has its own lane. A device may publish only its own `hello`, `presence` and `reports`, and
//! subscribe only to its own `commands`, each by its exact topic: a device that uses a wildcard is refused,
//! even one that would match only its own topics. The controller reads and writes everything.

use bindwave_proto::wire::{parse_topic, DeviceId, TopicKind};

/// The controller's MQTT identity (username or certificate CN). A colon cannot occur in a device id, so no
/// device can claim it.
pub const CONTROLLER_IDENTITY: &str = "bindwave:controller";

/// Who a client is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The controller: reads every device's topics, writes every device's commands.
    Controller,
    /// One phone: its own lane only.
    Device(DeviceId),
}

impl Identity {
    /// The identity a username or certificate CN names: the controller's, a device id, or none.
    pub fn parse(name: &str) -> Option<Identity> {
        if name == CONTROLLER_IDENTITY {
            return Some(Identity::Controller);
        }
        DeviceId::new(name).ok().map(Identity::Device)
    }

    /// The name a client uses as its username (or certificate CN) and its MQTT client id.
    pub fn name(&self) -> &str {
        match self {
            Identity::Controller => CONTROLLER_IDENTITY,
            Identity::Device(id) => id.as_str(),
        }
    }
}

/// The topic kinds a device publishes on its own lane.
const DEVICE_PUBLISHES: [TopicKind; 3] = [TopicKind::Hello, TopicKind::Presence, TopicKind::Reports];

/// May `identity` publish on `topic`?
pub fn allowed_publish(identity: &Identity, topic: &str) -> bool {
    match identity {
        Identity::Controller => true,
        Identity::Device(me) => own_lane(me, topic).is_some_and(|kind| DEVICE_PUBLISHES.contains(&kind)),
    }
}

/// May `identity` subscribe to `filter`?
pub fn allowed_subscribe(identity: &Identity, filter: &str) -> bool {
    match identity {
        Identity::Controller => true,
        Identity::Device(me) => own_lane(me, filter) == Some(TopicKind::Commands),
    }
}

/// The kind of `topic` when it is exactly one of `me`'s own topics (no wildcard, no other device).
fn own_lane(me: &DeviceId, topic: &str) -> Option<TopicKind> {
    if topic.contains(['+', '#']) {
        return None;
    }
    let (device, kind) = parse_topic(topic)?;
    (device == *me && kind.topic(me) == topic).then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Identity {
        Identity::Device(DeviceId::new(id).unwrap())
    }

    const ALL: [TopicKind; 4] = [TopicKind::Hello, TopicKind::Presence, TopicKind::Commands, TopicKind::Reports];

    #[test]
    fn a_device_publishes_its_hello_presence_and_reports_and_nothing_else_of_its_own() {
        let a = device("phone-a");
        let me = DeviceId::new("phone-a").unwrap();
        for kind in ALL {
            let expected = kind != TopicKind::Commands;
            assert_eq!(allowed_publish(&a, &kind.topic(&me)), expected, "{kind:?}");
            assert_eq!(allowed_subscribe(&a, &kind.topic(&me)), !expected, "{kind:?}");
        }
    }

    #[test]
    fn a_device_touches_no_other_devices_lane() {
        let a = device("phone-a");
        for other in ["phone-b", "phone-a2", "phone-", "PHONE-A"] {
            let other = DeviceId::new(other).unwrap();
            for kind in ALL {
                assert!(!allowed_publish(&a, &kind.topic(&other)), "{kind:?} of {other}");
                assert!(!allowed_subscribe(&a, &kind.topic(&other)), "{kind:?} of {other}");
            }
        }
    }

    #[test]
    fn a_device_uses_no_wildcard_even_one_matching_only_itself() {
        let a = device("phone-a");
        for filter in [
            "#",
            "+",
            "bindwave/#",
            "bindwave/v1/devices/#",
            "bindwave/v1/devices/+/commands",
            "bindwave/v1/devices/phone-a/#",
            "bindwave/v1/devices/phone-a/+",
            "+/v1/devices/phone-a/commands",
            "bindwave/+/devices/phone-a/commands",
            "$share/g/bindwave/v1/devices/phone-a/commands",
        ] {
            assert!(!allowed_subscribe(&a, filter), "{filter}");
            assert!(!allowed_publish(&a, filter), "{filter}");
        }
    }

    #[test]
    fn odd_topics_are_refused() {
        let a = device("phone-a");
        for topic in [
            "",
            "/",
            "bindwave/v1/devices/phone-a",
            "bindwave/v1/devices/phone-a/",
            "bindwave/v1/devices/phone-a/hello/",
            "bindwave/v1/devices/phone-a/hello/extra",
            "bindwave/v1/devices/phone-a/Hello",
            "bindwave/v1/devices//hello",
            "/bindwave/v1/devices/phone-a/hello",
            "bindwave/v2/devices/phone-a/hello",
            "bindwave/v1/devices/phone-a/commands/x",
            "$SYS/broker/clients",
            "bindwave/v1/devices/phone-a/hello\0",
        ] {
            assert!(!allowed_publish(&a, topic), "{topic:?}");
            assert!(!allowed_subscribe(&a, topic), "{topic:?}");
        }
    }

    #[test]
    fn the_controller_reads_and_writes_everything() {
        let c = Identity::Controller;
        let b = DeviceId::new("phone-b").unwrap();
        for kind in ALL {
            assert!(allowed_publish(&c, &kind.topic(&b)));
            assert!(allowed_subscribe(&c, &kind.filter_all()));
        }
        assert!(allowed_subscribe(&c, "#"));
    }

    #[test]
    fn identities_are_the_controller_or_a_valid_device_id() {
        assert_eq!(Identity::parse("bindwave:controller"), Some(Identity::Controller));
        assert_eq!(Identity::parse("phone-a"), Some(device("phone-a")));
        assert_eq!(device("phone-a").name(), "phone-a");
        assert_eq!(Identity::Controller.name(), CONTROLLER_IDENTITY);
        for bad in ["", "bindwave:other", "a/b", "a+b", "#", "x".repeat(65).as_str()] {
            assert_eq!(Identity::parse(bad), None, "{bad:?}");
        }
    }
}
