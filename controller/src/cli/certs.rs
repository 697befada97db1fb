//! `bindwave certs dev`: a TLS lab in one step.

use std::path::Path;

use bindwave_proto::wire::DeviceId;

use crate::broker::acl::CONTROLLER_IDENTITY;
use crate::certs::{server_hosts, write_pair, DevCa};
use crate::ControllerError;

/// Writes a development CA, a server certificate, the controller's client certificate and one per device into
/// `out`, and says what it wrote.
pub(super) fn dev(out: &Path, devices: &[String], count: u32, hosts: &[String]) -> Result<(), ControllerError> {
    let mut ids = devices.iter().map(|d| DeviceId::new(d.as_str())).collect::<Result<Vec<_>, _>>()?;
    for i in 1..=count {
        ids.push(DeviceId::new(format!("phone-{i:05}"))?);
    }
    std::fs::create_dir_all(out).map_err(crate::error::io_err("create", out))?;
    let ca = DevCa::generate()?;
    let hosts = server_hosts(hosts);
    let mut written = vec![write_pair(out, "ca", ca.pem())?];
    written.push(write_pair(out, "server", &ca.server(&hosts)?)?);
    written.push(write_pair(out, "controller", &ca.client(CONTROLLER_IDENTITY)?)?);
    for id in &ids {
        written.push(write_pair(out, id.as_str(), &ca.client(id.as_str())?)?);
    }
    println!("development CA and certificates in {}:", out.display());
    println!("  ca.pem, ca.key                  the CA (agents and the controller verify the broker with ca.pem)");
    println!("  server.pem, server.key          the broker's certificate, for {}", hosts.join(", "));
    println!("  controller.pem, controller.key  the controller's client certificate (CN {CONTROLLER_IDENTITY})");
    for id in &ids {
        println!("  {id}.pem, {id}.key  a device's client certificate (CN {id})");
    }
    println!("private keys have mode 0600; {} files in all", written.len() * 2);
    Ok(())
}
