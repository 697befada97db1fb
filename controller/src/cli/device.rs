//! `bindwave device credentials`: a device's MQTT login for the embedded broker.

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
