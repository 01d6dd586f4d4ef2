//! The benchmark harness: real shadow workstations (1280×800) behind a real gateway,
//! `rebond probe` clients running scripted workloads, and the figures that matter:
//! bytes per second to the browser, frames per second, CPU of the gateway and of each
//! session's worker (% of one core), resident memory per worker, key-to-frame latency
//! through the gateway and, for typing, through a direct IronRDP client on the same
//! workstation (so the gateway's added latency is a difference measured in one run),
//! and fidelity (exact pixels of the probe's picture against the workstation's screen).
//!
//! Usage: rebond-bench [--rebond PATH] [--seconds S] [--runs N] [--sessions 1,5,10,20]
//!                     [--workloads idle,typing,...] [--json] [--svg FILE]
//!
//! Medians over the concurrent sessions of a run, then over `--runs` runs (each with a
//! fresh gateway and workstations); the machine is shared and noisy, so compare medians
//! taken on the same machine. CPU of a worker is averaged over its whole life
//! (connection included); the gateway's over the probes' run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rebond_testkit::gateway::Gateway;
use rebond_testkit::workstation::{Security, Shadow};
use rebond_testkit::Proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Idle,
    Typing,
    Terminal,
    Scrolling,
    Dragging,
    Animation,
}

const ALL: [Workload; 6] = [Workload::Idle, Workload::Typing, Workload::Terminal, Workload::Scrolling, Workload::Dragging, Workload::Animation];
const TYPED: &str = "the quick brown fox jumps over the lazy dog ";

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Typing => "typing",
            Self::Terminal => "terminal",
            Self::Scrolling => "scrolling",
            Self::Dragging => "dragging",
            Self::Animation => "animation",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        ALL.into_iter().find(|w| w.name() == s)
    }

    /// What the probe types (the terminal on the workstation has the focus).
    fn keys(self, seconds: u64) -> Option<String> {
        match self {
            Self::Typing => Some(TYPED.repeat((seconds as usize * 25) / TYPED.len() + 1)),
            Self::Terminal => Some("while true; do ls -lR /usr; done{Enter}".into()),
            Self::Scrolling => Some(format!(
                "seq -f 'line %g of a long document: lorem ipsum dolor sit amet, consectetur adipiscing' 1000000 | less{{Enter}}{}",
                "{PageDown}".repeat(seconds as usize * 10)
            )),
            _ => None,
        }
    }

    /// What runs on the workstation's display meanwhile.
    fn background(self, display: u32, dir: &Path) -> anyhow::Result<Option<Proc>> {
        let mut cmd = match self {
            // A terminal that moves itself across the screen (xterm window operations).
            Self::Dragging => {
                let mut c = Command::new("xterm");
                c.args(["-xrm", "XTerm*allowWindowOps: true", "-geometry", "80x24+0+200", "-e", "sh", "-c"]);
                c.arg(r#"while true; do for x in $(seq 0 16 640); do printf '\033[3;%d;%dt' $x 200; sleep 0.02; done; done"#);
                c
            }
            // Full-screen changing pictures, like a video.
            Self::Animation => {
                let frames = dir.join("frames");
                if !frames.join("f9.jpg").exists() {
                    std::fs::create_dir_all(&frames)?;
                    for i in 0..10 {
                        let st = Command::new("convert")
                            .args(["-size", "320x200", &"plasma:fractal", "-seed", &i.to_string(), "-resize", "1280x800!"])
                            .arg(frames.join(format!("f{i}.jpg")))
                            .status()?;
                        anyhow::ensure!(st.success(), "convert failed");
                    }
                }
                let mut c = Command::new("animate");
                c.args(["-delay", "4", "-geometry", "+0+0"]).args((0..10).map(|i| frames.join(format!("f{i}.jpg"))));
                c
            }
            _ => return Ok(None),
        };
        cmd.env("DISPLAY", format!(":{display}"));
        Ok(Some(Proc::spawn("workload", cmd, None)?))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    rebond_probe::percentile(&mut v, 0.5).unwrap_or(f64::NAN)
}

/// One workload at one number of concurrent sessions.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    workload: &'static str,
    sessions: usize,
    bytes_per_second: f64,
    frames_per_second: f64,
    gateway_cpu_percent: f64,
    worker_cpu_percent: f64,
    worker_rss_mib: f64,
    gateway_rss_mib: f64,
    key_to_frame_median_ms: Option<f64>,
    key_to_frame_p99_ms: Option<f64>,
    direct_key_to_frame_median_ms: Option<f64>,
    direct_key_to_frame_p99_ms: Option<f64>,
    exact_pixels_percent: Option<f64>,
    /// Runs the medians were taken over.
    runs: usize,
}

/// Field by field, the median of several runs of the same workload and sessions.
fn median_of_runs(runs: Vec<Row>) -> Row {
    let m = |f: fn(&Row) -> f64| median(runs.iter().map(f).collect());
    let o = |f: fn(&Row) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    Row {
        workload: runs[0].workload,
        sessions: runs[0].sessions,
        bytes_per_second: m(|r| r.bytes_per_second),
        frames_per_second: m(|r| r.frames_per_second),
        gateway_cpu_percent: m(|r| r.gateway_cpu_percent),
        worker_cpu_percent: m(|r| r.worker_cpu_percent),
        worker_rss_mib: m(|r| r.worker_rss_mib),
        gateway_rss_mib: m(|r| r.gateway_rss_mib),
        key_to_frame_median_ms: o(|r| r.key_to_frame_median_ms),
        key_to_frame_p99_ms: o(|r| r.key_to_frame_p99_ms),
        direct_key_to_frame_median_ms: o(|r| r.direct_key_to_frame_median_ms),
        direct_key_to_frame_p99_ms: o(|r| r.direct_key_to_frame_p99_ms),
        exact_pixels_percent: o(|r| r.exact_pixels_percent),
        runs: runs.len(),
    }
}

fn run(exe: &Path, workload: Workload, sessions: usize, seconds: u64, scratch: &Path) -> anyhow::Result<Row> {
    let gw = Gateway::start(exe, None)?;
    let mut desks = Vec::new();
    for _ in 0..sessions {
        let user = format!("rbb{}", rebond_testkit::unique() % 100_000_000);
        let password = format!("Pw-{}", rebond_testkit::unique() % 1_000_000);
        let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() })?;
        gw.add_user(&user, &password)?;
        gw.route_pinned(&user, &ws.url())?;
        let background = workload.background(ws.display.number, scratch)?;
        desks.push((user, password, ws, background));
    }
    std::thread::sleep(Duration::from_millis(500));
    let gateway_pid = gw.pid().to_string();
    let (gw_cpu_before, _) = rebond_testkit::cpu_seconds(&gateway_pid).unwrap_or_default();
    let started = Instant::now();
    let keys = workload.keys(seconds);
    let mut probes = Vec::new();
    for (i, (user, password, _, _)) in desks.iter().enumerate() {
        let shot = scratch.join(format!("probe-{i}.png"));
        let mut cmd = Command::new(exe);
        cmd.args(["probe", "--url", &gw.url(), "--user", user, "--password-stdin", "--insecure", "--json"])
            .args(["--duration", &seconds.to_string(), "--key-interval-ms", "40", "--screenshot"])
            .arg(&shot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(k) = &keys {
            cmd.args(["--type", k]);
        }
        let mut child = cmd.spawn()?;
        use std::io::Write as _;
        child.stdin.take().expect("piped").write_all(password.as_bytes())?;
        probes.push((child, shot));
    }
    let mut reports = Vec::new();
    for (child, shot) in probes {
        let out = child.wait_with_output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        anyhow::ensure!(v["error"].is_null(), "{}: {}", workload.name(), v["error"]);
        reports.push((v, shot));
    }
    let wall = started.elapsed().as_secs_f64();
    let (gw_cpu_after, _) = rebond_testkit::cpu_seconds(&gateway_pid).unwrap_or_default();

    // Fidelity: the first session's picture against its workstation's own screen (still
    // pictures only: moving ones change between the two captures; scrolling has stopped
    // by the end, its keys take 80 % of the run).
    let exact = if matches!(workload, Workload::Idle | Workload::Typing | Workload::Scrolling) {
        let screen = scratch.join("screen-0.png");
        desks[0].2.display.screenshot(&screen)?;
        Some(exact_pixels_percent(&reports[0].1, &screen)?)
    } else {
        None
    };

    let worker_pids = gw.worker_pids();
    let worker_cpu: Vec<f64> = worker_pids.iter().filter_map(|p| rebond_testkit::cpu_seconds(p)).map(|(cpu, age)| 100.0 * cpu / age.max(0.01)).collect();
    let worker_rss: Vec<f64> = worker_pids.iter().filter_map(|p| rebond_testkit::rss_mib(p)).collect();
    let field = |k: &str| reports.iter().filter_map(|(v, _)| v[k].as_f64()).collect::<Vec<f64>>();
    let opt_median = |k: &str| {
        let v = field(k);
        (!v.is_empty()).then(|| median(v))
    };
    let (direct_median, direct_p99) = if workload == Workload::Typing {
        let (user, password, ws, _) = &desks[0];
        let mut lat = direct_key_latency(ws, user, password, seconds)?;
        (rebond_probe::percentile(&mut lat, 0.5), rebond_probe::percentile(&mut lat, 0.99))
    } else {
        (None, None)
    };
    Ok(Row {
        workload: workload.name(),
        sessions,
        bytes_per_second: median(field("bytes_per_second")),
        frames_per_second: median(field("frames_per_second")),
        gateway_cpu_percent: 100.0 * (gw_cpu_after - gw_cpu_before) / wall / sessions as f64,
        worker_cpu_percent: median(worker_cpu),
        worker_rss_mib: median(worker_rss),
        gateway_rss_mib: rebond_testkit::rss_mib(&gateway_pid).unwrap_or(f64::NAN),
        key_to_frame_median_ms: opt_median("key_to_frame_median_ms"),
        key_to_frame_p99_ms: opt_median("key_to_frame_p99_ms"),
        direct_key_to_frame_median_ms: direct_median,
        direct_key_to_frame_p99_ms: direct_p99,
        exact_pixels_percent: exact,
        runs: 1,
    })
}

/// Share of pixels (RGB) equal in two PNG pictures of the same size.
fn exact_pixels_percent(a: &Path, b: &Path) -> anyhow::Result<f64> {
    let load = |p: &Path| -> anyhow::Result<(u32, u32, Vec<u8>)> {
        let mut dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p)?));
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut r = dec.read_info()?;
        let mut buf = vec![0; r.output_buffer_size().unwrap_or(0)];
        let info = r.next_frame(&mut buf)?;
        let ch = info.color_type.samples();
        let rgb = buf[..info.buffer_size()].chunks(ch).flat_map(|p| [p[0], p[1 % ch], p[2 % ch]]).collect();
        Ok((info.width, info.height, rgb))
    };
    let (wa, ha, pa) = load(a)?;
    let (wb, hb, pb) = load(b)?;
    anyhow::ensure!((wa, ha) == (wb, hb), "pictures differ in size: {wa}x{ha} and {wb}x{hb}");
    let same = pa.chunks(3).zip(pb.chunks(3)).filter(|(x, y)| x == y).count();
    Ok(100.0 * same as f64 / (wa as f64 * ha as f64))
}

/// Key-to-frame latency of a direct IronRDP client (rebond-rdp, no gateway, no browser):
/// key pressed → the first graphics update from the workstation.
fn direct_key_latency(ws: &Shadow, user: &str, password: &str, seconds: u64) -> anyhow::Result<Vec<f64>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use ironrdp_tokio::FramedWrite as _;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let req = rebond_rdp::ConnectRequest {
            host: ws.ip.clone(),
            port: ws.port,
            trust: rebond_rdp::CertTrust::InsecureAcceptAny,
            username: user.to_owned(),
            password: zeroize::Zeroizing::new(password.to_owned()),
            domain: None,
            width: 1280,
            height: 800,
            keyboard_layout: 0x0409,
            connect_timeout: Duration::from_secs(10),
            sound: rebond_rdp::SoundChannels::default(),
        };
        let mut connected = rebond_rdp::connect(&req, |_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut session = rebond_rdp::Session::new(connected.result, None);
        let framed = &mut connected.framed;
        for f in session.synchronize().map_err(anyhow::Error::msg)? {
            framed.write_all(&f).await?;
        }
        let keys = rebond_probe::parse_keys(&TYPED.repeat((seconds as usize * 25) / TYPED.len() + 1))?;
        let mut keys = keys.into_iter();
        let (mut waiting, mut latencies) = (Vec::<Instant>::new(), Vec::new());
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        let until = Instant::now() + Duration::from_secs(seconds);
        // Let the first picture arrive before typing.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while Instant::now() < until {
            tokio::select! {
                pdu = framed.read_pdu() => {
                    let (action, frame) = pdu?;
                    let processed = session.process(action, &frame).map_err(anyhow::Error::msg)?;
                    for r in processed.responses {
                        framed.write_all(&r).await?;
                    }
                    if processed.events.iter().any(|e| matches!(e, rebond_rdp::SessionEvent::Damage { .. })) {
                        let now = Instant::now();
                        latencies.extend(waiting.drain(..).map(|k| now.duration_since(k).as_secs_f64() * 1000.0));
                    }
                }
                _ = tick.tick() => {
                    let Some(k) = keys.next() else { break };
                    let input = rebond_policy::Input::Key { scancode: k.scancode, extended: k.extended, down: k.down };
                    for f in session.input(&[input]).map_err(anyhow::Error::msg)? {
                        framed.write_all(&f).await?;
                    }
                    if k.down {
                        waiting.push(Instant::now());
                    }
                }
            }
        }
        for f in session.shutdown() {
            let _ = framed.write_all(&f).await;
        }
        Ok(latencies)
    })
}

/// The figures against the number of sessions, one line per workload (SVG).
fn svg(rows: &[Row], value: impl Fn(&Row) -> f64, title: &str) -> String {
    let (w, h, m) = (640.0, 360.0, 50.0);
    let max_n = rows.iter().map(|r| r.sessions).max().unwrap_or(1) as f64;
    let max_v = rows.iter().map(&value).filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-9);
    let colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
    let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{m}" y="20">{title} (max {max_v:.1})</text><line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/><text x="{}" y="{}">concurrent sessions (max {max_n})</text>"#, h - m, w - m, h - m, h - m, w / 2.0 - 60.0, h - 15.0);
    for (i, workload) in ALL.iter().enumerate() {
        let pts: Vec<String> = rows
            .iter()
            .filter(|r| r.workload == workload.name() && value(r).is_finite())
            .map(|r| format!("{:.1},{:.1}", m + (w - 2.0 * m) * r.sessions as f64 / max_n, h - m - (h - 2.0 * m) * value(r) / max_v))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = colours[i % colours.len()];
        out += &format!(r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{c}">{}</text>"#, pts.join(" "), w - m - 80.0, m + 15.0 * i as f64, workload.name());
    }
    out + "</svg>\n"
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut exe = PathBuf::from("target/debug/rebond");
    let (mut seconds, mut runs, mut sessions, mut workloads, mut json, mut svg_path) = (10u64, 1usize, vec![1usize], ALL.to_vec(), false, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--rebond" => exe = PathBuf::from(value()?),
            "--seconds" => seconds = value()?.parse()?,
            "--runs" => runs = value()?.parse::<usize>()?.max(1),
            "--sessions" => sessions = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--workloads" => {
                workloads = value()?.split(',').map(|w| Workload::parse(w).ok_or_else(|| anyhow::anyhow!("unknown workload {w}"))).collect::<Result<_, _>>()?
            }
            "--json" => json = true,
            "--svg" => svg_path = Some(PathBuf::from(value()?)),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let scratch = rebond_testkit::temp_dir("bench");
    let mut rows = Vec::new();
    for &n in &sessions {
        for &w in &workloads {
            let row = median_of_runs((0..runs).map(|_| run(&exe, w, n, seconds, &scratch)).collect::<anyhow::Result<_>>()?);
            if !json {
                eprintln!("{row:?}");
            }
            rows.push(row);
        }
    }
    if let Some(path) = &svg_path {
        std::fs::write(path, svg(&rows, |r| r.gateway_cpu_percent + r.worker_cpu_percent, "CPU per session, gateway + worker, % of one core"))?;
        std::fs::write(path.with_extension("bytes.svg"), svg(&rows, |r| r.bytes_per_second / 1000.0, "kB/s per session to the browser"))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    println!(
        "{:<10} {:>4} {:>10} {:>6} {:>7} {:>7} {:>7} {:>7} {:>13} {:>13} {:>7}",
        "workload", "n", "B/s", "fps", "gw %", "wk %", "wk MiB", "gw MiB", "key→frame ms", "direct ms", "exact %"
    );
    for r in &rows {
        println!(
            "{:<10} {:>4} {:>10.0} {:>6.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>13} {:>13} {:>7}",
            r.workload,
            r.sessions,
            r.bytes_per_second,
            r.frames_per_second,
            r.gateway_cpu_percent,
            r.worker_cpu_percent,
            r.worker_rss_mib,
            r.gateway_rss_mib,
            format!("{}/{}", f(r.key_to_frame_median_ms), f(r.key_to_frame_p99_ms)),
            format!("{}/{}", f(r.direct_key_to_frame_median_ms), f(r.direct_key_to_frame_p99_ms)),
            f(r.exact_pixels_percent),
        );
    }
    println!("(medians over the sessions of each run, then over {runs} runs; {seconds} s per run; gw % is per session; key→frame: median/p99)");
    Ok(())
}
