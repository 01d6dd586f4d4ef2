//! A phone call through the gateway, measured: a workstation playing beeps, the real
//! page in headless Chromium with a fake microphone playing other beeps. Prints the
//! figures of each run and their medians (`--json` for machines).
//!
//!   scripts/bench-call                    # 3 calls of 60 s
//!   scripts/bench-call --seconds 300 --runs 1

use std::path::PathBuf;

use clap::Parser;
use rebond_testkit::call::{self, CallReport};

#[derive(Parser)]
struct Args {
    /// The `rebond` binary to measure.
    #[arg(long, default_value = "target/release/rebond")]
    rebond: PathBuf,
    /// Length of each call, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Calls to run (figures are medians over the runs).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long)]
    json: bool,
}

fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.into_iter().collect();
    rebond_probe::percentile(&mut v, 0.5).unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    let mut reports: Vec<CallReport> = Vec::new();
    for run in 1..=args.runs {
        let report = rt.block_on(call::run(&args.rebond, args.seconds))?;
        if !args.json {
            eprintln!("call {run}/{}: {}", args.runs, serde_json::to_string(&report)?);
        }
        reports.push(report);
    }
    let lat = |f: fn(&CallReport) -> &Vec<f64>, q: f64| {
        median(reports.iter().map(|r| rebond_probe::percentile(&mut f(r).clone(), q).unwrap_or(f64::NAN)))
    };
    let m = |f: fn(&CallReport) -> f64| median(reports.iter().map(f));
    let summary = serde_json::json!({
        "runs": args.runs,
        "seconds": args.seconds,
        "speaker_latency_median_ms": lat(|r| &r.speaker_latency_ms, 0.5),
        "speaker_latency_p99_ms": lat(|r| &r.speaker_latency_ms, 0.99),
        "microphone_latency_median_ms": lat(|r| &r.microphone_latency_ms, 0.5),
        "microphone_latency_p99_ms": lat(|r| &r.microphone_latency_ms, 0.99),
        "underruns_per_minute": m(|r| r.underruns as f64 * 60.0 / r.seconds),
        "decode_median_ms": m(|r| r.decode_median_ms),
        "buffer_median_ms": m(|r| r.buffer_median_ms),
        "buffer_p99_ms": m(|r| r.buffer_p99_ms),
        "device_output_latency_ms": m(|r| r.device_output_latency_ms),
        "speaker_kbit_s": m(|r| r.speaker_kbit_s),
        "microphone_kbit_s": m(|r| r.microphone_kbit_s),
        "speaker_pcm_kbit_s": m(|r| r.speaker_pcm_kbit_s),
        "microphone_pcm_kbit_s": m(|r| r.microphone_pcm_kbit_s),
        "worker_cpu_percent": m(|r| r.worker_cpu_percent),
        "speaker_hz": m(|r| f64::from(r.speaker_hz)),
        "microphone_hz": m(|r| f64::from(r.microphone_hz)),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "summary": summary, "runs": reports }))?);
        return Ok(());
    }
    println!("| figure | median of {} calls of {} s |", args.runs, args.seconds);
    println!("|---|---|");
    for (k, v) in summary.as_object().expect("object") {
        if let Some(x) = v.as_f64() {
            println!("| {k} | {x:.1} |");
        }
    }
    Ok(())
}
