//! Measures a bounce session with `rebond probe` against a real workstation
//! (FreeRDP's shadow server, 1280×800): time to first frame and bytes per second
//! to the browser, for an idle desktop and for a terminal printing text as fast as
//! it can. Prints medians over several runs (the machine is shared and noisy).
//!
//! Usage: rebond-measure [--rebond PATH] [--runs N] [--seconds S] [--json]

use std::path::PathBuf;

use rebond_testkit::gateway::{rebond, Gateway};
use rebond_testkit::workstation::{Security, Shadow};

struct Run {
    ttff_ms: f64,
    bytes_per_second: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut exe = PathBuf::from("target/debug/rebond");
    let (mut runs, mut seconds, mut json) = (3usize, 10u64, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rebond" => exe = PathBuf::from(args.next().unwrap_or_default()),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--json" => json = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let workloads: [(&str, Option<&str>); 2] =
        [("idle desktop", None), ("terminal printing text", Some("while true; do ls -lR /usr; done{Enter}"))];
    let mut rows = Vec::new();
    for (name, typed) in workloads {
        let mut results = Vec::new();
        for _ in 0..runs {
            let user = format!("rbm{}", rebond_testkit::unique() % 100_000_000);
            let password = format!("Pw-{}", rebond_testkit::unique() % 1_000_000);
            let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() })?;
            let gw = Gateway::start(&exe, None)?;
            gw.add_user(&user, &password)?;
            gw.route_pinned(&user, &ws.url())?;
            let secs = seconds.to_string();
            let url = gw.url();
            let mut args = vec!["probe", "--url", &url, "--user", &user, "--password-stdin", "--insecure", "--json", "--duration", &secs];
            if let Some(t) = typed {
                args.extend(["--type", t, "--key-interval-ms", "40"]);
            }
            let out = rebond(&exe, &args, Some(&password))?;
            let v: serde_json::Value = serde_json::from_str(out.trim())?;
            anyhow::ensure!(v["error"].is_null(), "{name}: {}", v["error"]);
            results.push(Run {
                ttff_ms: v["time_to_first_frame_ms"].as_f64().unwrap_or(f64::NAN),
                bytes_per_second: v["bytes_per_second"].as_f64().unwrap_or(f64::NAN),
            });
        }
        let ttff = median(results.iter().map(|r| r.ttff_ms).collect());
        let bps = median(results.iter().map(|r| r.bytes_per_second).collect());
        rows.push((name, ttff, bps, results));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(n, t, b, r)| serde_json::json!({ "workload": n, "runs": r.len(), "median_time_to_first_frame_ms": t, "median_bytes_per_second": b }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{:<26} {:>5} {:>22} {:>22}", "workload (1280x800)", "runs", "time to first frame", "bytes/s to browser");
        for (name, ttff, bps, r) in &rows {
            println!("{name:<26} {:>5} {:>19.0} ms {:>22.0}", r.len(), ttff, bps);
        }
        println!("(medians; each run: fresh shadow workstation + gateway, {seconds} s after the first frame)");
    }
    Ok(())
}
