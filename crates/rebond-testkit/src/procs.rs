//! Processes owned by a test, killed by PID when the guard drops.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (with its process group) when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` in its own process group, with its output in `log` (or discarded).
    pub fn spawn(name: &str, mut cmd: Command, log: Option<&std::path::Path>) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0).stdin(Stdio::null());
        match log {
            Some(path) => {
                let f = std::fs::File::create(path)?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().map_err(|e| anyhow::anyhow!("cannot start {name}: {e} (is it installed? run scripts/test)"))?;
        Ok(Self { name: name.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM and waits for the exit (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        unsafe_kill(self.child.id(), 15);
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id();
        // The whole group: a server's own children go with it.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: i32) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}")
}

/// A process's CPU time to the nanosecond: the sum of its threads' run times
/// (`/proc/PID/task/*/schedstat`). `/proc/PID/stat` counts in ticks of 10 ms, which over
/// a 10 s run is 0.1 % of a core: as much as the differences a benchmark looks for.
/// A thread that ends keeps the time last read for it, so a total never goes back.
#[derive(Debug, Default)]
pub struct CpuMeter {
    threads: std::collections::HashMap<String, u64>,
}

impl CpuMeter {
    /// Seconds of CPU the process's threads have used, as far as this meter has seen
    /// them; `None` once the process is gone.
    pub fn read(&mut self, pid: &str) -> Option<f64> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
            let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) else { continue };
            let seen = self.threads.entry(task.file_name().to_string_lossy().into_owned()).or_default();
            *seen = (*seen).max(ns);
        }
        Some(self.threads.values().sum::<u64>() as f64 / 1e9)
    }
}

/// Resident memory of a process, MiB.
pub fn rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

