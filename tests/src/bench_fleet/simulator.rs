//! `bindwave simulate`: N real agents, one MQTT connection each, in a process of their own.
//!
//! Every argument the bench gives the simulator is in [`args`], so that how the phones keep their state is
//! changed in one place: their state directories go on tmpfs (the run's `--phone-state-root`, by default
//! /dev/shm), and they write it without fsync (`--state nosync`), because a real fleet has a flash chip per
//! phone, not one shared disk.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use bindwave_tests::Proc;

use super::procs;

/// The simulator's command line after `bindwave`: `devices` phones against `broker`, with their state under
/// `state_dir`, pinning the controller's command key (`controller_key`, its `controller.key.pub`) as the
/// README's lab example does. Without a release key they are lab phones: they take unsigned binds.
pub fn args(devices: usize, broker: &str, state_dir: &Path, controller_key: &Path) -> Vec<OsString> {
    vec![
        "simulate".into(),
        "--devices".into(),
        devices.to_string().into(),
        "--broker".into(),
        broker.into(),
        "--state-dir".into(),
        state_dir.into(),
        "--controller-key".into(),
        controller_key.into(),
        "--state".into(),
        "nosync".into(),
    ]
}

/// Starts the simulator, its log in `dir/simulator.log`.
pub fn start(dir: &Path, devices: usize, broker: &str, state_dir: &Path, controller_key: &Path) -> Result<Proc> {
    let mut cmd = Command::new(procs::sibling("bindwave")?);
    cmd.args(args(devices, broker, state_dir, controller_key));
    procs::spawn("simulator", cmd, dir)
}
