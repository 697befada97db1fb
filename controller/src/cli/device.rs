//! `bindwave device credentials`: a device's MQTT login for the embedded broker. `bindwave device show`: one
//! device's hello, history and jobs, as the API gives them.

use bindwave_proto::wire::DeviceId;

use super::output::{emit, Format};
use crate::broker::acl::Identity;
use crate::ControllerError;

/// Prints the password of device `id` (its username is its id), from `data_dir/broker.secret`.
pub(super) fn credentials(id: &str, data_dir: &std::path::Path, output: Format) -> Result<(), ControllerError> {
    let device = DeviceId::new(id)?;
    let secret = super::serve::load_secret(data_dir)?;
    let password = secret.password(&Identity::Device(device.clone()));
    let login =
        serde_json::json!({ "device_id": device, "username": device, "client_id": device, "password": password });
    emit(&login, output, |_| println!("{password}"))
}

/// `bindwave device show ID` as a table.
pub(super) fn print_detail(d: &crate::api::DeviceDetail) {
    let dev = &d.device;
    let state = if dev.online { "online" } else { "offline" };
    println!("device {}  {state}  last seen {}", dev.id, super::rollout::time(dev.last_seen));
    match &dev.hello {
        Some(h) => println!(
            "model {}  part number {}  hardware level {} ({})  running {}  minimum {}  agent {}",
            h.model.as_deref().unwrap_or("-"),
            h.part_number,
            h.hardware_level,
            h.hardware_level_source.as_str(),
            h.software_version,
            h.minimum_software_version,
            h.agent_version
        ),
        None => println!("never said hello"),
    }
    if !dev.changes.is_empty() {
        println!();
        let mut t = crate::table::Table::new(["CHANGED (UTC)", "SOFTWARE", "HARDWARE LEVEL"]);
        for c in &dev.changes {
            t.row([
                super::rollout::time(c.at),
                format!("{} -> {}", c.from_version, c.to_version),
                format!("{} -> {}", c.from_level, c.to_level),
            ]);
        }
        print!("{t}");
    }
    println!();
    let mut t = crate::table::Table::new(["ROLLOUT", "WAVE", "ATTEMPT", "OUTCOME", "REASON", "UPDATED (UTC)"]);
    for j in &d.jobs {
        t.row([
            j.job.rollout.to_string(),
            (j.job.wave + 1).to_string(),
            j.job.attempt.to_string(),
            j.job.phase.outcome().as_str().to_string(),
            j.reason_text.clone().unwrap_or_default(),
            super::rollout::time(j.job.updated_at),
        ]);
    }
    print!("{t}");
}
