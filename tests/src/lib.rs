//! Helpers for tests that run the real `bindwave` and `bindwave-agent` binaries.
//!
//! Each test gets its own temporary directory; every process it starts writes its output to a log file
//! there, is killed when the test ends, and has its log printed if the test fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod chaos;
pub mod cluster;
pub mod demo;
pub mod measure;
pub mod open_broker;

/// A built binary of the workspace, next to the test executable's directory (`target/<profile>/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, the bench from target/<profile>/.
    let deps = exe.parent().expect("executable directory");
    let dir = if deps.ends_with("deps") { deps.parent().expect("target directory") } else { deps };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; `cargo test --workspace` builds it (or run `cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A process that is killed when dropped, with its output in a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).env("RUST_LOG", "info,rmqtt=warn,rmqtt_net=warn");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc { name: name.to_string(), child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, like a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- log of {} ({}) -----\n{}", self.name, self.log.display(), self.log_text());
        }
    }
}

/// The command key of every controller the harness starts (written as `data_dir/controller.key` before the
/// controller's first start, so it loads this one instead of making its own) and that every test phone pins. A
/// fixed key for tests only, so that tests can also sign commands themselves ([`sign_command`]).
pub const CONTROLLER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VwBCIEIEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\n-----END PRIVATE KEY-----\n";
/// [`CONTROLLER_KEY_PEM`]'s public half, as phones pin it.
pub const CONTROLLER_KEY_LINE: &str = "ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12";
/// The seed inside [`CONTROLLER_KEY_PEM`].
const CONTROLLER_KEY_SEED: [u8; 32] = [0x42; 32];

/// Puts the harness's controller key in `data_dir` unless a key is there already.
pub fn install_controller_key(data_dir: &Path) {
    let key = data_dir.join("controller.key");
    if !key.exists() {
        std::fs::create_dir_all(data_dir).expect("data dir");
        std::fs::write(&key, CONTROLLER_KEY_PEM).expect("controller key");
        std::fs::write(data_dir.join("controller.key.pub"), format!("{CONTROLLER_KEY_LINE}\n"))
            .expect("controller public key");
    }
}

/// Signs a command's JSON for `device` with the harness's controller key, as the controller does, valid for
/// an hour: the JSON of the signed command message.
pub fn sign_command(device: &str, command_json: &str) -> String {
    let expires_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_secs()
            + 3600;
    sign_command_with(&CONTROLLER_KEY_SEED, device, command_json, expires_at)
}

/// Signs a command's JSON for `device` with the key of `seed`, expiring at `expires_at` (unix seconds).
pub fn sign_command_with(seed: &[u8; 32], device: &str, command_json: &str, expires_at: u64) -> String {
    use bindwave_proto::wire::{Command, CommandMessage, DeviceId};
    use ring::signature::KeyPair as _;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).expect("an ed25519 seed");
    let public = bindwave_proto::PublicKey(pair.public_key().as_ref().try_into().expect("32 bytes"));
    let command = Command::from_json(command_json.as_bytes()).expect("a command's JSON");
    let device = DeviceId::new(device).expect("a device id");
    let message = bindwave_proto::command_signing::signed_message(&device, &command, expires_at);
    let bytes = pair.sign(&message).as_ref().try_into().expect("64 bytes");
    let signature = bindwave_proto::Signature { key_id: public.key_id(), bytes };
    let signed = CommandMessage { command, expires_at: Some(expires_at), signature: Some(signature) };
    String::from_utf8(signed.to_json().expect("a command encodes")).expect("JSON is UTF-8")
}

/// A controller started with `bindwave serve` on free ports.
pub struct Controller {
    pub proc: Proc,
    pub http: String,
    pub mqtt: String,
    pub data_dir: PathBuf,
    /// True when it runs the embedded broker (`mqtt` is then its own address).
    embedded: bool,
    /// Lab mode (`--insecure-lab`: plain MQTT with anonymous clients, plain HTTP without tokens), which every
    /// start but [`Controller::start_secure`] asks for.
    pub lab: bool,
    /// More `bindwave serve` flags, kept for a restart.
    serve_args: Vec<String>,
    /// Environment variables the controller runs with, kept for a restart.
    env: Vec<(String, String)>,
}

/// The lab setting the harness's controllers run with unless a test says otherwise: most tests roll out
/// unsigned binds (`tests/tests/signing.rs` runs signed ones).
pub const LAB_IMAGES: &str = "--allow-unsigned-images";

/// The lab setting the harness's phones run with unless a test gives its own `[trust]` section.
pub const LAB_PHONE: &str = "[trust]\ninsecure_lab = true\n";

/// The port of `scheme://host:port`.
pub fn port_of(url: &str) -> u16 {
    url.rsplit_once(':').and_then(|(_, p)| p.trim_end_matches('/').parse().ok()).expect("a URL with a port")
}

impl Controller {
    /// Starts on ports the controller picks itself (it binds port 0 and reports what it got), so no other
    /// process can take a port between the test choosing it and the controller binding it.
    pub fn start(dir: &Path) -> Controller {
        let data_dir = dir.join("controller");
        Self::start_with(dir, &data_dir, 0, Some(0), None)
    }

    /// Starts with more `bindwave` flags before `serve` (`--log-format json`, ...).
    pub fn start_args(dir: &Path, extra: &[&str]) -> Controller {
        Self::launch(dir, &dir.join("controller"), 0, Some(0), None, extra, true, &[LAB_IMAGES.to_string()], &[])
    }

    /// Starts with these `bindwave serve` flags instead of the harness's `--allow-unsigned-images`
    /// (`--release-key release.key.pub`, ...), in lab mode.
    pub fn start_serving(dir: &Path, serve_args: &[&str]) -> Controller {
        let serve_args: Vec<String> = serve_args.iter().map(ToString::to_string).collect();
        Self::launch(dir, &dir.join("controller"), 0, Some(0), None, &[], true, &serve_args, &[])
    }

    /// Starts with the secure defaults: the embedded broker over TLS with the development CA it makes in its
    /// data directory, every client logged in, every device in its lane. `serve_args` are more `bindwave serve`
    /// flags (`--mqtt-client-ca ...`, or `--broker mqtts://...` for an external broker).
    pub fn start_secure(dir: &Path, serve_args: &[&str]) -> Controller {
        let serve_args: Vec<String> = serve_args.iter().map(ToString::to_string).collect();
        let broker = serve_args.iter().position(|a| a == "--broker").map(|i| serve_args[i + 1].clone());
        let rest: Vec<String> = match serve_args.iter().position(|a| a == "--broker") {
            Some(i) => serve_args[..i].iter().chain(&serve_args[i + 2..]).cloned().collect(),
            None => serve_args.clone(),
        };
        // Unsigned binds, as in every test that is not about signing them.
        let mut rest = rest;
        if !rest.iter().any(|a| a == "--release-key") {
            rest.push(LAB_IMAGES.to_string());
        }
        let mqtt_port = broker.is_none().then_some(0);
        Self::launch(dir, &dir.join("controller"), 0, mqtt_port, broker.as_deref(), &[], false, &rest, &[])
    }

    /// Starts in lab mode with these environment variables (kept for restarts: `LD_PRELOAD` of a fake clock, ...)
    /// and these `bindwave serve` flags, on an external broker if given.
    pub fn start_lab_env(dir: &Path, env: &[(&str, &str)], broker: Option<&str>, serve_args: &[&str]) -> Controller {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut args: Vec<String> = serve_args.iter().map(ToString::to_string).collect();
        args.push(LAB_IMAGES.to_string());
        let mqtt_port = broker.is_none().then_some(0);
        Self::launch(dir, &dir.join("controller"), 0, mqtt_port, broker, &[], true, &args, &env)
    }

    /// The CA a secure embedded broker's certificate chains to (made at its first start).
    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("tls").join("ca.pem")
    }

    /// The CA the controller's HTTPS certificate chains to: its development CA, or, with `--tls-cert`, the
    /// `--broker-ca` the test gave (the tests sign both with one CA).
    pub fn http_ca(&self) -> PathBuf {
        let given = |flag: &str| self.serve_args.iter().position(|a| a == flag).map(|i| self.serve_args[i + 1].clone());
        match (given("--tls-cert"), given("--broker-ca")) {
            (Some(_), Some(ca)) => PathBuf::from(ca),
            _ => self.ca(),
        }
    }

    /// GET `path` from the controller: plain HTTP in lab mode, else HTTPS with the admin token (curl, trusting
    /// [`Controller::http_ca`]). Status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        if self.lab {
            return http_get(&self.http, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        }
        let token = std::fs::read_to_string(self.data_dir.join("admin.token")).expect("the admin token");
        https_get(&format!("{}{path}", self.http), &self.http_ca(), token.trim())
    }

    /// A request with curl, trusting the controller's CA, with this bearer token (or none) and this JSON body
    /// (or none): status code and body.
    pub fn curl(&self, token: Option<&str>, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert"])
            .arg(self.http_ca())
            .arg(format!("{}{path}", self.http));
        if let Some(t) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = run(&mut cmd);
        assert_success(&out, &["curl", path]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("curl's status line");
        (code.trim().parse().expect("a status code"), body.to_string())
    }

    /// A device's MQTT password on the secure embedded broker (`bindwave device credentials`).
    pub fn device_password(&self, id: &str) -> String {
        let out =
            run(Command::new(bin("bindwave")).args(["device", "credentials", id, "--data-dir"]).arg(&self.data_dir));
        assert_success(&out, &["device", "credentials", id]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The `[broker]` keys (beside `url`) that log phone `id` in to this controller's secure embedded broker.
    pub fn phone_login(&self, id: &str) -> String {
        format!(
            "ca_file = {:?}\nusername = {id:?}\npassword = {:?}\n",
            self.ca().display().to_string(),
            self.device_password(id)
        )
    }

    /// [`Controller::start_secure`] with a given data directory (to restart on the same one).
    pub fn start_secure_in(dir: &Path, data_dir: &Path, serve_args: &[&str]) -> Controller {
        let mut args: Vec<String> = serve_args.iter().map(ToString::to_string).collect();
        if !args.iter().any(|a| a == "--release-key") {
            args.push(LAB_IMAGES.to_string());
        }
        // A test may ask for lab mode itself.
        let lab = args.iter().any(|a| a == "--insecure-lab");
        Self::launch(dir, data_dir, 0, Some(0), None, &[], lab, &args, &[])
    }

    /// Starts again on the same ports and data directory, as after a restart.
    pub fn restart(&mut self, dir: &Path) {
        self.proc.kill();
        let broker = (!self.embedded).then(|| self.mqtt.clone());
        let mqtt_port = self.embedded.then(|| port_of(&self.mqtt));
        let (lab, serve_args, env) = (self.lab, self.serve_args.clone(), self.env.clone());
        *self = Self::launch(
            dir,
            &self.data_dir.clone(),
            port_of(&self.http),
            mqtt_port,
            broker.as_deref(),
            &[],
            lab,
            &serve_args,
            &env,
        );
    }

    /// Starts on given ports (0: any free one) and data directory; with `broker`, uses that external broker.
    pub fn start_with(
        dir: &Path,
        data_dir: &Path,
        http_port: u16,
        mqtt_port: Option<u16>,
        broker: Option<&str>,
    ) -> Controller {
        Self::launch(dir, data_dir, http_port, mqtt_port, broker, &[], true, &[LAB_IMAGES.to_string()], &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        dir: &Path,
        data_dir: &Path,
        http_port: u16,
        mqtt_port: Option<u16>,
        broker: Option<&str>,
        extra: &[&str],
        lab: bool,
        serve_args: &[String],
        env: &[(String, String)],
    ) -> Controller {
        install_controller_key(data_dir);
        let mut cmd = Command::new(bin("bindwave"));
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.args(extra);
        cmd.arg("serve").arg("--data-dir").arg(data_dir).arg("--http-listen").arg(format!("127.0.0.1:{http_port}"));
        if lab && !serve_args.iter().any(|a| a == "--insecure-lab") {
            cmd.arg("--insecure-lab");
        }
        cmd.args(serve_args);
        let mqtt = match broker {
            Some(url) => {
                cmd.arg("--broker").arg(url);
                url.to_string()
            }
            None => {
                let port = mqtt_port.expect("an MQTT port for the embedded broker");
                cmd.arg("--mqtt-listen").arg(format!("127.0.0.1:{port}"));
                format!("mqtt://127.0.0.1:{port}")
            }
        };
        let mut proc = Proc::spawn("controller", cmd, dir);
        let mut heard = None;
        wait_until(Duration::from_secs(30), "the controller to say where it listens", || {
            assert!(proc.alive(), "the controller exited at start");
            heard = heard_addresses(&proc);
            heard.is_some()
        });
        let (http, heard_mqtt) = heard.expect("the controller's addresses");
        let embedded = broker.is_none();
        let mqtt = if embedded { heard_mqtt } else { mqtt };
        let c = Controller {
            proc,
            http,
            mqtt,
            data_dir: data_dir.to_path_buf(),
            embedded,
            lab,
            serve_args: serve_args.to_vec(),
            env: env.to_vec(),
        };
        if lab {
            wait_until(Duration::from_secs(30), "the controller to answer /healthz", || {
                http_get(&c.http, "/healthz").map(|(s, _)| s == 200).unwrap_or(false)
            });
        } else {
            // HTTPS with a token: the CLI finds both in the data directory.
            wait_until(Duration::from_secs(30), "the controller to answer the CLI", || {
                c.cli(&["device", "list", "-o", "json"]).status.success()
            });
        }
        c
    }

    /// Runs `bindwave --controller <this> ARGS` and returns its output. The CLI looks for the admin token and
    /// the CA in the controller's data directory, as on the controller's own host.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("bindwave"));
        cmd.env("BINDWAVE_DATA_DIR", &self.data_dir);
        if self.http_ca().exists() {
            cmd.env("BINDWAVE_CA_FILE", self.http_ca());
        }
        run(cmd.arg("--controller").arg(&self.http).args(args))
    }

    /// Runs a CLI command that must succeed, and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert_success(&out, args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("bindwave {args:?} printed no JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout))
        })
    }

    /// Writes a payload `{name}.img`, packs it into `{name}.bind` with `bindwave image pack`, adds it with
    /// `bindwave image add`, and returns the image's SHA-256.
    pub fn pack_and_add(&self, dir: &Path, name: &str, version: &str, levels: Option<&str>) -> String {
        let payload = dir.join(format!("{name}.img"));
        std::fs::write(&payload, format!("{name} {version} ").repeat(5000)).expect("payload");
        let bind = dir.join(format!("{name}.bind"));
        let (p, b) = (payload.to_string_lossy().into_owned(), bind.to_string_lossy().into_owned());
        let mut args = vec!["image", "pack", &p, "--version", version, "-o", &b];
        if let Some(l) = levels {
            args.extend(["--hardware-levels", l]);
        }
        self.ok(&args);
        self.ok(&["image", "add", &b])
    }

    /// Runs a CLI command that must succeed and returns its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `bindwave serve` says where it listens once it does: "HTTP on http(s)://ADDR, MQTT on mqtt://ADDR".
fn heard_addresses(proc: &Proc) -> Option<(String, String)> {
    proc.log_text().lines().find_map(|l| {
        let rest = l.strip_prefix("bindwave controller: HTTP on ")?;
        let (http, mqtt) = rest.split_once(", MQTT on ")?;
        Some((http.trim().to_string(), mqtt.trim().to_string()))
    })
}

/// GET `url` over HTTPS with a bearer token, trusting only `ca` (curl): status and body.
pub fn https_get(url: &str, ca: &Path, token: &str) -> (u16, String) {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url));
    assert_success(&out, &["curl", url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("curl's status line");
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, made with openssl, in `dir`: `ca.pem`,
/// `ca.key`, `server.pem`, `server.key` (the layout of a controller's `<data dir>/tls/`).
pub fn dev_tls(dir: &Path) {
    std::fs::create_dir_all(dir).expect("tls dir");
    let openssl = |args: &[&str]| {
        let out = run(Command::new("openssl").current_dir(dir).args(args));
        assert_success(&out, args);
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bindwave test CA"];
    let ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
    openssl(&[&["req", "-x509"][..], &ec, &ca, &ca_ext].concat());
    openssl(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn assert_success(out: &Output, what: &[&str]) {
    assert!(
        out.status.success(),
        "{what:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` every 100 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 GET: status and body.
pub fn http_get(base: &str, path: &str) -> std::io::Result<(u16, String)> {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// An agent config for a test phone.
pub struct Phone<'a> {
    pub id: &'a str,
    pub part_number: &'a str,
    pub software_version: &'a str,
    pub minimum_software_version: &'a str,
}

impl Phone<'_> {
    /// Writes the phone's config (with the part-number table given) and starts `bindwave-agent run`.
    pub fn start(&self, dir: &Path, broker: &str, table: &[(&str, u16)]) -> Proc {
        self.start_with(dir, broker, table, "")
    }

    /// Like [`Phone::start`], with more TOML tables appended to the config (`[download]`, ...).
    pub fn start_with(&self, dir: &Path, broker: &str, table: &[(&str, u16)], extra: &str) -> Proc {
        self.start_login(dir, broker, "", table, extra)
    }

    /// Like [`Phone::start_with`], with more `[broker]` keys (`ca_file`, `username`, `password`, `client_cert`,
    /// `client_key`; see [`Controller::phone_login`]).
    pub fn start_login(&self, dir: &Path, broker: &str, login: &str, table: &[(&str, u16)], extra: &str) -> Proc {
        self.start_full(dir, broker, login, table, extra, "")
    }

    /// Like [`Phone::start_with`], for a phone configured with a time zone.
    pub fn start_zoned(&self, dir: &Path, broker: &str, table: &[(&str, u16)], extra: &str, zone: &str) -> Proc {
        self.start_full(dir, broker, "", table, extra, &format!("timezone = {zone:?}\n"))
    }

    /// Like [`Phone::start_login`], with more top-level keys (`top`, TOML lines).
    fn start_full(&self, dir: &Path, broker: &str, login: &str, table: &[(&str, u16)], extra: &str, top: &str) -> Proc {
        let state = dir.join(self.id);
        std::fs::create_dir_all(&state).expect("state dir");
        let mut toml = format!(
            "device_id = {:?}\npart_number = {:?}\nsoftware_version = {:?}\nminimum_software_version = {:?}\n\
             state_dir = {:?}\nreport_retry_secs = 1\n{top}\n[broker]\nurl = {:?}\n{login}\n[hardware_levels]\n",
            self.id,
            self.part_number,
            self.software_version,
            self.minimum_software_version,
            state.display().to_string(),
            broker
        );
        for (part, level) in table {
            toml.push_str(&format!("{part:?} = {level}\n"));
        }
        toml.push('\n');
        // One [trust] section: the test's own, or the lab phone's; either pins the harness's controller key.
        let pin = format!("controller_keys = [{CONTROLLER_KEY_LINE:?}]\n");
        if extra.contains("[trust]") {
            if extra.contains("controller_keys") {
                toml.push_str(extra);
            } else {
                toml.push_str(&extra.replacen("[trust]\n", &format!("[trust]\n{pin}"), 1));
            }
        } else {
            toml.push_str(extra);
            toml.push_str(&format!("\n{LAB_PHONE}{pin}"));
        }
        let config = dir.join(format!("{}.toml", self.id));
        std::fs::write(&config, toml).expect("agent config");
        let mut cmd = Command::new(bin("bindwave-agent"));
        cmd.arg("run").arg("--config").arg(&config);
        Proc::spawn(self.id, cmd, dir)
    }
}

/// A Mosquitto broker on a free port, for interop tests (Debian's `mosquitto` package).
pub struct Mosquitto {
    pub proc: Proc,
    pub url: String,
}

impl Mosquitto {
    /// Starts on a free port. Mosquitto cannot report a port it picked itself, so a port taken by another
    /// process between the choice and the bind is tried again with another.
    pub fn start(dir: &Path) -> Mosquitto {
        for _ in 0..4 {
            if let Some(m) = Self::try_start_on(dir, free_port()) {
                return m;
            }
        }
        Self::start_on(dir, free_port())
    }

    /// Starts on a given port (to bring a broker back where clients expect it).
    pub fn start_on(dir: &Path, port: u16) -> Mosquitto {
        Self::try_start_on(dir, port).unwrap_or_else(|| panic!("mosquitto could not listen on port {port}"))
    }

    fn try_start_on(dir: &Path, port: u16) -> Option<Mosquitto> {
        // Mosquitto also drops QoS 1 messages past 1,000 queued per client by default; the controller is one
        // client that hears every device.
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n\
             max_inflight_messages 1000\n"
        );
        Self::try_start_conf(dir, port, &conf, "mqtt")
    }

    /// Starts with the shipped `deploy/mosquitto/<conf_name>` (TLS, the ACL), reading its certificates, keys
    /// and password file from `files` (as `bindwave certs dev` writes them) instead of
    /// /etc/mosquitto/bindwave/, and the shipped ACL. The URL is `mqtts://127.0.0.1:<port>`.
    pub fn start_shipped(dir: &Path, conf_name: &str, files: &Path) -> Mosquitto {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto");
        std::fs::copy(deploy.join("acl"), files.join("acl")).expect("copy the shipped ACL");
        let shipped = std::fs::read_to_string(deploy.join(conf_name)).expect("the shipped Mosquitto config");
        let prefix = format!("{}/", files.display());
        for _ in 0..4 {
            let port = free_port();
            // The test's private keys belong to the user running it (mode 0600), whom Mosquitto must stay to
            // read them: started as root, it would switch to the `mosquitto` user.
            let conf = format!("user {}\n{shipped}", std::env::var("USER").unwrap_or_else(|_| "root".into()))
                .replace("/etc/mosquitto/bindwave/", &prefix)
                .replace("listener 8883", &format!("listener {port} 127.0.0.1"));
            if let Some(m) = Self::try_start_conf(dir, port, &conf, "mqtts") {
                return m;
            }
        }
        panic!("mosquitto did not start with the shipped {conf_name}");
    }

    pub(crate) fn try_start_conf(dir: &Path, port: u16, conf_text: &str, scheme: &str) -> Option<Mosquitto> {
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().map(PathBuf::from).find(|p| p.exists());
        let exe = exe.expect("mosquitto is not installed: `apt-get install -y mosquitto` (.ci/run does)");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, conf_text).expect("mosquitto config");
        let mut cmd = Command::new(exe);
        cmd.arg("-c").arg(&conf);
        let mut proc = Proc::spawn("mosquitto", cmd, dir);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if !proc.alive() {
                return None; // the port was taken
            }
            // Mosquitto says "running" once every listener is bound; a port in use ends it before that.
            if proc.log_text().contains(" running") {
                wait_until(Duration::from_secs(10), "mosquitto to listen", || {
                    TcpStream::connect(("127.0.0.1", port)).is_ok()
                });
                return Some(Mosquitto { proc, url: format!("{scheme}://127.0.0.1:{port}") });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mosquitto did not open its listener on port {port} within 10 s");
    }
}

/// A real FTP server (pyftpdlib) on a port it picks itself and reports, so no other process can take the
/// port first. `setup` is Python that defines `Handler`, an FTP handler class with its authorizer; it reads
/// its own arguments `args` from `sys.argv[2:]`. Returns the server and its port.
pub fn ftp_server(dir: &Path, name: &str, setup: &str, args: &[&std::ffi::OsStr]) -> (Proc, u16) {
    let port_file = dir.join(format!("{name}.port"));
    let script = format!(
        "import sys, logging\nfrom pyftpdlib.servers import FTPServer\nlogging.basicConfig(level=logging.ERROR)\n\
         {setup}\n_server = FTPServer((\"127.0.0.1\", 0), Handler)\n\
         open(sys.argv[1] + \".tmp\", \"w\").write(str(_server.socket.getsockname()[1]))\n\
         import os; os.rename(sys.argv[1] + \".tmp\", sys.argv[1])\n_server.serve_forever()\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(&port_file).args(args);
    let mut proc = Proc::spawn(name, cmd, dir);
    let mut port = None;
    wait_until(Duration::from_secs(10), &format!("the FTP server {name}"), || {
        assert!(proc.alive(), "the FTP server {name} exited (is pyftpdlib installed? .ci/run installs it)");
        port = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok());
        port.is_some()
    });
    (proc, port.expect("the FTP server's port"))
}

/// A small HTTP/1.1 file server for agent tests: ETag, Range and If-Range, optional throttling, connections
/// it drops on purpose, and a count of the body bytes it managed to send.
pub struct BindServer {
    pub url: String,
    pub stats: std::sync::Arc<std::sync::Mutex<ServerStats>>,
}

#[derive(Debug, Default, Clone)]
pub struct ServerStats {
    /// Body bytes written to clients.
    pub bytes_sent: u64,
    /// Requests, with their Range and If-Range headers.
    pub requests: Vec<(Option<String>, Option<String>)>,
}

#[derive(Clone)]
pub struct ServeOptions {
    /// Close the connection after this many body bytes, on each of the first `drops` responses.
    pub drop_after: u64,
    pub drops: usize,
    /// Send the body in chunks of this size, pausing between them.
    pub chunk: usize,
    pub pause: Duration,
    /// The ETag; change it to make the file look changed.
    pub etag: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            drop_after: u64::MAX,
            drops: 0,
            chunk: 64 * 1024,
            pause: Duration::ZERO,
            etag: std::sync::Arc::new(std::sync::Mutex::new("\"v1\"".into())),
        }
    }
}

impl BindServer {
    pub fn start(body: Vec<u8>, opts: ServeOptions) -> BindServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/fw.bind", listener.local_addr().expect("addr"));
        let stats = std::sync::Arc::new(std::sync::Mutex::new(ServerStats::default()));
        let (st, body) = (stats.clone(), std::sync::Arc::new(body));
        std::thread::spawn(move || {
            let mut served = 0usize;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (st, body, opts) = (st.clone(), body.clone(), opts.clone());
                let drop_now = served < opts.drops;
                served += 1;
                std::thread::spawn(move || {
                    let _ = serve_one(&mut conn, &body, &opts, drop_now, &st);
                });
            }
        });
        BindServer { url, stats }
    }

    pub fn stats(&self) -> ServerStats {
        self.stats.lock().expect("stats").clone()
    }
}

fn serve_one(
    conn: &mut TcpStream,
    body: &[u8],
    opts: &ServeOptions,
    drop_now: bool,
    stats: &std::sync::Mutex<ServerStats>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
        })
    };
    let (range, if_range) = (header("range"), header("if-range"));
    stats.lock().expect("stats").requests.push((range.clone(), if_range.clone()));
    let etag = opts.etag.lock().expect("etag").clone();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok())
        .filter(|_| if_range.as_deref().is_none_or(|v| v == etag));
    let (status, from) = match start {
        Some(s) if s < body.len() as u64 => ("206 Partial Content", s as usize),
        Some(_) => {
            write!(conn, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        None => ("200 OK", 0),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n",
        body.len() - from
    );
    if from > 0 {
        resp.push_str(&format!("Content-Range: bytes {from}-{}/{}\r\n", body.len() - 1, body.len()));
    }
    resp.push_str("Connection: close\r\n\r\n");
    conn.write_all(resp.as_bytes())?;
    let mut sent = 0u64;
    for chunk in body[from..].chunks(opts.chunk.max(1)) {
        let chunk = if drop_now { &chunk[..chunk.len().min((opts.drop_after - sent) as usize)] } else { chunk };
        conn.write_all(chunk)?;
        sent += chunk.len() as u64;
        stats.lock().expect("stats").bytes_sent += chunk.len() as u64;
        if drop_now && sent >= opts.drop_after {
            return Ok(()); // the connection drops mid-body
        }
        if !opts.pause.is_zero() {
            std::thread::sleep(opts.pause);
        }
    }
    Ok(())
}

/// Publishes an update command to a device, signed as the controller would, and waits for the broker to
/// take it.
pub fn send_update(broker: &str, device: &str, job: &str, url: &str, size: usize, sha: &str) {
    send_command(broker, device, job, &sign_command(device, &update_json(job, url, size, sha, false)));
}

/// An update command's JSON; with `use_defaults`, `url` is only a file name.
pub fn update_json(job: &str, url: &str, size: usize, sha: &str, use_defaults: bool) -> String {
    format!(
        r#"{{"type":"update","job_id":"{job}","rollout_id":"r0","url":"{url}","size":{size},"sha256":"{sha}","override":false,"use_defaults":{use_defaults}}}"#
    )
}

/// A test client's options for a plain `mqtt://host:port` broker: its own client id, a 5 s keep-alive.
pub fn plain_mqtt_options(broker: &str, client_id: &str) -> rumqttc::MqttOptions {
    let (host, port) = broker.trim_start_matches("mqtt://").rsplit_once(':').expect("host:port");
    let mut o = rumqttc::MqttOptions::new(client_id, host, port.parse().expect("port"));
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// Publishes a command's JSON to a device and waits for the broker to take it.
pub fn send_command(broker: &str, device: &str, client_id: &str, json: &str) {
    let options = plain_mqtt_options(broker, &format!("test-{client_id}"));
    publish_once(options, &format!("bindwave/v1/devices/{device}/commands"), json.as_bytes());
}

/// Connects with `options`, publishes `payload` to `topic` at QoS 1, waits for the broker to take it, and
/// disconnects.
pub fn publish_once(options: rumqttc::MqttOptions, topic: &str, payload: &[u8]) {
    use rumqttc::{Client, Event, Outgoing, Packet, QoS};
    let (client, mut conn) = Client::new(options, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload.to_vec()).expect("publish");
    for event in conn.iter() {
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => client.disconnect().expect("disconnect"),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Err(e) => panic!("mqtt: {e}"),
            _ => {}
        }
    }
}
