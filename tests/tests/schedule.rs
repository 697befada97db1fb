//! Office rollouts end to end, with real agents through the embedded broker: phones download at once and
//! install only inside their own window (in their own time zone, across a restart), and a cancel reaches a
//! phone mid-download and one waiting for its window.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bindwave_tests::chaos::proxy::{Faults, Proxy};
use bindwave_tests::{wait_until, Controller, Phone};
use serde_json::Value;

const TABLE: &[(&str, u16)] = &[("S30817-S7702-A101", 3)];
const VERSION: &str = "V3 R3.18.0";
const FACTORY: &str = "V3 R3.11.0";

fn phone(id: &str) -> Phone<'_> {
    Phone { id, part_number: "S30817-S7702-A101", software_version: FACTORY, minimum_software_version: "V3 R1.0.0" }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn job(c: &Controller, r: &str, device: &str) -> Value {
    let s = c.json(&["rollout", "status", r, "-o", "json"]);
    s["jobs"].as_array().unwrap().iter().find(|j| j["device"] == device).cloned().unwrap_or(Value::Null)
}

/// `phase` of a job, or its `state` while it runs (`downloading`, `downloaded`, ...).
fn where_is(job: &Value) -> String {
    match job["phase"]["phase"].as_str() {
        Some("running") => job["phase"]["state"].as_str().unwrap_or("running").to_string(),
        Some(p) => p.to_string(),
        None => "none".into(),
    }
}

fn running_version(c: &Controller, device: &str) -> String {
    let devices = c.json(&["device", "list", "-o", "json"]);
    let d = devices.as_array().unwrap().iter().find(|d| d["id"] == device).cloned().unwrap_or(Value::Null);
    d["hello"]["software_version"].as_str().unwrap_or("").to_string()
}

fn wait_online(c: &Controller, n: usize) {
    wait_until(Duration::from_secs(60), "phones online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            >= n
    });
}

fn downloads_left(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("downloads"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Download by day, install by night, as a rollout with `--install-window` does it: both phones download and
/// verify at once and report `downloaded`; the one in UTC installs when its window opens, across a restart of
/// its agent while it waited (the journal keeps the verified bind); the one in Kolkata, whose window of the
/// same local times came five and a half hours earlier, is still waiting, until a cancel reaches it: it drops
/// the bind and stays on its version.
#[test]
fn phones_download_at_once_and_install_in_their_own_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start_serving(d, &["--allow-unsigned-images"]);
    let mut utc = phone("phone-utc").start_zoned(d, &c.mqtt, TABLE, "", "UTC");
    let _kolkata = phone("phone-kolkata").start_zoned(d, &c.mqtt, TABLE, "", "Asia/Kolkata");
    wait_online(&c, 2);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    // The window opens at the first whole minute at least 20 s away, and lasts ten minutes, in UTC clock time.
    let opens = (unix_now() + 20).div_ceil(60) * 60;
    let clock = |t: u64| format!("{:02}:{:02}", t / 3600 % 24, t / 60 % 60);
    let window = format!("daily {}-{}", clock(opens), clock(opens + 600));
    let r = c.ok(&["rollout", "create", "--image", &image, "--all", "--install-window", &window, "--start"]);
    wait_until(Duration::from_secs(20), "both phones to download and wait for their window", || {
        ["phone-utc", "phone-kolkata"].iter().all(|p| where_is(&job(&c, &r, p)) == "downloaded")
    });
    assert!(unix_now() < opens, "the window had opened before the downloads were done; the test is too slow");
    let status = c.json(&["rollout", "status", &r, "-o", "json"]);
    assert_eq!(status["counts"]["downloaded"], 2, "{:#}", status["counts"]);

    // A restart while waiting: the journal keeps the job and its verified file.
    utc.kill();
    let utc_again = phone("phone-utc").start_zoned(d, &c.mqtt, TABLE, "", "UTC");
    wait_until(Duration::from_secs(120), "the UTC phone to install in its window", || {
        where_is(&job(&c, &r, "phone-utc")) == "succeeded"
    });
    let done = job(&c, &r, "phone-utc");
    assert!(done["updated_at"].as_u64().unwrap() >= opens * 1000, "installed before its window: {done:#}");
    assert_eq!(running_version(&c, "phone-utc"), VERSION);
    assert!(utc_again.log_text().contains("installing when the window opens"), "{}", utc_again.log_text());

    // Kolkata's window of the same local times is tomorrow's: it still waits, and takes the cancel.
    assert_eq!(where_is(&job(&c, &r, "phone-kolkata")), "downloaded");
    c.ok(&["rollout", "cancel", &r, "--reason", "wrong week for Kolkata"]);
    wait_until(Duration::from_secs(30), "the waiting phone to answer the cancel", || {
        where_is(&job(&c, &r, "phone-kolkata")) == "cancelled"
    });
    assert_eq!(running_version(&c, "phone-kolkata"), FACTORY);
    assert!(downloads_left(&d.join("phone-kolkata")).is_empty(), "{:?}", downloads_left(&d.join("phone-kolkata")));
    let status = c.json(&["rollout", "status", &r, "-o", "json"]);
    assert_eq!(status["rollout"]["state"], "aborted");
    assert_eq!((status["counts"]["succeeded"].as_u64(), status["counts"]["cancelled"].as_u64()), (Some(1), Some(1)));
}

/// A cancel mid-download: the phone stops its download and its retries, removes the partial file, reports
/// `cancelled` and stays on its version; the file server hears nothing more from it.
#[test]
fn a_cancel_mid_download_stops_the_download_and_the_phone_stays_on_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 4 kB/s: the 70 kB bind takes about 18 s.
    let proxy = Proxy::start(Faults { rate: Some(4_000), ..Faults::default() }, 1);
    let c = Controller::start_serving(d, &["--allow-unsigned-images", "--public-url", &proxy.url]);
    proxy.set_upstream(c.http.trim_start_matches("http://"));
    let agent = phone("phone-1").start(d, &c.mqtt, TABLE);
    wait_online(&c, 1);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    let r = c.ok(&["rollout", "create", "--image", &image, "--all", "--start"]);
    wait_until(Duration::from_secs(20), "the phone to be downloading", || {
        let j = job(&c, &r, "phone-1");
        where_is(&j) == "downloading" && j["phase"]["progress"].as_u64().is_some_and(|p| p > 0)
    });
    assert!(!downloads_left(&d.join("phone-1")).is_empty(), "a partial file while downloading");
    c.ok(&["rollout", "cancel", &r, "--reason", "wrong image"]);
    wait_until(Duration::from_secs(15), "the phone to answer the cancel", || {
        where_is(&job(&c, &r, "phone-1")) == "cancelled"
    });
    let heard = proxy.stats();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(proxy.stats(), heard, "no download after the cancel");
    assert!(downloads_left(&d.join("phone-1")).is_empty(), "{:?}", downloads_left(&d.join("phone-1")));
    assert_eq!(running_version(&c, "phone-1"), FACTORY);
    assert!(agent.log_text().contains("cancelled by the controller before the install"), "{}", agent.log_text());
    let audit = c.ok(&["audit", "-o", "json"]);
    assert!(audit.contains("a cancel sent to 1 commanded device(s)"), "{audit}");
}
