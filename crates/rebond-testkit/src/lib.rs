//! The real servers the tests and the demo run against, started and stopped here
//! and nowhere else: workstations (FreeRDP's shadow server on Xvfb, xrdp with an
//! Xorg session), Linux accounts, Samba as Active Directory, the gateway itself, and
//! headless Chromium.
//!
//! Internal tier: never an API. Every process started here is owned by a guard
//! that kills it (by PID) when dropped; nothing started by anyone else is touched.

pub mod browser;
pub mod call;
pub mod database;
pub mod directory;
pub mod gateway;
pub mod network;
pub mod pki;
mod procs;
pub mod sound;
pub mod tone;
pub mod workstation;

pub use procs::{cpu_seconds, free_port, rss_mib, wait_for_port, Proc};

use std::path::{Path, PathBuf};
use std::process::Command;

/// Creates (or resets the password of) a Linux account, as an office workstation
/// account. Idempotent.
pub fn ensure_account(user: &str, password: &str) -> anyhow::Result<()> {
    let exists = Command::new("id").arg(user).output()?.status.success();
    if !exists {
        let st = Command::new("useradd").args(["-m", "-s", "/bin/bash", user]).status()?;
        anyhow::ensure!(st.success(), "useradd {user} failed");
    }
    let mut child = Command::new("chpasswd").stdin(std::process::Stdio::piped()).spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().expect("piped"), format!("{user}:{password}\n").as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "chpasswd {user} failed");
    Ok(())
}

/// A fresh folder under the system temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rebond-test-{name}-{}-{}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}

/// A process-unique number.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos() as u64;
    N.fetch_add(1, Ordering::Relaxed) * 1_000_000_007 + t
}

/// RGBA pixels of a PNG file.
pub fn read_png(path: &Path) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let mut dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = dec.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| anyhow::anyhow!("PNG too large"))?];
    let info = reader.next_frame(&mut buf)?;
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
        other => anyhow::bail!("unexpected colour type {other:?}"),
    };
    Ok((info.width, info.height, rgba))
}

/// Share of pixels whose RGB is identical in two pictures of the same size.
pub fn same_pixels(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let same = a.chunks_exact(4).zip(b.chunks_exact(4)).filter(|(p, q)| p[..3] == q[..3]).count();
    same as f64 / (a.len() / 4) as f64
}
