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

pub use procs::{free_port, CpuMeter, rss_mib, wait_for_port, Proc};

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

/// Deletes a Linux account made by [`ensure_account`], with its home folder (once its
/// processes have ended).
pub fn remove_account(user: &str) -> anyhow::Result<()> {
    let st = Command::new("userdel").args(["-f", "-r", user]).stderr(std::process::Stdio::null()).status()?;
    // 12: the home folder could not be removed entirely (userdel still deleted the account).
    anyhow::ensure!(st.success() || st.code() == Some(12), "userdel {user} failed ({st})");
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
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA | png::Transformations::STRIP_16);
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

/// Structural similarity (SSIM, Wang et al. 2004) of two pictures of `width`×`height`
/// (RGBA): the mean over 8×8 windows, one every 4 pixels each way (as libvpx), of the
/// SSIM of their luma (BT.601), with the standard constants C1 = (0.01·255)²,
/// C2 = (0.03·255)². 1.0 for identical pictures, lower as structure is lost (JPEG's
/// blocks and blur, noise); NaN for pictures of another size or smaller than a window.
pub fn ssim(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    const WINDOW: usize = 8;
    const STEP: usize = 4;
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    if a.len() != width * height * 4 || b.len() != a.len() || width < WINDOW || height < WINDOW {
        return f64::NAN;
    }
    let luma = |rgba: &[u8]| -> Vec<f64> {
        rgba.chunks_exact(4).map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect()
    };
    let (la, lb) = (luma(a), luma(b));
    let n = (WINDOW * WINDOW) as f64;
    let (mut total, mut windows) = (0.0, 0usize);
    for top in (0..=height - WINDOW).step_by(STEP) {
        for left in (0..=width - WINDOW).step_by(STEP) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for row in top..top + WINDOW {
                for i in row * width + left..row * width + left + WINDOW {
                    let (x, y) = (la[i], lb[i]);
                    sa += x;
                    sb += y;
                    saa += x * x;
                    sbb += y * y;
                    sab += x * y;
                }
            }
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += (2.0 * ma * mb + C1) * (2.0 * cov + C2) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
            windows += 1;
        }
    }
    total / windows as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with structure: gradients and a checkerboard of 8-pixel squares.
    fn picture(width: usize, height: usize) -> Vec<u8> {
        (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                [(x * 4) as u8, (y * 5) as u8, if (x / 8 + y / 8) % 2 == 0 { 40 } else { 200 }, 255]
            })
            .collect()
    }

    /// `picture` with each colour moved by up to `amount` (a fixed pseudo-random sequence).
    fn noisy(picture: &[u8], amount: i32) -> Vec<u8> {
        let mut state = 1u32;
        let mut next = move || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as i32 % (2 * amount + 1) - amount
        };
        picture.iter().enumerate().map(|(i, &v)| if i % 4 == 3 { v } else { (i32::from(v) + next()).clamp(0, 255) as u8 }).collect()
    }

    #[test]
    fn ssim_is_one_for_the_same_picture_and_lower_with_noise() {
        let (w, h) = (64, 48);
        let a = picture(w, h);
        assert_eq!(ssim(&a, &a, w, h), 1.0);
        let slightly = ssim(&a, &noisy(&a, 8), w, h);
        let very = ssim(&a, &noisy(&a, 64), w, h);
        assert!(slightly < 1.0 && very < slightly && very > 0.0, "noise 8: {slightly}, noise 64: {very}");
        assert!(ssim(&a, &a[4..], w, h).is_nan(), "pictures of different sizes");
    }
}
