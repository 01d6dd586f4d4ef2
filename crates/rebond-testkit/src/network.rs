//! Test hosts: network namespaces made by the test itself, as in a real deployment:
//! **home** (the browser) — **dmz** (the gateway) — **office** (the workstations).
//! Home reaches only the dmz; the dmz reaches the office; nothing routes between home
//! and office (the dmz does not forward). Addresses are private to these namespaces.

use std::process::Command;
use std::time::{Duration, Instant};

/// Where a test process runs: the machine itself, or a namespace with its address.
#[derive(Debug, Clone)]
pub struct Host {
    pub netns: Option<String>,
    pub ip: String,
}

impl Host {
    pub fn local() -> Self {
        Self { netns: None, ip: "127.0.0.1".into() }
    }

    /// A command that runs on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        }
    }

    /// Opens a TCP connection from inside this host's network namespace, for the test
    /// process itself (a thread enters the namespace, connects, and ends; the socket
    /// stays in the namespace it was made in).
    pub fn connect(&self, ip: &str, port: u16) -> std::io::Result<std::net::TcpStream> {
        let addr = (ip.to_owned(), port);
        let Some(ns) = self.netns.clone() else { return std::net::TcpStream::connect(addr) };
        std::thread::spawn(move || {
            let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
            use std::os::fd::AsRawFd as _;
            // SAFETY: a valid namespace descriptor; only this short-lived thread moves.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::net::TcpStream::connect(addr)
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
    }

    /// Whether a TCP connection from this host to `ip:port` succeeds (within 2 s).
    pub fn can_connect(&self, ip: &str, port: u16) -> bool {
        self.command("timeout")
            .args(["2", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until something on this host accepts connections on its own address.
    pub fn wait_for_port(&self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.can_connect(&self.ip, port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("nothing listens on {}:{port} after {timeout:?}", self.ip)
    }
}

/// The three networks. Dropping it deletes the namespaces (and their links).
pub struct Topology {
    pub home: Host,
    /// The gateway's side facing home.
    pub dmz_front: Host,
    /// The gateway's side facing the office (same namespace as `dmz_front`).
    pub dmz_back: Host,
    pub office: Host,
    names: Vec<String>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    anyhow::ensure!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(())
}

impl Topology {
    pub fn create() -> anyhow::Result<Self> {
        let n = crate::unique() % 200 + 20;
        let (home, dmz, office) = (format!("rbhome{n}"), format!("rbdmz{n}"), format!("rboffice{n}"));
        let mut t = Topology {
            home: Host { netns: Some(home.clone()), ip: format!("10.97.{n}.2") },
            dmz_front: Host { netns: Some(dmz.clone()), ip: format!("10.97.{n}.1") },
            dmz_back: Host { netns: Some(dmz.clone()), ip: format!("10.98.{n}.1") },
            office: Host { netns: Some(office.clone()), ip: format!("10.98.{n}.2") },
            names: Vec::new(),
        };
        for ns in [&home, &dmz, &office] {
            ip(&["netns", "add", ns])?;
            t.names.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // home <-> dmz, dmz <-> office; no other link, no forwarding in the dmz.
        for (a, b, a_ip, b_ip, tag) in [
            (&home, &dmz, &t.home.ip, &t.dmz_front.ip, "h"),
            (&office, &dmz, &t.office.ip, &t.dmz_back.ip, "o"),
        ] {
            let (va, vb) = (format!("rb{tag}{n}a"), format!("rb{tag}{n}b"));
            ip(&["link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b])?;
            ip(&["-n", a, "addr", "add", &format!("{a_ip}/24"), "dev", &va])?;
            ip(&["-n", b, "addr", "add", &format!("{b_ip}/24"), "dev", &vb])?;
            ip(&["-n", a, "link", "set", &va, "up"])?;
            ip(&["-n", b, "link", "set", &vb, "up"])?;
        }
        let st = Command::new("ip").args(["netns", "exec", &dmz, "sysctl", "-qw", "net.ipv4.ip_forward=0"]).status()?;
        anyhow::ensure!(st.success(), "cannot turn forwarding off in the dmz");
        Ok(t)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
