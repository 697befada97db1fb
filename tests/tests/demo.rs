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
    let row = |id: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(id) && l.contains("V3 R"))
            .unwrap_or_else(|| panic!("no {id} row in:\n{stdout}"));
        // Columns: ROLLOUT BIND(2 words) HW-FIELD ... ; take the numeric columns from the right.
        line.split_whitespace().map(str::to_string).collect()
    };
    let numbers = |cols: &[String]| -> Vec<usize> { cols.iter().filter_map(|c| c.parse().ok()).collect() };
    // r1: DEVICES ACCEPTED REJ-HW REJ-SW FAILED UNFINISHED
    let r1 = numbers(&row("r1"));
    assert_eq!(r1[r1.len() - 6..], [n, hw_ok, n - hw_ok, 0, 0, 0], "{stdout}");
    let r2 = numbers(&row("r2"));
    assert_eq!(r2[r2.len() - 6..], [n, n - sw_low, 0, sw_low, 0, 0], "{stdout}");
}
