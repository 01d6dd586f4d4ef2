//! A phone call through the gateway, with real parts end to end: a workstation that
//! plays beeps and records what it hears ([`crate::sound::SoundWorkstation`]), the
//! real gateway, and the real page in headless Chromium whose fake microphone plays
//! other beeps. Used by the end-to-end test (short, checks the sound) and by
//! `rebond-call` (as long as asked, prints the figures).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::browser::Chromium;
use crate::gateway::Gateway;
use crate::sound::{SoundOptions, SoundWorkstation, SoundWorkstationOptions};
use crate::tone;

/// The workstation's beeps (what a caller says) and the microphone's.
pub const SPEAKER_HZ: f32 = 660.0;
pub const MICROPHONE_HZ: f32 = 1_000.0;
const LEVEL_DBFS: f32 = -12.0;
const BEEP_MS: u32 = 300;
const GAP_MS: u32 = 700;

/// The gateway's configuration for a call-centre agent.
pub const CONFIG: &str = "[[policies]]\nname = \"call-centre\"\ngroups = [\"call-centre\"]\nspeaker = true\nmicrophone = true\n";

#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub seconds: f64,
    /// Loudest frequency the page played, and its level (analyser, dB).
    pub speaker_hz: f32,
    pub speaker_db: f32,
    /// Loudest frequency the workstation recorded, and its level (dBFS).
    pub microphone_hz: f32,
    pub microphone_dbfs: f32,
    /// Workstation hands a beep to RDP → the page plays it, per beep (ms).
    pub speaker_latency_ms: Vec<f64>,
    /// The page captures a beep → the workstation receives it on its audio input (ms).
    pub microphone_latency_ms: Vec<f64>,
    /// The page's jitter buffer: packets, underruns, restarts after silence, dropped
    /// to catch up; from arrival to decoded and from decoded to playout (median, p99,
    /// ms); and the audio device's own output latency, which comes on top (ms).
    pub speaker_packets: u64,
    pub underruns: u64,
    pub restarts: u64,
    pub dropped: u64,
    /// Blocks dropped to bring the delay back to the target after a burst.
    pub trimmed: u64,
    pub decode_median_ms: f64,
    pub buffer_median_ms: f64,
    pub buffer_p99_ms: f64,
    pub device_output_latency_ms: f64,
    /// Bitrates on the browser's socket (Opus with our 2-byte header), kbit/s.
    pub speaker_kbit_s: f64,
    pub microphone_kbit_s: f64,
    /// What the workstation sent and received as PCM over RDP, kbit/s: what a gateway
    /// that forwards raw PCM would put on the person's connection.
    pub speaker_pcm_kbit_s: f64,
    pub microphone_pcm_kbit_s: f64,
    /// CPU of the session's worker during the call, % of one core.
    pub worker_cpu_percent: f64,
    /// Microphone packets sent during a second after the person muted it.
    pub sent_while_muted: u64,
}

/// Runs a call of `seconds` (after the page shows the desktop and sound flows).
pub async fn run(exe: &Path, seconds: u64) -> anyhow::Result<CallReport> {
    let dir = crate::temp_dir("call");
    let n = crate::unique() % 100_000_000;
    let (user, password) = (format!("agent{n}"), format!("Pw-{n}-call"));
    let ca = crate::pki::TestCa::create(&dir, "Call test CA")?;
    let mut options = SoundWorkstationOptions::new(&ca, &user, &password)?;
    options.sound = SoundOptions { tone_hz: SPEAKER_HZ, level_dbfs: LEVEL_DBFS, beep_ms: BEEP_MS, gap_ms: GAP_MS };
    let ws = SoundWorkstation::start(options)?;
    let wav = dir.join("microphone.wav");
    tone::write_beeps_wav(&wav, 48_000, MICROPHONE_HZ, LEVEL_DBFS, BEEP_MS, GAP_MS, 20.0)?;
    let gw = Gateway::start(exe, Some(CONFIG))?;
    gw.add_user_in(&user, &password, &["call-centre"])?;
    gw.route_pinned(&user, &ws.url())?;

    let chromium = Chromium::start_with_microphone("en-US", 1280, 800, &wav)?;
    let mut page = chromium.page().await?;
    page.open_sign_in(&gw.url()).await?;
    page.submit_sign_in(&user, &password).await?;
    page.wait_for_desktop().await?;
    page.wait_for("window.rebondSound.stats.packets > 25", Duration::from_secs(20)).await?;
    // Listen to what the page plays: the loudest level of each frequency.
    page.eval(
        "(() => { const s = window.rebondSound; const a = s.ctx.createAnalyser(); a.fftSize = 8192; \
         s.output.connect(a); const d = new Float32Array(a.frequencyBinCount); \
         window.rebondTestPeak = new Float32Array(a.frequencyBinCount).fill(-200); \
         window.rebondTestBin = s.ctx.sampleRate / a.fftSize; \
         setInterval(() => { a.getFloatFrequencyData(d); for (let i = 0; i < d.length; i++) \
           if (d[i] > window.rebondTestPeak[i]) window.rebondTestPeak[i] = d[i]; }, 50); return true; })()",
    )
    .await?;
    // Nothing goes up before the person clicks the microphone button.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_before_click = page.eval("window.rebondSound.stats.microphonePackets").await?.as_u64().unwrap_or(u64::MAX);
    anyhow::ensure!(sent_before_click == 0, "the page sent {sent_before_click} microphone packets before the click");
    anyhow::ensure!(ws.recording().samples.is_empty(), "the workstation heard something before the click");
    // The person switches the microphone on (the fake device grants it).
    page.eval("document.getElementById('microphone-button').click(); true").await?;
    page.wait_for("window.rebondSound.stats.microphonePackets > 25", Duration::from_secs(20)).await?;

    let worker = gw.worker_pids().pop().ok_or_else(|| anyhow::anyhow!("no worker started"))?;
    let mut meter = crate::CpuMeter::default();
    let cpu_before = meter.read(&worker).unwrap_or_default();
    let before = page_stats(&mut page).await?;
    let recorded_before = ws.recording().samples.len();
    let started = Instant::now();
    let started_ms = crate::sound::unix_ms();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = meter.read(&worker).unwrap_or_default();
    let after = page_stats(&mut page).await?;
    // The same button mutes: nothing more goes up.
    page.eval("document.getElementById('microphone-button').click(); true").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let muted_at = page.eval("window.rebondSound.stats.microphonePackets").await?.as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent_while_muted = page.eval("window.rebondSound.stats.microphonePackets").await?.as_u64().unwrap_or(0) - muted_at;

    let (speaker_hz, speaker_db) = {
        let v = page
            .eval("(() => { const p = window.rebondTestPeak; let m = 1; for (let i = 2; i < p.length; i++) if (p[i] > p[m]) m = i; return [m * window.rebondTestBin, p[m]]; })()")
            .await?;
        (v[0].as_f64().unwrap_or(0.0) as f32, v[1].as_f64().unwrap_or(-200.0) as f32)
    };
    let recording = ws.recording();
    let heard = &recording.samples[recorded_before.min(recording.samples.len())..];
    let microphone_hz = tone::dominant_hz(heard, recording.rate).unwrap_or(0.0);
    let microphone_dbfs = tone::goertzel_dbfs(heard, recording.rate, microphone_hz);

    // Latency: each onset heard, against the latest onset sent before it (beeps are 1 s apart).
    let delta = |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
    // Only beeps sent during the call count (not while the jitter buffer settled).
    let page_onsets = |key: &str, stats: &serde_json::Value| -> Vec<f64> {
        stats[key].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default()
    };
    let during = |v: Vec<f64>| v.into_iter().filter(|t| *t >= started_ms).collect::<Vec<f64>>();
    let speaker_latency_ms = pair(&during(ws.played_onsets()), &page_onsets("speakerOnsets", &after));
    let arrivals = tone::onsets(&recording.samples, recording.rate, -30.0, 500)
        .into_iter()
        .filter_map(|i| recording.arrival_of(i))
        .collect::<Vec<f64>>();
    let microphone_latency_ms = pair(&during(page_onsets("microphoneOnsets", &after)), &arrivals);

    // The figures of the packets played during the call (the lists keep the latest).
    let during_call = |key: &str| {
        let v = page_onsets(key, &after);
        let n = (delta("packets") as usize).min(v.len());
        v[v.len() - n..].to_vec()
    };
    let mut decode = during_call("decodeMs");
    let mut buffer = during_call("bufferMs");
    let q = |v: &mut Vec<f64>, q: f64| rebond_probe::percentile(v, q).unwrap_or(f64::NAN);
    let format = ws.speaker_format();
    Ok(CallReport {
        seconds: wall,
        speaker_hz,
        speaker_db,
        microphone_hz,
        microphone_dbfs,
        speaker_latency_ms,
        microphone_latency_ms,
        speaker_packets: delta("packets") as u64,
        underruns: delta("underruns") as u64,
        restarts: delta("restarts") as u64,
        dropped: delta("dropped") as u64,
        trimmed: delta("trimmed") as u64,
        decode_median_ms: q(&mut decode, 0.5),
        buffer_median_ms: q(&mut buffer, 0.5),
        buffer_p99_ms: q(&mut buffer, 0.99),
        device_output_latency_ms: after["outputLatencyMs"].as_f64().unwrap_or(0.0),
        speaker_kbit_s: delta("speakerBytes") * 8.0 / wall / 1000.0,
        microphone_kbit_s: delta("microphoneBytes") * 8.0 / wall / 1000.0,
        speaker_pcm_kbit_s: format.map_or(0.0, |(rate, channels)| f64::from(rate * u32::from(channels) * 16) / 1000.0),
        microphone_pcm_kbit_s: f64::from(recording.rate * 16) / 1000.0,
        worker_cpu_percent: 100.0 * (cpu_after - cpu_before) / wall,
        sent_while_muted,
    })
}

async fn page_stats(page: &mut crate::browser::Page) -> anyhow::Result<serde_json::Value> {
    page.eval("JSON.parse(JSON.stringify(window.rebondSound.stats))").await
}

/// For each onset `heard`, the time since the latest onset `sent` before it, when
/// that is under a second (beeps are a second apart).
fn pair(sent: &[f64], heard: &[f64]) -> Vec<f64> {
    heard
        .iter()
        .filter_map(|h| {
            let s = sent.iter().copied().filter(|s| s <= h).fold(f64::NAN, f64::max);
            (h - s < 1_000.0).then_some(h - s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn onsets_pair_with_the_latest_one_sent_before() {
        let sent = [1_000.0, 2_000.0, 3_000.0];
        let heard = [900.0, 1_050.0, 2_060.0, 4_500.0];
        assert_eq!(super::pair(&sent, &heard), vec![50.0, 60.0]);
    }
}
