//! Workstations: real RDP servers on loopback.
//!
//! - [`Shadow`]: FreeRDP's shadow server sharing an Xvfb display, like a Windows
//!   PC with Remote Desktop on. TLS (password checked with PAM) or NLA (a SAM file).
//! - [`Xrdp`]: xrdp with xorgxrdp, a session server; its certificate is issued by
//!   a test CA, so the gateway can verify it properly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::network::Host;
use crate::{free_port, temp_dir, wait_for_port, Proc};

/// An X display on Xvfb with a full-screen terminal.
pub struct Display {
    pub number: u32,
    _procs: Vec<Proc>,
}

impl Display {
    /// Starts the display; the terminal runs as `run_as` (root if `None`).
    pub fn start(width: u32, height: u32, dir: &Path, run_as: Option<&str>) -> anyhow::Result<Self> {
        Self::start_on(&Host::local(), width, height, dir, run_as)
    }

    /// Starts the display on `host` (a network namespace or this machine).
    pub fn start_on(host: &Host, width: u32, height: u32, dir: &Path, run_as: Option<&str>) -> anyhow::Result<Self> {
        static NEXT: Mutex<u32> = Mutex::new(0);
        let number = {
            let mut next = NEXT.lock().unwrap();
            if *next == 0 {
                *next = 40 + std::process::id() % 50 * 10;
            }
            loop {
                *next += 1;
                let n = *next;
                if !Path::new(&format!("/tmp/.X{n}-lock")).exists() && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    break n;
                }
            }
        };
        let mut xvfb = host.command("Xvfb");
        xvfb.arg(format!(":{number}"))
            .args(["-screen", "0", &format!("{width}x{height}x24"), "-nolisten", "tcp", "-noreset"]);
        let xvfb = Proc::spawn("Xvfb", xvfb, Some(&dir.join(format!("xvfb-{number}.log"))))?;
        let socket = format!("/tmp/.X11-unix/X{number}");
        for _ in 0..100 {
            if Path::new(&socket).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::ensure!(Path::new(&socket).exists(), "Xvfb :{number} did not start");
        // A terminal filling the screen: keys typed anywhere reach it.
        let cols = width / 6;
        let rows = height / 13;
        let mut term = match run_as {
            Some(user) => {
                let mut c = host.command("runuser");
                c.args(["-u", user, "--", "xterm"]);
                c
            }
            None => host.command("xterm"),
        };
        term.env("DISPLAY", format!(":{number}"))
            .args(["-geometry", &format!("{cols}x{rows}+0+0"), "-fa", "", "-bg", "white", "-fg", "black"])
            .current_dir("/tmp");
        let xterm = Proc::spawn("xterm", term, None)?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self { number, _procs: vec![xvfb, xterm] })
    }

    /// What the display shows, as a PNG (ImageMagick's `import`).
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let st = Command::new("import")
            .args(["-display", &format!(":{}", self.number), "-window", "root"])
            .arg(format!("png24:{}", path.display()))
            .status()?;
        anyhow::ensure!(st.success(), "import failed on :{}", self.number);
        Ok(())
    }
}

/// How a shadow workstation checks who connects.
pub enum Security {
    /// TLS; the password is checked with PAM against Linux accounts after the connection.
    Tls,
    /// NLA (CredSSP, NTLM) against a SAM file with this one account.
    Nla { user: String, password: String },
    /// NLA with a domain account (`DOMAIN\user`), as a domain-joined PC.
    NlaInDomain { domain: String, user: String, password: String },
}

/// How a shadow workstation listens and proves who it is.
#[derive(Debug, Default, Clone)]
pub struct ShadowOptions {
    /// Its port (default: a free one).
    pub port: Option<u16>,
    /// Its certificate and key (default: FreeRDP's own self-signed one).
    pub certificate: Option<(PathBuf, PathBuf)>,
}

/// FreeRDP's shadow server on its own Xvfb display.
pub struct Shadow {
    pub port: u16,
    /// The address it listens on.
    pub ip: String,
    pub display: Display,
    pub dir: PathBuf,
    _server: Proc,
}

impl Shadow {
    pub fn start(security: Security) -> anyhow::Result<Self> {
        Self::start_for(security, None)
    }

    /// Like [`Shadow::start`], with the terminal running as `owner` (as on a person's PC).
    pub fn start_for(security: Security, owner: Option<&str>) -> anyhow::Result<Self> {
        Self::start_on(&Host::local(), security, owner)
    }

    /// A shadow workstation on `host`, listening on its address.
    pub fn start_on(host: &Host, security: Security, owner: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(host, security, owner, ShadowOptions::default())
    }

    /// A shadow workstation with a chosen port and certificate.
    pub fn start_with(host: &Host, security: Security, owner: Option<&str>, options: ShadowOptions) -> anyhow::Result<Self> {
        let dir = temp_dir("shadow");
        let display = Display::start_on(host, 1280, 800, &dir, owner)?;
        let port = options.port.unwrap_or_else(free_port);
        let mut cmd = host.command("freerdp-shadow-cli");
        if let Some((crt, key)) = &options.certificate {
            // FreeRDP's shadow server reads $XDG_CONFIG_HOME/freerdp/shadow/shadow.{crt,key}.
            let config = dir.join("config/freerdp/shadow");
            std::fs::create_dir_all(&config)?;
            std::fs::copy(crt, config.join("shadow.crt"))?;
            std::fs::copy(key, config.join("shadow.key"))?;
            cmd.env("XDG_CONFIG_HOME", dir.join("config"));
        }
        cmd.env("DISPLAY", format!(":{}", display.number))
            .arg(format!("/bind-address:{}", host.ip))
            .arg(format!("/port:{port}"));
        match &security {
            Security::Tls => {
                cmd.arg("/sec:tls");
            }
            Security::Nla { user, password } | Security::NlaInDomain { user, password, .. } => {
                let mut hash = Command::new("winpr-hash");
                hash.args(["-u", &user, "-p", &password, "-f", "sam"]);
                if let Security::NlaInDomain { domain, .. } = &security {
                    hash.args(["-d", domain]);
                }
                let line = hash.output()?;
                anyhow::ensure!(line.status.success(), "winpr-hash failed");
                let sam = dir.join("sam");
                std::fs::write(&sam, &line.stdout)?;
                cmd.arg("/sec:nla").arg(format!("/sam-file:{}", sam.display()));
            }
        }
        let server = Proc::spawn("freerdp-shadow-cli", cmd, Some(&dir.join("shadow.log")))?;
        host.wait_for_port(port, Duration::from_secs(20))?;
        Ok(Self { port, ip: host.ip.clone(), display, dir, _server: server })
    }

    pub fn url(&self) -> String {
        format!("rdp://{}:{}", self.ip, self.port)
    }
}

/// xrdp and its session manager. One at a time on a machine (the session manager's
/// port is fixed), so holding one serializes the tests that use it.
pub struct Xrdp {
    pub port: u16,
    pub dir: PathBuf,
    /// The CA that issued xrdp's certificate (PEM file).
    pub ca: PathBuf,
    _procs: Vec<Proc>,
    _turn: MutexGuard<'static, ()>,
}

impl Xrdp {
    pub fn start() -> anyhow::Result<Self> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = temp_dir("xrdp");
        let ca = issue_certificate(&dir)?;
        let port = free_port();
        let ini = std::fs::read_to_string("/etc/xrdp/xrdp.ini")?;
        std::fs::write(dir.join("xrdp.ini"), xrdp_ini(&ini, port, &dir))?;
        let st = Command::new("sh").arg("/usr/share/xrdp/socksetup").status()?;
        anyhow::ensure!(st.success(), "xrdp socksetup failed");
        let mut procs = Vec::new();
        if std::net::TcpStream::connect("[::1]:3350").is_err() {
            // No session manager runs, so the sockets of earlier sessions are stale; left
            // there, they use up xrdp's display range (10 to 60) and new sessions fail.
            if let Ok(entries) = std::fs::read_dir("/run/xrdp/sockdir") {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let mut sesman = Command::new("xrdp-sesman");
            sesman.arg("--nodaemon");
            procs.push(Proc::spawn("xrdp-sesman", sesman, Some(&dir.join("sesman.log")))?);
        }
        let mut xrdp = Command::new("xrdp");
        xrdp.arg("--nodaemon").arg("--config").arg(dir.join("xrdp.ini"));
        procs.push(Proc::spawn("xrdp", xrdp, Some(&dir.join("xrdp.log")))?);
        wait_for_port(port, Duration::from_secs(20))?;
        Ok(Self { port, dir, ca, _procs: procs, _turn: turn })
    }

    /// Prepares an account's session: a full-screen terminal, nothing else.
    pub fn add_account(&self, user: &str, password: &str) -> anyhow::Result<()> {
        crate::ensure_account(user, password)?;
        let home = PathBuf::from(format!("/home/{user}"));
        let startwm = home.join("startwm.sh");
        std::fs::write(&startwm, "#!/bin/sh\ncd /tmp\nexec xterm -geometry 212x61+0+0 -bg white -fg black\n")?;
        let st = Command::new("chmod").arg("755").arg(&startwm).status()?;
        anyhow::ensure!(st.success());
        let st = Command::new("chown").arg(format!("{user}:{user}")).arg(&startwm).status()?;
        anyhow::ensure!(st.success());
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("rdp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        // Sessions outlive xrdp: stop the session manager's children (Xorg, xterm) we caused.
        for proc in &self._procs {
            if proc.name == "xrdp-sesman" {
                let _ = Command::new("pkill").args(["-KILL", "-P", &proc.pid().to_string()]).status();
            }
        }
    }
}

fn xrdp_ini(template: &str, port: u16, dir: &Path) -> String {
    // Only the [Globals] section changes: the listening address, TLS, our certificate.
    let globals_start = template.find("[Globals]").unwrap_or(0);
    let globals_end = template[globals_start..].find("\n[").map(|i| globals_start + i);
    let (globals, rest) = template.split_at(globals_end.unwrap_or(template.len()));
    let mut out = String::new();
    for line in globals.lines() {
        let key = line.split('=').next().unwrap_or("");
        let line = match key {
            "port" => format!("port=tcp://127.0.0.1:{port}"),
            "security_layer" => "security_layer=tls".to_owned(),
            "certificate" => format!("certificate={}", dir.join("xrdp.crt").display()),
            "key_file" => format!("key_file={}", dir.join("xrdp.key").display()),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out + rest
}

/// A test CA and a leaf certificate for 127.0.0.1 (IP SAN, CA:FALSE, as rustls requires).
fn issue_certificate(dir: &Path) -> anyhow::Result<PathBuf> {
    let ca = crate::pki::TestCa::create(dir, "Rebond Test CA")?;
    ca.issue("xrdp", &["IP:127.0.0.1"])?;
    Ok(ca.ca_file)
}
