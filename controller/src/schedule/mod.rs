//! When commands go out: maintenance windows in the phones' time zones ([`window`], [`zone`]) and the rate
//! commands are sent at ([`pace`]), and what they make of a plan's timing ([`forecast`]). Pure: time is an argument, and the zone rules are the IANA database
//! bundled into the controller.

pub mod forecast;
pub mod pace;
pub mod window;
pub mod zone;

pub use pace::{Pace, Ramp, Rate};
pub use window::Window;
pub use zone::{occurrences, openness, zone, zone_or_utc, Openness};
