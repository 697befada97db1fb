//! `bindwave demo` at the scale the README promises: a thousand simulated phones, each with its own MQTT
//! connection, through the embedded broker.

use std::process::Command;

use bindwave_tests::{assert_success, bin, run};

#[test]
fn the_demo_rolls_out_to_a_thousand_phones() {
    let n = 1000;
    let out = run(Command::new(bin("bindwave")).args(["demo", "--devices", &n.to_string()]));
    assert_success(&out, &["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The demo's fleet: models cycle through hardware levels 2,3,4,5; one phone in seven has minimum V3 R5.0.0.
    let hw_ok = (0..n).filter(|i| matches!(i % 4, 1 | 2)).count();
    let sw_low = (0..n).filter(|i| i % 7 == 6).count();
    let row = |id: &str| -> Vec<usize> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} row in:\n{stdout}"));
        // The numeric columns: DEVICES ACCEPTED REJECTED-HW REJECTED-SW FAILED NEVER-SENT.
        line.split_whitespace().filter_map(|c| c.parse().ok()).collect()
    };
    assert_eq!(row("r1"), [n, hw_ok, n - hw_ok, 0, 0, 0], "{stdout}");
    assert_eq!(row("r2"), [n, n - sw_low, 0, sw_low, 0, 0], "{stdout}");
    // The corrupted bind: the failure gate stops it in wave 1 (5% of the fleet, or one phone per cohort if more).
    let r3 = row("r3");
    let wave1 = n.div_ceil(20).max(12);
    assert_eq!(r3[1], 0, "nobody installed a corrupted bind: {stdout}");
    assert!(r3[4] >= 3, "failures counted: {stdout}");
    assert!(r3[5] >= n - wave1, "the bad bind went past wave 1: {stdout}");
    assert!(stdout.contains("r3: paused in wave 1/3"), "{stdout}");
}
