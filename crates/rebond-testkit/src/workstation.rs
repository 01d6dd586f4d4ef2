//! Workstations: real RDP servers on loopback.
//!
//! - [`Shadow`]: FreeRDP's shadow server sharing an Xvfb display, like a Windows
//!   PC with Remote Desktop on. TLS (password checked with PAM) or NLA (a SAM file).
//! - [`Xrdp`]: xrdp with xorgxrdp, a session server; its certificate is issued by
//!   a test CA, so the gateway can verify it properly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::network::Host;
use crate::{free_port, temp_dir, wait_for_port, Proc};

/// The title of the full-screen terminal on a workstation's screen (it keeps it: the
/// shell may not change it).
pub const TERMINAL_TITLE: &str = "rebond-terminal";

/// The arguments of the terminal (xterm) that fills a `width`×`height` screen with
/// 6×13-pixel characters: without a window manager, keys typed anywhere reach it.
pub fn terminal_args(width: u32, height: u32) -> Vec<String> {
    let geometry = format!("{}x{}+0+0", width / 6, height / 13);
    let xrm = "XTerm*allowTitleOps: false";
    ["-geometry", &geometry, "-T", TERMINAL_TITLE, "-xrm", xrm, "-fa", "", "-bg", "white", "-fg", "black"].map(str::to_owned).to_vec()
}

/// Shell commands that wait until a window with this title shows on `$DISPLAY`.
pub fn shell_wait_for(title: &str) -> String {
    format!("until xwininfo -name '{title}' 2>/dev/null | grep -q IsViewable; do sleep 0.05; done")
}

/// An X server's screen as its clients reach it: the display number and, when the
/// server checks who connects (an xrdp session's Xorg), the account's authority file.
#[derive(Debug, Clone)]
pub struct XScreen {
    pub number: u32,
    pub xauthority: Option<PathBuf>,
}

impl XScreen {
    /// `program`, as a client of this screen.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DISPLAY", format!(":{}", self.number));
        if let Some(file) = &self.xauthority {
            cmd.env("XAUTHORITY", file);
        }
        cmd
    }

    /// What the screen shows, as a PNG (ImageMagick's `import`).
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let st = self.command("import").args(["-window", "root"]).arg(format!("png24:{}", path.display())).status()?;
        anyhow::ensure!(st.success(), "import failed on :{}", self.number);
        Ok(())
    }

    /// Its size in pixels (the root window's).
    pub fn size(&self) -> Option<(u32, u32)> {
        let out = self.command("xwininfo").arg("-root").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| text.lines().find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok());
        Some((field("Width:")?, field("Height:")?))
    }

    /// Whether a window with this title is mapped and visible.
    pub fn shows(&self, title: &str) -> bool {
        self.command("xwininfo")
            .args(["-name", title])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("Map State: IsViewable"))
    }

    /// Waits until windows with these titles are visible.
    pub fn wait_for(&self, titles: &[&str], timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        while !titles.iter().all(|t| self.shows(t)) {
            anyhow::ensure!(Instant::now() < until, "no window {titles:?} visible on :{} after {timeout:?}", self.number);
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

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
                // Above xrdp's display numbers (10 to 59).
                *next = 100 + std::process::id() % 50 * 10;
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
        let mut term = match run_as {
            Some(user) => {
                let mut c = host.command("runuser");
                c.args(["-u", user, "--", "xterm"]);
                c
            }
            None => host.command("xterm"),
        };
        term.env("DISPLAY", format!(":{number}")).args(terminal_args(width, height)).current_dir("/tmp");
        let xterm = Proc::spawn("xterm", term, None)?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self { number, _procs: vec![xvfb, xterm] })
    }

    /// Its screen, for X clients.
    pub fn screen(&self) -> XScreen {
        XScreen { number: self.number, xauthority: None }
    }

    /// What the display shows, as a PNG (ImageMagick's `import`).
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        self.screen().screenshot(path)
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // Xvfb is killed (SIGKILL): its lock and socket stay behind and keep the number taken.
        self._procs.clear();
        let _ = std::fs::remove_file(format!("/tmp/.X{}-lock", self.number));
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{}", self.number));
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
                hash.args(["-u", user, "-p", password, "-f", "sam"]);
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
/// port is fixed), so holding one serializes the tests and benchmarks that use it, in
/// this process and in others.
pub struct Xrdp {
    pub port: u16,
    pub dir: PathBuf,
    /// The CA that issued xrdp's certificate (PEM file).
    pub ca: PathBuf,
    /// The accounts prepared here: their sessions end with it.
    accounts: Mutex<Vec<String>>,
    _procs: Vec<Proc>,
    _turn: MutexGuard<'static, ()>,
    /// Held (`flock`) while this one runs, for other processes.
    _machine_turn: std::fs::File,
}

impl Xrdp {
    pub fn start() -> anyhow::Result<Self> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // Another process sharing the session manager would end this one's sessions when it
        // stops (or the other way round): wait for its turn.
        let machine_turn = std::fs::OpenOptions::new().create(true).append(true).open("/tmp/rebond-testkit-xrdp.lock")?;
        // SAFETY: flock on a descriptor this function owns; released when the file closes.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&machine_turn), libc::LOCK_EX) } != 0 {
            anyhow::bail!("cannot lock /tmp/rebond-testkit-xrdp.lock: {}", std::io::Error::last_os_error());
        }
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
        Ok(Self { port, dir, ca, accounts: Mutex::new(Vec::new()), _procs: procs, _turn: turn, _machine_turn: machine_turn })
    }

    /// Prepares an account's session: a full-screen terminal, nothing else.
    pub fn add_account(&self, user: &str, password: &str) -> anyhow::Result<()> {
        self.add_account_with(user, password, None)
    }

    /// Prepares an account's session: a terminal filling a 1280×800 screen (as on a shadow
    /// workstation) and, in front of it, `scene`: shell commands the session runs as the
    /// account when it starts (on the first sign-in), e.g. a picture. The session lasts
    /// while the terminal or what `scene` left running does.
    pub fn add_account_with(&self, user: &str, password: &str, scene: Option<&str>) -> anyhow::Result<()> {
        crate::ensure_account(user, password)?;
        self.accounts.lock().unwrap_or_else(|e| e.into_inner()).push(user.to_owned());
        let terminal: Vec<String> = std::iter::once("xterm".to_owned()).chain(terminal_args(1280, 800)).map(|a| format!("'{a}'")).collect();
        let terminal = terminal.join(" ");
        let script = match scene {
            None => format!("#!/bin/sh\ncd /tmp\nexec {terminal}\n"),
            // The scene once the terminal shows, so that it is in front.
            Some(scene) => format!(
                "#!/bin/sh\ncd /tmp\n{terminal} &\n{}\n{scene}\nwait\n",
                shell_wait_for(TERMINAL_TITLE)
            ),
        };
        let home = PathBuf::from(format!("/home/{user}"));
        let startwm = home.join("startwm.sh");
        std::fs::write(&startwm, script)?;
        let st = Command::new("chmod").arg("755").arg(&startwm).status()?;
        anyhow::ensure!(st.success());
        let st = Command::new("chown").arg(format!("{user}:{user}")).arg(&startwm).status()?;
        anyhow::ensure!(st.success());
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("rdp://127.0.0.1:{}", self.port)
    }

    /// The screen of `user`'s session (its Xorg, which the session manager starts at the
    /// first sign-in, at the size that client asked for), while it runs.
    pub fn session_screen(&self, user: &str) -> Option<XScreen> {
        let (pid, number, args) = xorg_of(&uid_of(user)?).into_iter().next()?;
        // `-auth FILE`, relative to the folder Xorg runs in (the account's home).
        let auth = args.iter().skip_while(|a| *a != "-auth").nth(1)?;
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        Some(XScreen { number, xauthority: Some(cwd.join(auth)) })
    }
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        for user in self.accounts.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            end_session(user);
        }
        // Sessions outlive xrdp: stop the session manager's children (Xorg, xterm) we caused.
        for proc in &self._procs {
            if proc.name == "xrdp-sesman" {
                let _ = Command::new("pkill").args(["-KILL", "-P", &proc.pid().to_string()]).status();
            }
        }
    }
}

/// Ends `user`'s xrdp session: its processes by PID (TERM, then KILL), then what a killed
/// Xorg leaves behind (its lock and socket, xrdp's sockets for that display), which would
/// otherwise use up xrdp's display numbers.
fn end_session(user: &str) {
    let Some(uid) = uid_of(user) else { return };
    let displays: Vec<u32> = xorg_of(&uid).into_iter().map(|(_, number, _)| number).collect();
    for signal in ["-TERM", "-KILL"] {
        let pids: Vec<String> = processes_of(&uid).into_iter().map(|(pid, _)| pid.to_string()).collect();
        if pids.is_empty() {
            break;
        }
        let _ = Command::new("kill").arg(signal).args(&pids).stderr(std::process::Stdio::null()).status();
        let until = Instant::now() + Duration::from_secs(3);
        while !processes_of(&uid).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for n in displays {
        let lock = format!("/tmp/.X{n}-lock");
        // Unless another server holds that display now.
        let holder = std::fs::read_to_string(&lock).ok().and_then(|pid| pid.trim().parse::<u32>().ok());
        if holder.is_some_and(|pid| process_state(pid).is_some_and(|s| s != 'Z')) {
            continue;
        }
        let _ = std::fs::remove_file(&lock);
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
        if let Ok(entries) = std::fs::read_dir("/run/xrdp/sockdir") {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(&format!("_{n}")) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The Xorg servers running as `uid`: PID, display number, command line.
fn xorg_of(uid: &str) -> Vec<(u32, u32, Vec<String>)> {
    processes_of(uid)
        .into_iter()
        .filter(|(_, name)| name == "Xorg")
        .filter_map(|(pid, _)| {
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = args.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let number = args.iter().find_map(|a| a.strip_prefix(':')?.parse().ok())?;
            Some((pid, number, args))
        })
        .collect()
}

/// The numeric user id of an account.
fn uid_of(user: &str) -> Option<String> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The live processes (PID, name) whose real user id is `uid` (zombies left out: they
/// hold nothing and cannot be killed).
fn processes_of(uid: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            let owner = field("Uid:")?.split_whitespace().next()?;
            if owner != uid || field("State:")?.starts_with('Z') {
                return None;
            }
            Some((pid, field("Name:")?.to_owned()))
        })
        .collect()
}

/// A process's state letter (`R`, `S`, `Z`…), if it exists.
fn process_state(pid: u32) -> Option<char> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("State:"))?.trim().chars().next()
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
