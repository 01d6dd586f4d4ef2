//! What one frame costs the encoder, for the workloads that matter: a keystroke, a
//! terminal flood, a window switch (with and without the page's tile cache).
//!
//! `cargo bench -p rebond-display` prints the median time per frame over many frames
//! (the machine is shared: medians, and compare runs taken together).

use std::time::{Duration, Instant};

use rebond_display::{Encoder, EncoderSettings};

const W: u16 = 1280;
const H: u16 = 800;

/// A page of "text": rows of two-colour noise, a line of 13 pixels, different per seed.
fn text_page(seed: u64) -> Vec<u8> {
    let mut out = vec![255u8; usize::from(W) * usize::from(H) * 4];
    for y in 0..usize::from(H) {
        for x in 0..usize::from(W) {
            let v = ((y / 13) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed ^ ((x as u64 / 6) << 32) ^ ((y % 13) as u64);
            if v.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 61 == 0 && y % 13 > 2 {
                let i = (y * usize::from(W) + x) * 4;
                out[i..i + 3].fill(0);
            }
        }
    }
    out
}

/// Median time of `frames` calls of `step` (after a warm-up); a few frames only when
/// not run by `cargo bench` (the test suite runs benchmarks as smoke tests).
fn median_of(frames: usize, mut step: impl FnMut(usize)) -> Duration {
    let frames = if std::env::args().any(|a| a == "--bench") { frames } else { 3 };
    for i in 0..frames / 10 {
        step(i);
    }
    let mut times: Vec<Duration> = (0..frames)
        .map(|i| {
            let t = Instant::now();
            step(i);
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn keystroke(settings: EncoderSettings) -> Duration {
    let mut page = text_page(1);
    let mut e = Encoder::new(W, H, settings);
    e.encode(&page, 0);
    // A character typed every 80 ms along a line, as in the typing workload.
    median_of(2_000, |i| {
        let (x, y) = ((i % 200) * 6, 13 * (10 + (i / 200) % 40));
        for row in y..y + 13 {
            let at = (row * usize::from(W) + x) * 4;
            page[at..at + 24].iter_mut().for_each(|b| *b ^= 0xff);
        }
        e.damage(x as u16, y as u16, x as u16 + 6, y as u16 + 13);
        std::hint::black_box(e.encode(&page, i as u64 * 80));
    })
}

fn flood(settings: EncoderSettings) -> Duration {
    let pages: Vec<Vec<u8>> = (0..8).map(text_page).collect();
    let mut e = Encoder::new(W, H, settings);
    // A new screen of text every 66 ms, as `ls -lR` in a terminal.
    median_of(60, |i| {
        e.damage(0, 0, W, H);
        std::hint::black_box(e.encode(&pages[i % pages.len()], i as u64 * 66));
    })
}

fn switch(settings: EncoderSettings) -> Duration {
    let pages = [text_page(1), text_page(2)];
    let mut e = Encoder::new(W, H, settings);
    // Two windows taking turns in front every second.
    median_of(60, |i| {
        e.damage(0, 0, W, H);
        std::hint::black_box(e.encode(&pages[i % 2], i as u64 * 1_000));
    })
}

fn main() {
    let cached = EncoderSettings { cache_seed: 7, ..EncoderSettings::default() };
    let uncached = EncoderSettings { tile_cache: false, ..EncoderSettings::default() };
    println!("{:<12} {:>14} {:>14}", "frame", "cache on", "cache off");
    for (name, run) in [("keystroke", keystroke as fn(EncoderSettings) -> Duration), ("flood", flood), ("switch", switch)] {
        println!("{name:<12} {:>14.1?} {:>14.1?}", run(cached), run(uncached));
    }
}
