//! Fleet-scale performance, measured against its floors and targets in one run: a rollout to N simulated
//! phones (the real `bindwave serve`, `bindwave simulate` and `bindwave rollout` processes) beside the raw MQTT
//! floor of the same traffic through the same broker, the controller's durable ingest of final reports, and a
//! reconnect storm beside its floor. `BENCHMARKS.md` says what each figure means.
//!
//! Run with `bench/fleet.sh` (it builds what this needs in release mode first).

#[path = "../bench_fleet/mod.rs"]
mod bench_fleet;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = bench_fleet::args::Args::parse();
    match bench_fleet::run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
