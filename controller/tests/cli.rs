//! The `bindwave` command's answers to bad input: what was wrong, what to do, and a documented exit code.

use std::process::{Command, Output};

fn bindwave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bindwave")).args(args).output().expect("run bindwave")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_bad_version_is_a_usage_error_with_an_example() {
    let o = bindwave(&["image", "pack", "x.img", "--version", "latest", "-o", "x.bind"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected e.g. \"V3 R3.18.0\""), "{}", stderr(&o));
}

#[test]
fn a_file_that_is_not_a_bind_is_refused_before_any_upload() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("fw.img");
    std::fs::write(&f, b"just a payload, no header").unwrap();
    // No controller runs at this address: the local check must answer first.
    let controller = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["image", "inspect", f.to_str().unwrap()],
        vec!["--controller", &controller, "image", "add", f.to_str().unwrap()],
    ] {
        let o = bindwave(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("not a bind file"), "{}", stderr(&o));
        assert!(stderr(&o).contains("bindwave image pack"), "{}", stderr(&o));
    }
}

#[test]
fn a_truncated_bind_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("fw.img");
    std::fs::write(&payload, vec![1u8; 1000]).unwrap();
    let bind = dir.path().join("fw.bind");
    let o = bindwave(&[
        "image",
        "pack",
        payload.to_str().unwrap(),
        "--version",
        "V3 R3.18.0",
        "-o",
        bind.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&bind).unwrap();
    std::fs::write(&bind, &bytes[..bytes.len() - 100]).unwrap();
    let o = bindwave(&["image", "inspect", bind.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("size mismatch"), "{}", stderr(&o));
    std::fs::write(&bind, &bytes[..20]).unwrap();
    let o = bindwave(&["image", "inspect", bind.to_str().unwrap()]);
    assert!(stderr(&o).contains("inside the header"), "{}", stderr(&o));
}

#[test]
fn no_controller_exits_3_and_says_how_to_start_one() {
    let controller = format!("http://127.0.0.1:{}", free_port());
    let o = bindwave(&["--controller", &controller, "device", "list"]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(e.contains(&controller) && e.contains("bindwave serve") && e.contains("BINDWAVE_CONTROLLER"), "{e}");
}

#[test]
fn a_rollout_needs_its_devices() {
    let o = bindwave(&["rollout", "create", "--image", "abcdef"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--devices"), "{}", stderr(&o));
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let o = bindwave(&[
        "serve",
        "--insecure-lab",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--mqtt-listen",
        &format!("127.0.0.1:{port}"),
        "--http-listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("address in use"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--mqtt-listen"), "{}", stderr(&o));
}
