//! Measures a bounce session with `rebond probe` against a real workstation
//! (FreeRDP's shadow server, 1280×800): time to first frame and bytes per second
//! to the browser, for an idle desktop and for a terminal printing text as fast as
//! it can. Prints medians over several runs (the machine is shared and noisy).
//!
//! With `--directory`, also an idle desktop reached by an Active Directory account
//! (Samba on 127.0.0.4, single sign-on into a domain workstation found through
//! `msTSPrimaryDesktop`): the time to first frame then includes the directory's bind and
//! searches, reported on their own as the sign-in time.
//!
//! Usage: rebond-measure [--rebond PATH] [--runs N] [--seconds S] [--directory] [--json]

use std::path::PathBuf;

use rebond_testkit::directory::Samba;
use rebond_testkit::gateway::{rebond, Gateway};
use rebond_testkit::pki::TestCa;
use rebond_testkit::workstation::{Security, Shadow, ShadowOptions};

struct Run {
    ttff_ms: f64,
    sign_in_ms: f64,
    bytes_per_second: f64,
}

/// What a run signs in to.
struct Target {
    gw: Gateway,
    user: String,
    password: String,
    _ws: Shadow,
}

fn local_target(exe: &std::path::Path) -> anyhow::Result<Target> {
    let user = format!("rbm{}", rebond_testkit::unique() % 100_000_000);
    let password = format!("Pw-{}", rebond_testkit::unique() % 1_000_000);
    let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() })?;
    let gw = Gateway::start(exe, None)?;
    gw.add_user(&user, &password)?;
    gw.route_pinned(&user, &ws.url())?;
    Ok(Target { gw, user, password, _ws: ws })
}

fn directory_target(exe: &std::path::Path, samba: &Samba) -> anyhow::Result<Target> {
    use rebond_testkit::directory::{resolve_host, PASSWORD};
    let ca = TestCa::create(&rebond_testkit::temp_dir("measure-ca"), "Workstations CA")?;
    resolve_host("ws-alice.test.lan", "127.0.0.23")?;
    let certificate = ca.issue("ws-alice", &["DNS:ws-alice.test.lan"])?;
    let port = rebond_testkit::free_port();
    let host = rebond_testkit::network::Host { netns: None, ip: "127.0.0.23".into() };
    let security = Security::NlaInDomain { domain: "TEST".into(), user: "alice".into(), password: PASSWORD.into() };
    let ws = Shadow::start_with(&host, security, None, ShadowOptions { port: Some(port), certificate: Some(certificate) })?;
    let gw = Gateway::start(exe, Some(&samba.gateway_config(&["Rebond Users"], port, &ca.ca_file)))?;
    Ok(Target { gw, user: "TEST\\alice".into(), password: PASSWORD.into(), _ws: ws })
}

fn median(mut v: Vec<f64>) -> f64 {
    rebond_probe::percentile(&mut v, 0.5).unwrap_or(f64::NAN)
}

#[derive(clap::Parser)]
#[command(about = "Time to first frame and bytes per second of a bounce session, on a real workstation")]
struct Args {
    /// The `rebond` binary to measure.
    #[arg(long, default_value = "target/debug/rebond")]
    rebond: PathBuf,
    /// Runs per workload (figures are medians over the runs).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Length of each run after the first frame, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also sign in through an Active Directory (Samba on 127.0.0.4).
    #[arg(long)]
    directory: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let (exe, runs, seconds, json, directory) = (args.rebond, args.runs, args.seconds, args.json, args.directory);
    let samba = if directory { Some(Samba::start("127.0.0.4")?) } else { None };
    let mut workloads: Vec<(&str, Option<&str>, bool)> =
        vec![("idle desktop", None, false), ("terminal printing text", Some("while true; do ls -lR /usr; done{Enter}"), false)];
    if directory {
        workloads.push(("idle, directory sign-in", None, true));
    }
    let mut rows = Vec::new();
    for (name, typed, through_directory) in workloads {
        let mut results = Vec::new();
        for _ in 0..runs {
            let target = match (&samba, through_directory) {
                (Some(samba), true) => directory_target(&exe, samba)?,
                _ => local_target(&exe)?,
            };
            let (gw, user, password) = (&target.gw, &target.user, &target.password);
            let secs = seconds.to_string();
            let url = gw.url();
            let mut args = vec!["probe", "--url", &url, "--user", user, "--password-stdin", "--insecure", "--json", "--duration", &secs];
            if let Some(t) = typed {
                args.extend(["--type", t, "--key-interval-ms", "40"]);
            }
            let out = rebond(&exe, &args, Some(password))?;
            let v: serde_json::Value = serde_json::from_str(out.trim())?;
            anyhow::ensure!(v["error"].is_null(), "{name}: {}", v["error"]);
            results.push(Run {
                ttff_ms: v["time_to_first_frame_ms"].as_f64().unwrap_or(f64::NAN),
                sign_in_ms: v["sign_in_ms"].as_f64().unwrap_or(f64::NAN),
                bytes_per_second: v["bytes_per_second"].as_f64().unwrap_or(f64::NAN),
            });
        }
        let ttff = median(results.iter().map(|r| r.ttff_ms).collect());
        let bps = median(results.iter().map(|r| r.bytes_per_second).collect());
        let sign_in = median(results.iter().map(|r| r.sign_in_ms).collect());
        rows.push((name, ttff, sign_in, bps, results));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(n, t, s, b, r)| serde_json::json!({ "workload": n, "runs": r.len(), "median_time_to_first_frame_ms": t, "median_sign_in_ms": s, "median_bytes_per_second": b }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{:<26} {:>5} {:>22} {:>12} {:>22}", "workload (1280x800)", "runs", "time to first frame", "sign-in", "bytes/s to browser");
        for (name, ttff, sign_in, bps, r) in &rows {
            println!("{name:<26} {:>5} {:>19.0} ms {:>9.0} ms {:>22.0}", r.len(), ttff, sign_in, bps);
        }
        println!("(medians; each run: fresh shadow workstation + gateway, {seconds} s after the first frame; time to first frame counts from the sign-in request)");
    }
    Ok(())
}
