//! `bindwave backup` of a live, secure controller mid-rollout, restored into a new data directory that a new
//! controller carries the rollout on from; and the archives and directories a restore refuses.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bindwave_tests::chaos::checks::{check_run, payload_sha256, Expected};
use bindwave_tests::{assert_success, bin, run, wait_until, Controller, Proc};
use serde_json::Value;

const N: usize = 30;

fn status(c: &Controller, id: &str) -> Value {
    c.json(&["rollout", "status", id, "-o", "json"])
}

/// Jobs with their final outcome.
fn finished(s: &Value) -> usize {
    let done = |j: &&Value| matches!(j["phase"]["phase"].as_str(), Some("succeeded" | "rejected" | "failed"));
    s["jobs"].as_array().unwrap().iter().filter(done).count()
}

fn restore(archive: &Path, data_dir: &Path) -> std::process::Output {
    run(Command::new(bin("bindwave")).arg("restore").arg(archive).arg("--data-dir").arg(data_dir))
}

/// The backup is taken while the rollout soaks after its first wave and the fleet keeps reporting; the
/// controller is then killed, and its data directory is never used again. A new controller on the restored
/// directory takes the same phones (same broker secret, CA and command key) through the second wave, and each
/// phone ends with one outcome, the new version, installed once.
#[test]
fn a_backup_restored_into_a_new_controller_carries_the_rollout_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Controller::start_secure(d, &[]);
    let fleet_dir = d.join("fleet");
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", &N.to_string(), "--broker", &c.mqtt, "--state", "nosync"])
        .arg("--state-dir")
        .arg(&fleet_dir)
        .arg("--controller-key")
        .arg(c.data_dir.join("controller.key.pub"))
        .arg("--controller-data-dir")
        .arg(&c.data_dir);
    let _fleet = Proc::spawn("fleet", cmd, d);
    wait_until(Duration::from_secs(60), "every phone online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            == N
    });
    let image = c.pack_and_add(d, "fw", "V3 R3.18.0", None);
    let r = c.ok(&["rollout", "create", "--image", &image, "--all", "--waves", "20%,100%", "--soak", "8s", "--start"]);
    wait_until(Duration::from_secs(60), "the first wave's outcomes", || finished(&status(&c, &r)) == N / 5);

    let archive = d.join("backup.tar");
    let out = c.cli(&["backup", "--out", archive.to_str().unwrap(), "-o", "json"]);
    assert_success(&out, &["backup"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = &summary["manifest"];
    assert_eq!(manifest["records"]["devices"], N as u64, "{summary:#}");
    assert_eq!(manifest["records"]["rollouts"], 1);
    assert_eq!(manifest["images"].as_array().map(Vec::len), Some(1));
    for file in ["controller.key", "broker.secret", "tls/ca.pem", "tls/ca.key", "admin.token"] {
        assert!(manifest["files"].as_array().unwrap().iter().any(|f| f == file), "{file} not backed up: {summary:#}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup holds the controller's keys: owner-only");
    }
    let before = status(&c, &r);
    assert_ne!(before["rollout"]["state"], "finished", "the rollout finished before the backup: {before:#}");
    c.proc.kill();

    // Restored into a new directory, never the old one: the old one is left as the kill left it.
    let restored = d.join("restored");
    let out = restore(&archive, &restored);
    assert_success(&out, &["restore"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("bindwave serve --data-dir"), "{said}");
    c.data_dir = restored.clone();
    c.restart(d);
    let start = std::time::Instant::now();
    loop {
        let s = status(&c, &r);
        if s["rollout"]["state"] == "finished" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the restored controller did not finish: {s:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every phone has one outcome, and it is what the phone runs (the simulated fleet holds phones whose
    // minimum software level is above the bind's, which reject it); the API, the metrics and the audit log
    // agree.
    let expected = Expected { version: "V3 R3.18.0", payload_sha256: &payload_sha256(&d.join("fw.img")), phones: N };
    let checked = check_run(&c, &r, &expected, &|device| fleet_dir.join(device));
    let installed = checked.outcomes.get("succeeded").copied().unwrap_or(0);
    assert!(installed > N as u64 / 2, "{installed} of {N} installed: {:?}", checked.outcomes);
    // The audit log came along: the rollout's creation and start are in it, from before the backup.
    let audit = c.json(&["audit", "--rollout", &r, "-o", "json"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|a| a["action"].as_str()).collect();
    assert!(actions.contains(&"create") && actions.contains(&"start"), "{actions:?}");

    // A second restore into the directory in use is refused, and names what to do.
    let out = restore(&archive, &restored);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("not empty") && e.contains("move this one aside"), "{e}");
}

/// An archive cut short, one that is not a backup, and a viewer asking for one are each refused, and a
/// refused restore leaves no directory behind.
#[test]
fn damaged_archives_and_viewers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start_secure(d, &[]);
    c.pack_and_add(d, "fw", "V3 R3.18.0", None);
    let archive = d.join("whole.tar");
    c.ok(&["backup", "--out", archive.to_str().unwrap()]);
    let bytes = std::fs::read(&archive).unwrap();

    let cut = d.join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() - 4096]).unwrap();
    let not_one = d.join("notes.tar");
    std::fs::write(&not_one, b"these are not the records you are looking for").unwrap();
    for (archive, words) in [(&cut, "cut short"), (&not_one, "not a bindwave backup")] {
        let target = d.join("target");
        let out = restore(archive, &target);
        assert!(!out.status.success(), "{} restored", archive.display());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(words), "{words:?} not in: {e}");
        assert!(!target.exists(), "a refused restore left {}", target.display());
    }

    let viewer = c.ok(&["token", "create", "--name", "watcher", "--role", "viewer", "-o", "json"]);
    let token: Value = serde_json::from_str(&viewer).unwrap();
    let out =
        c.cli(&["--token", token["token"].as_str().unwrap(), "backup", "--out", d.join("v.tar").to_str().unwrap()]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("403") || e.contains("admin"), "{e}");
    assert!(!d.join("v.tar").exists() && !d.join("v.tar.partial").exists());
}
