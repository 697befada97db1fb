//! What a config that reads can still get wrong, checked without touching anything: the broker URL and
//! credentials, empty
//! commands, the access protocol and server, keys of `[minimum_software_versions]` that are never looked up.
//! Types and ranges are the settings' own serde types' to check ([`super::settings`]).

use bindwave_settings::{Outcome, Schema};

use super::settings::ACCESS_PROTOCOLS;
use super::AgentConfig;

/// Adds what is wrong to `out`. Returns whether the hardware probe can run (its command is not empty).
pub(super) fn check(config: &AgentConfig, schema: &Schema, out: &mut Outcome<AgentConfig>) -> bool {
    let broker = &config.broker;
    let fallbacks = broker.fallback_urls.iter().map(|url| ("fallback_urls", url));
    for (key, text) in std::iter::once(("url", &broker.url)).chain(fallbacks) {
        let url = match bindwave_link::BrokerUrl::parse(text) {
            Ok(url) => url,
            Err(e) => {
                out.problem(&["broker", key], e.to_string());
                continue;
            }
        };
        let named = if key == "url" { "`url`".to_string() } else { format!("`fallback_urls` entry {text:?}") };
        if url.tls && broker.ca_file.is_none() {
            out.problem(
                &["broker", "ca_file"],
                format!(
                    "{named} in [broker] is mqtts:// but no `ca_file` is set: give the CA (PEM) the broker's \
                     certificate is verified against"
                ),
            );
        }
        if !url.tls && !broker.tls().is_empty() {
            out.problem(
                &["broker", key],
                format!("TLS files are set in [broker] but {named} is plain mqtt://: use mqtts://host:port"),
            );
        }
        if !url.tls && !plain_mqtt_allowed(config) {
            out.problem(
                &["broker", key],
                "plain mqtt:// sends the broker password and the phone's reports in clear: use mqtts://host:port with \
                 `ca_file`, or, on a lab bench only, set `insecure_lab = true` in [trust]"
                    .to_string(),
            );
        }
    }
    if broker.client_cert.is_some() != broker.client_key.is_some() {
        let missing = if broker.client_cert.is_some() { "client_key" } else { "client_cert" };
        out.problem(
            &["broker", missing],
            "`client_cert` and `client_key` in [broker] go together: set both or neither".to_string(),
        );
    }
    if config.broker.password.is_some() && config.broker.username.is_none() {
        out.problem(
            &["broker", "password"],
            "`password` in [broker] is set without a `username`: MQTT sends a password only with a username; \
             set both"
                .to_string(),
        );
    }
    let probe_command = config.hardware_probe.as_ref().and_then(|p| p.command.as_ref());
    let commands = [
        (["installer", "command"], config.installer.command.as_ref()),
        (["health", "reboot_command"], config.health.reboot_command.as_ref()),
        (["health", "check_command"], config.health.check_command.as_ref()),
        (["indicator", "command"], config.indicator.command.as_ref()),
        (["hardware_probe", "command"], probe_command),
    ];
    let mut probe_usable = true;
    for ([section, key], command) in commands {
        if command.is_some_and(|c| c.first().is_none_or(|program| program.trim().is_empty())) {
            let path = [section.to_string(), key.to_string()];
            let example = schema.example(&path).map(ToString::to_string).unwrap_or_default();
            out.problem(
                &[section, key],
                format!(
                    "`{key}` in [{section}] is empty: give the program and its arguments, e.g. {example}, or remove \
                     the key"
                ),
            );
            probe_usable &= section != "hardware_probe";
        }
    }
    if let Some(access) = &config.access {
        if !ACCESS_PROTOCOLS.contains(&access.protocol.to_ascii_lowercase().as_str()) {
            out.problem(
                &["access", "protocol"],
                format!("access protocol {:?} is not supported: use http, https, ftp or ftps", access.protocol),
            );
        }
        if access.server.trim().is_empty() {
            out.problem(&["access", "server"], "`server` in [access] is empty: give the file server's host name");
        }
    }
    if let Some(zone) = &config.timezone {
        if let Err(why) = zone_name(zone) {
            out.problem(&["timezone"], why);
        }
    }
    for key in config.minimum_software_versions.keys() {
        let why = match key.trim().parse::<u16>() {
            Ok(n) if n.to_string() == *key => continue,
            Ok(n) => format!("is never looked up: write the hardware level as \"{n}\""),
            Err(_) => "is not a hardware level: use a number from 0 to 65535, e.g. \"3\" = \"V3 R2.0.0\"".into(),
        };
        let shown = toml::Value::String(key.clone());
        out.problem(&["minimum_software_versions", key], format!("key {shown} in [minimum_software_versions] {why}"));
    }
    probe_usable
}

/// Whether `zone` reads as an IANA time zone name (`Europe/Berlin`, `America/Argentina/Buenos_Aires`, `UTC`).
/// Only its form: the phone carries no zone database; the controller, which has one, looks it up and falls
/// back to the rollout's zone for a name it does not know.
fn zone_name(zone: &str) -> Result<(), String> {
    let formed = !zone.is_empty()
        && zone.len() <= 64
        && zone.split('/').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    match formed {
        true => Ok(()),
        false => Err(format!(
            "timezone {zone:?} is not an IANA time zone name: use one such as \"Europe/Berlin\" or \"UTC\""
        )),
    }
}

/// May the phone talk plain `mqtt://` to its broker? Only a lab phone (`insecure_lab = true` in `[trust]`): on
/// plain MQTT the broker password and every report cross the network in clear.
fn plain_mqtt_allowed(config: &AgentConfig) -> bool {
    config.trust.insecure_lab
}

#[cfg(test)]
mod tests {
    use super::zone_name;

    #[test]
    fn time_zones_are_checked_for_their_form() {
        for ok in ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince"] {
            assert!(zone_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Europe/", "/Berlin", "Europe Berlin", "../etc/passwd", "Ürope/Berlin", &"A".repeat(65)] {
            let e = zone_name(bad).unwrap_err();
            assert!(e.contains("IANA time zone name"), "{bad}: {e}");
        }
    }
}
