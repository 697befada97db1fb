//! Signed binds, end to end, with the real binaries: `bindwave image keygen`, `image pack --sign-key`,
//! `image sign`, `image inspect --trust`, a controller that adds and rolls out only what its release keys
//! verify, and a phone that pins a release key and installs only binds signed by it, deciding on the header
//! before it downloads the payload.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bindwave_tests::open_broker::OpenBroker;
use bindwave_tests::{bin, run, sign_command, update_json, wait_until, BindServer, Controller, Phone, ServeOptions};
use serde_json::Value;

const TABLE: &[(&str, u16)] = &[("P3", 3)];
/// Payload bytes of the binds rolled out: far more than a header, so an early stop shows.
const PAYLOAD: usize = 8 << 20;

fn phone() -> Phone<'static> {
    Phone { id: "phone-1", part_number: "P3", software_version: "V3 R3.0.0", minimum_software_version: "V3 R1.0.0" }
}

fn bindwave(args: &[&str]) -> Output {
    run(Command::new(bin("bindwave")).args(args))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(args: &[&str]) -> String {
    let o = bindwave(args);
    assert!(o.status.success(), "{args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A key pair made with `bindwave image keygen`: the private key, the public key file, and the key id.
fn keygen(d: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let key = d.join(format!("{name}.key"));
    let out = ok(&["image", "keygen", "--out", s(&key)]);
    let id = out.lines().find_map(|l| l.strip_prefix("key id ")).expect("the key id is printed").trim().to_string();
    assert_eq!(id.len(), 16, "{out}");
    assert!(out.contains("keys = [\"ed25519:"), "the line to pin is printed: {out}");
    (key.clone(), d.join(format!("{name}.key.pub")), id)
}

/// Writes a payload for `version` and packs it into `{name}.bind`, signed with `key` if given.
fn pack(d: &Path, name: &str, version: &str, key: Option<&Path>) -> PathBuf {
    let payload = d.join(format!("{name}.img"));
    let body: Vec<u8> =
        (0..PAYLOAD as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ name.len() as u8).collect();
    std::fs::write(&payload, body).unwrap();
    let bind = d.join(format!("{name}.bind"));
    let mut args = vec!["image", "pack", s(&payload), "--version", version, "--hardware-levels", "3", "-o", s(&bind)];
    if let Some(k) = key {
        args.extend(["--sign-key", s(k)]);
    }
    ok(&args);
    bind
}

/// Rolls `image` out to phone-1 and returns its job's phase once final.
fn roll_out(c: &Controller, image: &str) -> Value {
    let r = c.ok(&["rollout", "create", "--image", image, "--devices", "phone-1", "--start"]);
    let mut phase = Value::Null;
    wait_until(Duration::from_secs(60), &format!("the outcome of rollout {r}"), || {
        let status = c.json(&["rollout", "status", &r, "-o", "json"]);
        phase = status["jobs"][0]["phase"].clone();
        matches!(phase["phase"].as_str(), Some("succeeded" | "rejected" | "failed"))
    });
    if phase["phase"] != "succeeded" {
        // Settle it, so the next rollout finds the phone free.
        let _ = c.cli(&["rollout", "abort", &r, "--reason", "refused by the phone"]);
    }
    phase
}

/// The phone's final report of `job`, from its journal.
fn report(d: &Path, job: &str) -> Value {
    let mut found = Value::Null;
    wait_until(Duration::from_secs(30), &format!("the phone's report of {job}"), || {
        let j: Value = serde_json::from_slice(&std::fs::read(d.join("phone-1/journal.json")).unwrap_or_default())
            .unwrap_or_default();
        if let Some(r) = j["history"].as_array().and_then(|h| h.iter().find(|r| r["job_id"] == job)) {
            found = r.clone();
        }
        !found.is_null()
    });
    found
}

fn running_version(c: &Controller) -> String {
    let devices = c.json(&["device", "list", "-o", "json"]);
    let d = devices.as_array().unwrap().iter().find(|d| d["id"] == "phone-1").unwrap();
    d["hello"]["software_version"].as_str().unwrap().to_string()
}

#[test]
fn a_phone_that_pins_a_key_installs_only_binds_it_verifies_and_decides_before_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (release, release_pub, release_id) = keygen(d, "release");
    let (other, other_pub, other_id) = keygen(d, "other");
    // The controller trusts both keys and lets unsigned images in (a lab setting), so that every refusal
    // below is the phone's own.
    // Not a lab phone, so it talks TLS to its broker; the broker is left open, so that the test can publish a
    // command of its own below.
    let open = OpenBroker::start(d);
    let mut serve = vec!["--release-key", s(&release_pub), "--release-key", s(&other_pub), "--allow-unsigned-images"];
    let on_open = open.serve_args();
    serve.extend(on_open.iter().map(String::as_str));
    let c = Controller::start_secure(d, &serve);
    assert!(c.proc.log_text().contains("LAB SETTING allow_unsigned_images"), "{}", c.proc.log_text());
    let http_ca = c.http_ca().display().to_string();
    let trust = format!("[download]\nca_file = {http_ca:?}\n[trust]\nkey_files = [{:?}]\n", s(&release_pub));
    let mut agent = phone().start_login(d, &open.url, &open.phone_login(), TABLE, &trust);
    let pid = agent.pid();
    wait_until(Duration::from_secs(20), "the phone online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().any(|d| d["online"] == true)
    });
    assert!(agent.log_text().contains(&format!("release keys pinned: {release_id}")), "{}", agent.log_text());
    assert!(!agent.log_text().contains("LAB MODE"));

    // Signed by the pinned key: installed.
    let good = pack(d, "good", "V3 R3.18.0", Some(&release));
    let sha = c.ok(&["image", "add", s(&good)]);
    let phase = roll_out(&c, &sha);
    assert_eq!(phase["phase"], "succeeded", "{phase:#}");
    wait_until(Duration::from_secs(10), "the new version in hello", || running_version(&c) == "V3 R3.18.0");

    // Each refused before anything is installed, the old version left running, after about a header's bytes.
    let stranger = pack(d, "stranger", "V3 R3.19.0", Some(&other));
    let unsigned = pack(d, "unsigned", "V3 R3.20.0", None);
    let altered = pack(d, "altered", "V3 R3.21.0", Some(&release));
    let cases: [(&Path, &str, Option<&str>); 3] = [
        (&stranger, "untrusted_key", Some(&other_id)),
        (&unsigned, "unsigned", None),
        (&altered, "signature_invalid", Some(&release_id)),
    ];
    for (i, (bind, code, key_id)) in cases.into_iter().enumerate() {
        let sha = c.ok(&["image", "add", s(bind)]);
        if code == "signature_invalid" {
            // One byte of the header flipped where the controller keeps it (a tampering mirror): "3.21" -> "4.21".
            let stored = c.data_dir.join("images").join(format!("{sha}.bind"));
            let mut bytes = std::fs::read(&stored).unwrap();
            let at = bytes[..200].windows(4).position(|w| w == b"3.21").unwrap();
            bytes[at] = b'4';
            std::fs::write(&stored, bytes).unwrap();
        }
        let phase = roll_out(&c, &sha);
        assert_eq!(phase["phase"], "rejected", "{phase:#}");
        assert_eq!(phase["reason"]["code"], code, "{phase:#}");
        assert_eq!(phase["reason"]["key_id"].as_str(), key_id, "{phase:#}");
        assert_eq!(phase["running_version"], "V3 R3.18.0", "{phase:#}");
        let r = report(d, &format!("r{}-phone-1", i + 2));
        let received = r["download"]["bytes"].as_u64().unwrap();
        println!("{code}: {received} bytes received of a {}-byte bind", std::fs::metadata(bind).unwrap().len());
        // The header is judged on the first chunk, and nothing after it is read. That chunk is one read into
        // the HTTP client's buffer: hyper asks for at most 408 KiB a read, but a read fills the buffer's whole
        // spare capacity, and a connection kept from an earlier 8 MiB download has grown that buffer to as
        // much as twice the maximum (816 KiB). So the bound is 1 MiB of an 8 MiB bind; the exact cost, a
        // header's worth, is measured at the server below.
        assert!(received <= (PAYLOAD / 8) as u64, "{received} bytes downloaded for a refused bind: {r:#}");
        assert_eq!(running_version(&c), "V3 R3.18.0");
    }
    let words = c.ok(&["rollout", "status", "r2"]);
    assert!(words.contains(&format!("signed by key {other_id}, which this phone does not trust")), "{words}");
    // Still the same process, on the same slot.
    assert!(agent.alive());
    assert_eq!(agent.pid(), pid);
    let active: Value = serde_json::from_slice(&std::fs::read(d.join("phone-1/active")).unwrap()).unwrap();
    assert_eq!(active["version"], "V3 R3.18.0");

    // Measured at the server: a bind signed by a key the phone does not pin, served slowly, costs the server
    // about one header's worth of bytes.
    let bytes = std::fs::read(&stranger).unwrap();
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 16 * 1024, pause: Duration::from_millis(2), ..Default::default() },
    );
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let command = sign_command("phone-1", &update_json("job-stranger", &server.url, bytes.len(), &digest, false));
    open.publish_as_stranger("bindwave/v1/devices/phone-1/commands", command.as_bytes());
    let r = report(d, "job-stranger");
    assert_eq!(r["reason"]["code"], "untrusted_key", "{r:#}");
    std::thread::sleep(Duration::from_millis(300));
    let sent = server.stats().bytes_sent;
    println!("untrusted key: the server sent {sent} of {} bytes", bytes.len());
    assert!(sent < (bytes.len() / 10) as u64, "{sent} bytes of {} were sent for a refused bind", bytes.len());
}

#[test]
fn a_lab_phone_takes_unsigned_binds_and_says_so_but_never_a_bad_signature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (release, release_pub, release_id) = keygen(d, "release");
    let c = Controller::start_serving(d, &["--release-key", s(&release_pub), "--allow-unsigned-images"]);
    let trust = format!("[trust]\ninsecure_lab = true\nkey_files = [{:?}]\n", s(&release_pub));
    let agent = phone().start_with(d, &c.mqtt, TABLE, &trust);
    wait_until(Duration::from_secs(20), "the phone online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().any(|d| d["online"] == true)
    });
    assert!(agent.log_text().contains("LAB MODE"), "{}", agent.log_text());
    let sha = c.ok(&["image", "add", s(&pack(d, "unsigned", "V3 R3.18.0", None))]);
    assert_eq!(roll_out(&c, &sha)["phase"], "succeeded");
    let altered = pack(d, "altered", "V3 R3.21.0", Some(&release));
    let sha = c.ok(&["image", "add", s(&altered)]);
    let stored = c.data_dir.join("images").join(format!("{sha}.bind"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes[..200].windows(4).position(|w| w == b"3.21").unwrap();
    bytes[at] = b'4';
    std::fs::write(&stored, bytes).unwrap();
    let phase = roll_out(&c, &sha);
    assert_eq!(phase["reason"]["code"], "signature_invalid", "{phase:#}");
    assert_eq!(phase["reason"]["key_id"], release_id.as_str());
}

#[test]
fn a_phone_without_a_release_key_refuses_to_start_naming_the_key_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = phone().start_with(dir.path(), "mqtt://127.0.0.1:1", TABLE, "[trust]\n");
    wait_until(Duration::from_secs(10), "the agent to exit", || !agent.alive());
    let log = agent.log_text();
    assert!(log.contains("no release key") && log.contains("`keys` in [trust]"), "{log}");
}

#[test]
fn the_controller_adds_and_rolls_out_only_what_its_release_keys_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (release, release_pub, release_id) = keygen(d, "release");
    let (other, _, other_id) = keygen(d, "other");
    let mut c = Controller::start_serving(d, &["--release-key", s(&release_pub)]);
    assert!(!c.proc.log_text().contains("LAB SETTING"), "{}", c.proc.log_text());

    let unsigned = pack(d, "unsigned", "V3 R3.18.0", None);
    let o = c.cli(&["image", "add", s(&unsigned)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("untrusted image: not signed") && text(&o).contains("bindwave image sign"),
        "{}",
        text(&o)
    );
    let stranger = pack(d, "stranger", "V3 R3.19.0", Some(&other));
    let o = c.cli(&["image", "add", s(&stranger)]);
    assert!(text(&o).contains(&format!("signed by key {other_id}, which is not trusted here")), "{}", text(&o));
    assert!(text(&o).contains("release_keys"), "{}", text(&o));
    assert_eq!(c.json(&["image", "list", "-o", "json"]), serde_json::json!([]), "nothing was added");

    // Signed in place, it is added.
    let out = ok(&["image", "sign", s(&unsigned), "--key", s(&release)]);
    assert!(out.contains(&release_id), "{out}");
    let sha = c.ok(&["image", "add", s(&unsigned)]);
    let images = c.json(&["image", "list", "-o", "json"]);
    assert_eq!(images[0]["signed_by"], release_id.as_str(), "{images:#}");

    // An image added in the lab is not rolled out by a controller that requires signatures.
    c.proc.kill();
    let lab = Controller::start_serving(d, &["--release-key", s(&release_pub), "--allow-unsigned-images"]);
    let lab_sha = lab.ok(&["image", "add", s(&pack(d, "lab", "V3 R3.20.0", None))]);
    drop(lab);
    c = Controller::start_serving(d, &["--release-key", s(&release_pub)]);
    let o = c.cli(&["rollout", "create", "--image", &lab_sha, "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not rolled out: no trusted release key verified it"), "{}", text(&o));
    // The signed one passes that check (and fails later only for want of devices).
    let o = c.cli(&["rollout", "create", "--image", &sha, "--all"]);
    assert!(text(&o).contains("would target no device"), "{}", text(&o));
}

#[test]
fn keygen_sign_and_inspect_on_the_operators_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (release, release_pub, release_id) = keygen(d, "release");
    let (other, other_pub, other_id) = keygen(d, "other");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&release).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Never overwritten.
    let o = bindwave(&["image", "keygen", "--out", s(&release)]);
    assert!(!o.status.success() && text(&o).contains("exists already"), "{}", text(&o));

    // OpenSSL reads the private key and derives the same public key.
    let o = run(Command::new("openssl").args(["pkey", "-in", s(&release), "-pubout"]));
    assert!(o.status.success(), "openssl: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), std::fs::read_to_string(&release_pub).unwrap());

    let bind = pack(d, "fw", "V3 R3.18.0", Some(&release));
    let inspect = |args: &[&str]| bindwave(&[&["image", "inspect", s(&bind)], args].concat());
    let o = inspect(&["-o", "json"]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((j["signed"].clone(), j["signed_by"].clone()), (Value::Bool(true), Value::from(release_id.as_str())));
    assert_eq!(j["signature"], "not_checked");
    assert!(text(&inspect(&[])).contains(&format!("signed by key {release_id}; not checked: no key given")));
    let o = inspect(&["--trust", s(&release_pub), "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap()["signature"], "verified");
    let o = inspect(&["--trust", s(&other_pub)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("key {release_id} is not among the keys given")), "{}", text(&o));

    // Re-signed into another file: the new key, the original untouched.
    let resigned = d.join("resigned.bind");
    ok(&["image", "sign", s(&bind), "--key", s(&other), "--out", s(&resigned)]);
    let o = bindwave(&["image", "inspect", s(&resigned), "--trust", s(&other_pub), "-o", "json"]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((j["signed_by"].as_str(), j["signature"].as_str()), (Some(other_id.as_str()), Some("verified")));
    assert!(inspect(&["--trust", s(&release_pub)]).status.success());

    // A flipped header byte.
    let mut bytes = std::fs::read(&bind).unwrap();
    let at = bytes[..200].windows(4).position(|w| w == b"3.18").unwrap();
    bytes[at] = b'4';
    std::fs::write(&bind, bytes).unwrap();
    let o = inspect(&["--trust", s(&release_pub)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("INVALID") && text(&o).contains("altered"), "{}", text(&o));

    // An empty payload is never packed.
    let empty = d.join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let o = bindwave(&["image", "pack", s(&empty), "--version", "V3 R1.0.0", "-o", s(&d.join("empty.bind"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is empty"), "{}", text(&o));
    assert!(!d.join("empty.bind").exists());
}
