//! PostgreSQL on loopback, for a cluster of gateway nodes: a fresh cluster in a
//! temporary folder, run as the `postgres` account (it refuses root).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, temp_dir, wait_for_port, Proc};

pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    _server: Proc,
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| anyhow::anyhow!("PostgreSQL is not installed (run scripts/test)"))?
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| anyhow::anyhow!("no {name} in /usr/lib/postgresql"))
}

impl Postgres {
    pub fn start() -> anyhow::Result<Self> {
        let dir = temp_dir("postgres");
        let data = dir.join("data");
        let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status()?;
        anyhow::ensure!(st.success(), "chown {}", dir.display());
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin("initdb")?)
            .args(["--auth=trust", "--encoding=UTF8", "-D"])
            .arg(&data)
            .output()?;
        anyhow::ensure!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(bin("postgres")?)
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir);
        let server = Proc::spawn("postgres", cmd, Some(&dir.join("postgres.log")))?;
        wait_for_port(port, Duration::from_secs(30))?;
        Ok(Self { port, dir, _server: server })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}
