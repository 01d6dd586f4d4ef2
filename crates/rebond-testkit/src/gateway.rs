//! The gateway under test: the real `rebond` binary, on loopback, with its own data folder.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{free_port, temp_dir, Proc};

pub struct Gateway {
    pub exe: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    /// The address it listens on.
    pub ip: String,
    pub log: PathBuf,
    proc: Proc,
}

impl Gateway {
    /// Starts `rebond serve` with embedded defaults (and `config`, if given, as a TOML file).
    pub fn start(exe: &Path, config: Option<&str>) -> anyhow::Result<Self> {
        Self::start_on(&crate::network::Host::local(), exe, config)
    }

    /// Starts the gateway on `host`, listening on its address.
    pub fn start_on(host: &crate::network::Host, exe: &Path, config: Option<&str>) -> anyhow::Result<Self> {
        Self::start_full(host, exe, config, &[])
    }

    /// Starts the gateway with extra environment variables.
    pub fn start_with_env(exe: &Path, config: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_full(&crate::network::Host::local(), exe, config, env)
    }

    fn start_full(host: &crate::network::Host, exe: &Path, config: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data = temp_dir("gateway");
        let port = free_port();
        let log = data.join("gateway.log");
        let mut cmd = host.command(exe);
        cmd.arg("serve").arg("--data").arg(&data).arg("--listen").arg(format!("{}:{port}", host.ip));
        if let Some(text) = config {
            let path = data.join("rebond.toml");
            std::fs::write(&path, text)?;
            cmd.arg("--config").arg(path);
        }
        cmd.env("RUST_LOG", "info").envs(env.iter().copied());
        let proc = Proc::spawn("rebond serve", cmd, Some(&log))?;
        host.wait_for_port(port, Duration::from_secs(20)).map_err(|e| {
            anyhow::anyhow!("{e}; gateway log:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
        })?;
        Ok(Self { exe: exe.to_owned(), data, port, ip: host.ip.clone(), log, proc })
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn url(&self) -> String {
        format!("https://{}:{}", self.ip, self.port)
    }

    /// Runs `rebond ARGS… --data DATA` and returns its standard output.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).arg("--data").arg(&self.data).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        run(cmd, stdin)
    }

    pub fn add_user_in(&self, name: &str, password: &str, groups: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        for g in groups {
            args.extend(["--group", g]);
        }
        self.cli(&args, Some(password)).map(drop)
    }

    pub fn add_user(&self, name: &str, password: &str) -> anyhow::Result<()> {
        self.cli(&["user", "add", name, "--password-stdin"], Some(password)).map(drop)
    }

    /// Routes `user` to `url`, trusting exactly the certificate the workstation shows now.
    pub fn route_pinned(&self, user: &str, url: &str) -> anyhow::Result<()> {
        self.route_pinned_from(&crate::network::Host::local(), user, url)
    }

    /// Like [`Gateway::route_pinned`], reading the certificate from `host` (the gateway's).
    pub fn route_pinned_from(&self, host: &crate::network::Host, user: &str, url: &str) -> anyhow::Result<()> {
        let mut cmd = host.command(&self.exe);
        cmd.args(["route", "fingerprint", url]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let fp = run(cmd, None)?;
        self.cli(&["route", "set", user, url, "--pin", fp.trim()], None).map(drop)
    }

    /// GET `path` over HTTPS (self-signed certificate accepted): (status, body).
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let out = Command::new("curl")
            .args(["-sk", "-o", "-", "-w", "\n%{http_code}", &format!("{}{path}", self.url())])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((status.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// The process ids of the bounce workers started so far (from the gateway's log).
    pub fn worker_pids(&self) -> Vec<String> {
        worker_pids_in(&self.log_text())
    }

    /// Whether the gateway process has exited.
    pub fn exited(&mut self) -> bool {
        self.proc.exited()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as an orchestrator would send it.
    pub fn terminate(&mut self) -> bool {
        self.proc.terminate(Duration::from_secs(10))
    }
}

/// The process ids of the bounce workers a gateway's log says it started.
pub fn worker_pids_in(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("bounce worker started"))
        .filter_map(|l| l.split("pid=").nth(1)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Runs the `rebond` binary (no data folder) and returns its standard output.
pub fn rebond(exe: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    run(cmd, stdin)
}

fn run(mut cmd: Command, stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        child.stdin.as_mut().expect("piped").write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
