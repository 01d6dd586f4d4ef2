//! A CPU quota per bounce worker, with Linux control groups: one busy session cannot
//! take more than its share of a core from the gateway and the other sessions.
//!
//! cgroup v2 (a `cpu` controller available under `/sys/fs/cgroup`) or v1 (the `cpu`
//! hierarchy at `/sys/fs/cgroup/cpu`): `rebond-workers/<gateway pid>/worker-<pid>`, one
//! group per worker, removed when the worker ends; groups left by gateways that are
//! gone (killed) are removed at start. Where neither can be written (no root, a
//! read-only hierarchy), the gateway says so once and workers keep only their lower
//! priority.

use std::path::{Path, PathBuf};

const PERIOD_US: u64 = 100_000;

/// Where worker groups are made, and how.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    V2(PathBuf),
    V1(PathBuf),
}

impl Hierarchy {
    /// Finds a writable CPU controller (`root`: normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Result<Self, String> {
        let me = std::process::id().to_string();
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "cpu") {
            let all = root.join("rebond-workers");
            let base = all.join(&me);
            std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
            // Each level passes the cpu controller down to its children.
            for dir in [root, &all, &base] {
                std::fs::write(dir.join("cgroup.subtree_control"), "+cpu").map_err(|e| format!("enabling cpu in {}: {e}", dir.display()))?;
            }
            remove_stale(&all);
            return Ok(Self::V2(base));
        }
        let v1 = root.join("cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let all = v1.join("rebond-workers");
            let base = all.join(&me);
            std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
            remove_stale(&all);
            return Ok(Self::V1(base));
        }
        Err("no cgroup CPU controller (neither cgroup v2 with cpu nor the v1 cpu hierarchy)".into())
    }

    /// Puts process `pid` (worker `name`) under a quota of `percent` of one core.
    pub fn limit(&self, name: &str, pid: u32, percent: u32) -> std::io::Result<WorkerGroup> {
        let quota = PERIOD_US * u64::from(percent) / 100;
        let dir = match self {
            Self::V2(base) | Self::V1(base) => base.join(name),
        };
        std::fs::create_dir_all(&dir)?;
        match self {
            Self::V2(_) => std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?,
            Self::V1(_) => {
                std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            }
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(WorkerGroup { dir })
    }
}

/// Removes the groups of gateways that no longer run (their empty worker groups first).
fn remove_stale(all: &Path) {
    let Ok(gateways) = std::fs::read_dir(all) else { return };
    for gateway in gateways.flatten().filter(|e| e.path().is_dir()) {
        let name = gateway.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() || Path::new("/proc").join(&name).exists() {
            continue;
        }
        if let Ok(workers) = std::fs::read_dir(gateway.path()) {
            for w in workers.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(w.path());
            }
        }
        let _ = std::fs::remove_dir(gateway.path());
    }
}

/// A worker's group; removed on drop (once the worker has exited).
#[derive(Debug)]
pub struct WorkerGroup {
    dir: PathBuf,
}

impl Drop for WorkerGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
