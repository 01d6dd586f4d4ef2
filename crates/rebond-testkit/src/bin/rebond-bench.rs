//! The benchmark harness: real workstations (1280×800) behind a real gateway,
//! `rebond probe` clients running scripted workloads, and the figures that matter:
//! bytes per second to the browser, frames per second, CPU of the gateway and of each
//! session's worker (% of one core), resident memory per worker, key-to-frame latency
//! through the gateway and, for typing, through a direct IronRDP client on the same
//! workstation (so the gateway's added latency is a difference measured in one run),
//! the share of images sent as JPEG, and fidelity where the picture stands still at the
//! end (exact pixels and SSIM of the probe's picture against the workstation's screen).
//!
//! Usage: rebond-bench [--rebond PATH] [--seconds S] [--runs N] [--sessions 1,5,10,20]
//!                     [--workloads idle,typing,...] [--workstation shadow|xrdp|both]
//!                     [--gateway-config FILE] [--json] [--svg FILE]   (`--help` says more)
//!
//! Workstations: `shadow` (the default) is FreeRDP's shadow server on its own Xvfb
//! display per session, NLA; `xrdp` is one xrdp with xorgxrdp per run, TLS, with one
//! Linux account per session (xrdp gives each account one Xorg session) whose session
//! script starts what the workload shows; `both` runs each workload on each.
//!
//! Medians over the concurrent sessions of a run, then over `--runs` runs (each with a
//! fresh gateway and workstations); the machine is shared and noisy, so compare medians
//! taken on the same machine. CPU is read to the nanosecond every 200 ms; the figures
//! are the steady ones, from 1 s after the last session's first frame to the end of the
//! run (sign-in and connection count apart, as each session's start cost).
//!
//! Workloads: idle, typing (150 words a minute without a pause: a stress bound), office
//! (an editor, 60 words a minute in sentences with pauses to read and a page down now
//! and then: run it 30 s or more), terminal, scrolling, dragging, switching (two
//! windows taking turns in front every second: the page's tile cache), animation, photo.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rebond_testkit::gateway::Gateway;
use rebond_testkit::workstation::{shell_wait_for, Security, Shadow, XScreen, Xrdp, TERMINAL_TITLE};
use rebond_testkit::Proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Idle,
    Typing,
    Terminal,
    Scrolling,
    Dragging,
    Animation,
    Photo,
    Office,
    Switching,
}

const ALL: [Workload; 9] = [
    Workload::Idle,
    Workload::Typing,
    Workload::Office,
    Workload::Terminal,
    Workload::Scrolling,
    Workload::Dragging,
    Workload::Switching,
    Workload::Animation,
    Workload::Photo,
];
const TYPED: &str = "the quick brown fox jumps over the lazy dog ";
/// What the office worker writes, a sentence at a time.
const SENTENCES: [&str; 4] = [
    "Thank you for your order of March 12.",
    "The invoice is attached to this letter.",
    "Please call me if anything is missing.",
    "We will deliver on Monday before noon.",
];
/// Milliseconds between key events when typing at 60 words a minute (5 characters a
/// second, each a press and a release): a fast office typist; the average is nearer 40.
const OFFICE_KEY_INTERVAL_MS: u64 = 100;
/// The long document the scrolling workload pages through (a short path: the probe
/// types it). Every run writes the same text, readable by every workstation account.
const DOCUMENT: &str = "/tmp/rebond-document.txt";
/// The title of the window a workload shows in front of the terminal.
const SCENE_TITLE: &str = "rebond-scene";
/// How long the animation stands still at the end of its run (for its fidelity figures),
/// and the title of the still picture's window.
const STILL_SECONDS: u64 = 2;
const STILL_TITLE: &str = "rebond-still";
/// How long a probe stays after its run without typing, before its screenshot.
const SETTLE_SECONDS: u64 = 1;

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Typing => "typing",
            Self::Terminal => "terminal",
            Self::Scrolling => "scrolling",
            Self::Dragging => "dragging",
            Self::Animation => "animation",
            Self::Photo => "photo",
            Self::Office => "office",
            Self::Switching => "switching",
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
            // A short command, so that the run pages rather than types.
            Self::Scrolling => Some(format!("less {DOCUMENT}{{Enter}}{}", "{PageDown}".repeat(seconds as usize * 10))),
            // Office work in an editor: a sentence (about 8 s at 60 words a minute), a
            // pause to read it (3 s), and every other sentence a page down and a look at
            // it (2 s); a cycle of 11 to 13 s, on and on.
            Self::Office => Some(
                (0..seconds as usize / 10 + 2)
                    .map(|i| {
                        let scroll = if i % 2 == 1 { "{PageDown}{Wait 2000}" } else { "" };
                        format!("{}{{Enter}}{{Wait 3000}}{scroll}", SENTENCES[i % SENTENCES.len()])
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Milliseconds between the key events the probe types.
    fn key_interval_ms(self) -> u64 {
        if self == Self::Office {
            OFFICE_KEY_INTERVAL_MS
        } else {
            40
        }
    }

    /// What runs on the workstation's screen meanwhile, in front of its full-screen
    /// terminal: shell commands (on xrdp, the account's session runs them), whose
    /// window is titled [`SCENE_TITLE`]. The animation stops once `still` exists.
    fn scene(self, media: &Media, still: &Path) -> Option<String> {
        let quoted = |p: &Path| format!("'{}'", p.display());
        // A picture filling the screen, without a border.
        let show = |title: &str, p: &Path| format!("display -borderwidth 0 -geometry +0+0 -title {title} {} &", quoted(p));
        match self {
            // A terminal that moves itself across the screen (xterm window operations).
            Self::Dragging => Some(format!(
                "xterm -T {SCENE_TITLE} -xrm 'XTerm*allowWindowOps: true' -geometry 80x24+0+200 -e sh {} &",
                quoted(&media.mover)
            )),
            // Full-screen changing pictures, like a video, 25 per second; once `still`
            // exists, one of them standing still in front, and the animation ends.
            Self::Animation => Some(format!(
                "animate -title {SCENE_TITLE} -delay 4 -geometry +0+0 {} &\nmoving=$!\n\
                 while [ ! -e {} ]; do sleep 0.05; done\n{}\n{}\nkill $moving",
                media.frames.iter().map(|f| quoted(f)).collect::<Vec<_>>().join(" "),
                quoted(still),
                show(STILL_TITLE, &media.frames[0]),
                shell_wait_for(STILL_TITLE),
            )),
            // A photograph, still.
            Self::Photo => Some(show(SCENE_TITLE, &media.photo)),
            // Two windows filling the screen take turns in front every second, as when
            // someone switches between a document and their mail: each raises itself
            // every 2 s (xterm window operations), the second half a turn later.
            Self::Switching => Some(
                [
                    (SCENE_TITLE, 0, "white", format!("head -n 70 {DOCUMENT}")),
                    (STILL_TITLE, 1, "'#eef3ff'", "ls -l /usr/share/doc | head -n 70".to_owned()),
                ]
                .iter()
                .map(|(title, delay, background, shown)| {
                    format!(
                        "xterm {} -bg {background} -xrm 'XTerm*allowWindowOps: true' -e sh -c \"{shown}; sleep {delay}; while sleep 2; do printf '\\033[5t'; done\" &",
                        titled_terminal_args(title),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            ),
            // An editor filling the screen, in insert mode at the top of a long document
            // (a copy: the original is read-only for the workstation's accounts). `vi` as
            // Debian ships it (vim-tiny): no ruler, no mode line. With vim's ruler the
            // shadow server, which sends one box around all it saw change, sends the
            // screen from the cursor's line down to the ruler on every key (worker CPU
            // 2.6 % instead of 0.5 %; xrdp, which sends each region, 0.6 %).
            Self::Office => Some(format!(
                "xterm {} -e sh -c 'f=$(mktemp) && cp {DOCUMENT} \"$f\" && exec vi -n -c \"set noruler noshowmode\" -c startinsert \"$f\"' &",
                titled_terminal_args(SCENE_TITLE),
            )),
            _ => None,
        }
    }

    /// Seconds the run goes on with the picture standing still, after `--seconds` of
    /// motion (the rates are those of the motion).
    fn still_seconds(self) -> u64 {
        if self == Self::Animation {
            STILL_SECONDS
        } else {
            0
        }
    }

    /// Whether the probe's picture is compared with the screen at the end of the run:
    /// where the picture stands still by then. Typing, office work and scrolling type to
    /// the end of the run; their probes then stop typing and settle for [`SETTLE_SECONDS`]
    /// (not counted in the figures), so the picture has the answer to the last key.
    fn compared_at_end(self) -> bool {
        !matches!(self, Self::Terminal | Self::Dragging | Self::Switching)
    }
}

/// The arguments of a full-screen terminal like the workstation's own, titled `title`,
/// quoted for a shell.
fn titled_terminal_args(title: &str) -> String {
    rebond_testkit::workstation::terminal_args(1280, 800)
        .iter()
        .map(|a| if a == TERMINAL_TITLE { title.to_owned() } else { format!("'{a}'") })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which RDP server the workstations are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workstation {
    Shadow,
    Xrdp,
}

impl Workstation {
    fn name(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Xrdp => "xrdp",
        }
    }
}

/// The pictures and the script the workloads show, made once in the scratch folder
/// (which the xrdp accounts can read).
struct Media {
    /// The animation's frames.
    frames: Vec<PathBuf>,
    photo: PathBuf,
    /// Moves the terminal it runs in (dragging).
    mover: PathBuf,
}

impl Media {
    fn prepare(dir: &Path) -> anyhow::Result<Self> {
        let frames: Vec<PathBuf> = (0..10).map(|i| dir.join(format!("frame-{i}.jpg"))).collect();
        let photo = dir.join("photo.png");
        for (seed, path) in frames.iter().enumerate().chain([(1, &photo)]) {
            if !path.exists() {
                plasma(seed, path)?;
            }
        }
        let document: String =
            (1..=100_000).map(|i| format!("line {i} of a long document: lorem ipsum dolor sit amet, consectetur adipiscing\n")).collect();
        if std::fs::metadata(DOCUMENT).map_or(true, |m| m.len() != document.len() as u64) {
            std::fs::write(DOCUMENT, document)?;
        }
        let mover = dir.join("mover.sh");
        std::fs::write(&mover, "while true; do for x in $(seq 0 16 640); do printf '\\033[3;%d;%dt' $x 200; sleep 0.02; done; done\n")?;
        Ok(Self { frames, photo, mover })
    }
}

/// A photographic picture of 1280×800: ImageMagick's plasma fractal at 320×200, scaled
/// up (the same picture for the same seed).
fn plasma(seed: usize, path: &Path) -> anyhow::Result<()> {
    let st = Command::new("convert")
        .args(["-seed", &seed.to_string(), "-size", "320x200", "plasma:fractal", "-resize", "1280x800!", "-depth", "8"])
        .arg(path)
        .status()?;
    anyhow::ensure!(st.success(), "convert failed");
    Ok(())
}

/// One session's workstation: the account that signs in, where a direct client
/// connects, and the screen the workload runs on.
struct Desk {
    user: String,
    password: String,
    port: u16,
    screen: XScreen,
    /// What runs on a shadow workstation's screen (on xrdp, the session runs it).
    _scene: Option<Proc>,
    _shadow: Option<Shadow>,
}

/// The workstations of one run.
struct Desks {
    desks: Vec<Desk>,
    /// The xrdp serving every session of the run, and its accounts (deleted after it
    /// ended their sessions).
    _xrdp: Option<(Xrdp, Accounts)>,
}

/// Linux accounts made for the run, deleted when dropped.
#[derive(Default)]
struct Accounts(Vec<String>);

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.0 {
            if let Err(e) = rebond_testkit::remove_account(user) {
                eprintln!("rebond-bench: {e}");
            }
        }
    }
}

impl Desks {
    /// `sessions` workstations of `kind` showing `scene`, each with its account on the
    /// gateway and routed to it, the scene on screen.
    fn start(kind: Workstation, sessions: usize, scene: Option<&str>, gw: &Gateway) -> anyhow::Result<Self> {
        let mut xrdp = match kind {
            Workstation::Shadow => None,
            Workstation::Xrdp => Some((Xrdp::start()?, Accounts::default())),
        };
        let mut desks = Vec::new();
        for _ in 0..sessions {
            let user = format!("rbb{}", rebond_testkit::unique() % 100_000_000);
            let password = format!("Pw-{}", rebond_testkit::unique() % 1_000_000);
            gw.add_user(&user, &password)?;
            let desk = match &mut xrdp {
                None => {
                    let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() })?;
                    gw.route_pinned(&user, &ws.url())?;
                    let screen = ws.display.screen();
                    let program = match scene {
                        Some(s) => {
                            let mut cmd = screen.command("sh");
                            cmd.arg("-c").arg(format!("{s}\nwait"));
                            Some(Proc::spawn("workload", cmd, None)?)
                        }
                        None => None,
                    };
                    Desk { user, password, port: ws.port, screen, _scene: program, _shadow: Some(ws) }
                }
                Some((xrdp, accounts)) => {
                    accounts.0.push(user.clone());
                    xrdp.add_account_with(&user, &password, scene)?;
                    gw.cli(&["route", "set", &user, &xrdp.url(), "--ca", &xrdp.ca.to_string_lossy()], None)?;
                    // The session starts at the first sign-in, at the size that client
                    // asks for: sign in once directly, so that the session and its
                    // workload run before the probe comes (as on a shadow workstation).
                    let size = block_on(direct_first_picture(xrdp.port, &user, &password))?;
                    anyhow::ensure!(size == (1280, 800), "the xrdp session is {}x{}, not 1280x800", size.0, size.1);
                    let screen = wait_for_screen(xrdp, &user)?;
                    let shown = screen.size();
                    anyhow::ensure!(shown == Some((1280, 800)), "the xrdp session's screen is {shown:?}, not 1280x800");
                    Desk { user, password, port: xrdp.port, screen, _scene: None, _shadow: None }
                }
            };
            let mut titles = vec![TERMINAL_TITLE];
            titles.extend(scene.map(|_| SCENE_TITLE));
            desk.screen.wait_for(&titles, Duration::from_secs(10))?;
            desks.push(desk);
        }
        Ok(Self { desks, _xrdp: xrdp })
    }
}

/// The screen of `user`'s xrdp session, once its Xorg runs.
fn wait_for_screen(xrdp: &Xrdp, user: &str) -> anyhow::Result<XScreen> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(screen) = xrdp.session_screen(user) {
            return Ok(screen);
        }
        anyhow::ensure!(Instant::now() < until, "no Xorg session for {user} after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The gateway's configuration (`--gateway-config FILE`), to compare settings.
static GATEWAY_CONFIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn median(mut v: Vec<f64>) -> f64 {
    rebond_probe::percentile(&mut v, 0.5).unwrap_or(f64::NAN)
}

/// One workload at one number of concurrent sessions on one kind of workstation.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    workload: &'static str,
    workstation: &'static str,
    sessions: usize,
    bytes_per_second: f64,
    frames_per_second: f64,
    /// Steady state, after the first frame: % of a core per session.
    gateway_cpu_percent: f64,
    worker_cpu_percent: f64,
    /// CPU a session took to start (sign-in, worker, RDP connection, first frame),
    /// gateway and worker together, ms.
    start_cpu_ms: f64,
    worker_rss_mib: f64,
    gateway_rss_mib: f64,
    key_to_frame_median_ms: Option<f64>,
    key_to_frame_p99_ms: Option<f64>,
    direct_key_to_frame_median_ms: Option<f64>,
    direct_key_to_frame_p99_ms: Option<f64>,
    /// Share of the images (a tile or a run of tiles each) sent as JPEG, the rest as PNG.
    jpeg_tiles_percent: Option<f64>,
    /// Tiles drawn from the page's cache, per second.
    tiles_from_cache_per_second: f64,
    exact_pixels_percent: Option<f64>,
    /// Mean SSIM of the luma (see `rebond_testkit::ssim`).
    ssim: Option<f64>,
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
        workstation: runs[0].workstation,
        sessions: runs[0].sessions,
        bytes_per_second: m(|r| r.bytes_per_second),
        frames_per_second: m(|r| r.frames_per_second),
        gateway_cpu_percent: m(|r| r.gateway_cpu_percent),
        worker_cpu_percent: m(|r| r.worker_cpu_percent),
        start_cpu_ms: m(|r| r.start_cpu_ms),
        worker_rss_mib: m(|r| r.worker_rss_mib),
        gateway_rss_mib: m(|r| r.gateway_rss_mib),
        key_to_frame_median_ms: o(|r| r.key_to_frame_median_ms),
        key_to_frame_p99_ms: o(|r| r.key_to_frame_p99_ms),
        direct_key_to_frame_median_ms: o(|r| r.direct_key_to_frame_median_ms),
        direct_key_to_frame_p99_ms: o(|r| r.direct_key_to_frame_p99_ms),
        jpeg_tiles_percent: o(|r| r.jpeg_tiles_percent),
        tiles_from_cache_per_second: m(|r| r.tiles_from_cache_per_second),
        exact_pixels_percent: o(|r| r.exact_pixels_percent),
        ssim: o(|r| r.ssim),
        runs: runs.len(),
    }
}

fn run(exe: &Path, workload: Workload, kind: Workstation, sessions: usize, seconds: u64, scratch: &Path) -> anyhow::Result<Row> {
    let media = Media::prepare(scratch)?;
    let still = scratch.join(format!("still-{}", rebond_testkit::unique()));
    let scene = workload.scene(&media, &still);
    let gw = Gateway::start(exe, GATEWAY_CONFIG.get().map(String::as_str))?;
    let workstations = Desks::start(kind, sessions, scene.as_deref(), &gw)?;
    let desks = &workstations.desks;
    std::thread::sleep(Duration::from_millis(500));
    let gateway_pid = gw.pid().to_string();
    let mut gateway_meter = rebond_testkit::CpuMeter::default();
    let gw_cpu_before = gateway_meter.read(&gateway_pid).unwrap_or_default();
    let started = Instant::now();
    let keys = workload.keys(seconds);
    let mut probes = Vec::new();
    for (i, desk) in desks.iter().enumerate() {
        let shot = scratch.join(format!("probe-{i}.png"));
        let mut cmd = Command::new(exe);
        cmd.args(["probe", "--url", &gw.url(), "--user", &desk.user, "--password-stdin", "--insecure", "--json"])
            .args(["--duration", &(seconds + workload.still_seconds()).to_string()])
            .args(["--key-interval-ms", &workload.key_interval_ms().to_string()])
            .args(["--settle", &(if workload.compared_at_end() { SETTLE_SECONDS } else { 0 }).to_string(), "--screenshot"])
            .arg(&shot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(k) = &keys {
            cmd.args(["--type", k]);
        }
        let mut child = cmd.spawn()?;
        use std::io::Write as _;
        child.stdin.take().expect("piped").write_all(desk.password.as_bytes())?;
        probes.push((child, shot));
    }
    // CPU, sampled while the probes run: the steady figures come from the time after
    // every session has its first frame (plus a second to settle), so signing in and
    // connecting count apart, as each session's start cost.
    let sampler = CpuSampler::start(&gw, &gateway_pid, gateway_meter, started);
    if workload.still_seconds() > 0 {
        std::thread::sleep((started + Duration::from_secs(seconds)).saturating_duration_since(Instant::now()));
        sampler.mark_end();
        std::fs::write(&still, "")?;
    }
    let mut reports = Vec::new();
    for (child, shot) in probes {
        let out = child.wait_with_output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        anyhow::ensure!(v["error"].is_null(), "{} on {}: {}", workload.name(), kind.name(), v["error"]);
        reports.push((v, shot));
    }
    let samples = sampler.stop();
    let last_first_frame =
        reports.iter().filter_map(|(v, _)| v["time_to_first_frame_ms"].as_f64()).fold(0.0, f64::max) / 1000.0;
    let cpu = samples.steady(last_first_frame + 1.0, last_first_frame + seconds as f64, gw_cpu_before, sessions);
    let (gateway_cpu_percent, worker_cpu, start_cpu_ms) =
        cpu.ok_or_else(|| anyhow::anyhow!("{}: too few CPU samples after the first frame", workload.name()))?;

    // Fidelity: the first session's picture against its workstation's own screen, where
    // the picture stands still at the end (a moving one changes between the two captures).
    let (exact, ssim) = if workload.compared_at_end() {
        let screen = scratch.join("screen-0.png");
        desks[0].screen.screenshot(&screen)?;
        let (exact, ssim) = fidelity(&reports[0].1, &screen)?;
        (Some(exact), Some(ssim))
    } else {
        (None, None)
    };

    let worker_rss: Vec<f64> = gw.worker_pids().iter().filter_map(|p| rebond_testkit::rss_mib(p)).collect();
    let field = |k: &str| reports.iter().filter_map(|(v, _)| v[k].as_f64()).collect::<Vec<f64>>();
    let opt_median = |v: Vec<f64>| (!v.is_empty()).then(|| median(v));
    // The rates of the motion: a run that ends standing still has them over the time from
    // the first frame to the stop (the frame that shows the still picture counted in).
    let rate = |k: &str| {
        median(
            reports
                .iter()
                .filter_map(|(v, _)| {
                    let rate = v[k].as_f64()?;
                    if workload.still_seconds() == 0 {
                        return Some(rate);
                    }
                    let moving = seconds as f64 - v["time_to_first_frame_ms"].as_f64()? / 1000.0;
                    Some(rate * v["measured_seconds"].as_f64()? / moving.max(0.1))
                })
                .collect(),
        )
    };
    let jpeg: Vec<f64> = reports
        .iter()
        .filter_map(|(v, _)| {
            let (jpeg, png) = (v["tiles_jpeg"].as_f64()?, v["tiles_png"].as_f64()?);
            (jpeg + png > 0.0).then(|| 100.0 * jpeg / (jpeg + png))
        })
        .collect();
    let (direct_median, direct_p99) = if workload == Workload::Typing {
        let mut lat = block_on(direct_key_latency(&desks[0], seconds))?;
        (rebond_probe::percentile(&mut lat, 0.5), rebond_probe::percentile(&mut lat, 0.99))
    } else {
        (None, None)
    };
    Ok(Row {
        workload: workload.name(),
        workstation: kind.name(),
        sessions,
        bytes_per_second: rate("bytes_per_second"),
        frames_per_second: rate("frames_per_second"),
        gateway_cpu_percent,
        worker_cpu_percent: worker_cpu,
        start_cpu_ms,
        worker_rss_mib: median(worker_rss),
        gateway_rss_mib: rebond_testkit::rss_mib(&gateway_pid).unwrap_or(f64::NAN),
        key_to_frame_median_ms: opt_median(field("key_to_frame_median_ms")),
        key_to_frame_p99_ms: opt_median(field("key_to_frame_p99_ms")),
        direct_key_to_frame_median_ms: direct_median,
        direct_key_to_frame_p99_ms: direct_p99,
        jpeg_tiles_percent: opt_median(jpeg),
        tiles_from_cache_per_second: median(field("tiles_from_cache").iter().zip(field("measured_seconds")).map(|(n, s)| n / s.max(0.1)).collect()),
        exact_pixels_percent: exact,
        ssim,
        runs: 1,
    })
}

/// The gateway's and the workers' CPU time, read to the nanosecond every
/// [`CpuSampler::EVERY`] from `/proc` ([`rebond_testkit::CpuMeter`]) on a thread of its
/// own while the probes run.
struct CpuSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Seconds since the start at which the motion ended (still workloads).
    end: std::sync::Arc<std::sync::Mutex<Option<f64>>>,
    started: Instant,
    thread: std::thread::JoinHandle<Vec<CpuSample>>,
}

/// CPU seconds so far: the gateway's, and each worker's by pid.
struct CpuSample {
    at: f64,
    gateway: f64,
    workers: std::collections::BTreeMap<String, f64>,
}

struct CpuSamples {
    samples: Vec<CpuSample>,
    end: Option<f64>,
}

impl CpuSampler {
    const EVERY: Duration = Duration::from_millis(200);

    fn start(gw: &Gateway, gateway_pid: &str, mut gateway_meter: rebond_testkit::CpuMeter, started: Instant) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, pid, log) = (stop.clone(), gateway_pid.to_owned(), gw.log.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut worker_meters: std::collections::HashMap<String, rebond_testkit::CpuMeter> = Default::default();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let workers = std::fs::read_to_string(&log)
                    .map(|text| rebond_testkit::gateway::worker_pids_in(&text))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| Some((p.clone(), worker_meters.entry(p.clone()).or_default().read(&p)?)))
                    .collect();
                if let Some(gateway) = gateway_meter.read(&pid) {
                    samples.push(CpuSample { at: started.elapsed().as_secs_f64(), gateway, workers });
                }
                std::thread::sleep(Self::EVERY);
            }
            samples
        });
        Self { stop, end: Default::default(), started, thread }
    }

    /// The motion ended now: the steady window ends here.
    fn mark_end(&self) {
        *self.end.lock().unwrap() = Some(self.started.elapsed().as_secs_f64());
    }

    fn stop(self) -> CpuSamples {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        CpuSamples { samples, end: *self.end.lock().unwrap() }
    }
}

impl CpuSamples {
    /// Between `from` and `to` seconds after the start (or the end of the motion, if
    /// sooner): the gateway's CPU % per session and the median worker's CPU %; and
    /// what a session cost before `from` (gateway share + median worker), ms.
    fn steady(&self, from: f64, to: f64, gateway_before: f64, sessions: usize) -> Option<(f64, f64, f64)> {
        let to = self.end.map_or(to, |end| end.min(to));
        let a = self.samples.iter().find(|s| s.at >= from)?;
        let b = self.samples.iter().rev().find(|s| s.at <= to)?;
        let span = b.at - a.at;
        if span < 0.5 {
            return None;
        }
        let gateway = 100.0 * (b.gateway - a.gateway) / span / sessions as f64;
        let workers: Vec<f64> =
            b.workers.iter().filter_map(|(pid, cpu)| Some(100.0 * (cpu - a.workers.get(pid)?) / span)).collect();
        let start: Vec<f64> = a.workers.values().copied().collect();
        let start_ms = 1000.0 * ((a.gateway - gateway_before) / sessions as f64 + median(start));
        Some((gateway, median(workers), start_ms))
    }
}

/// Exact pixels (% of pixels whose RGB is equal) and SSIM of two PNG pictures of the
/// same size.
fn fidelity(a: &Path, b: &Path) -> anyhow::Result<(f64, f64)> {
    let (wa, ha, pa) = rebond_testkit::read_png(a)?;
    let (wb, hb, pb) = rebond_testkit::read_png(b)?;
    anyhow::ensure!((wa, ha) == (wb, hb), "pictures differ in size: {wa}x{ha} and {wb}x{hb}");
    Ok((100.0 * rebond_testkit::same_pixels(&pa, &pb), rebond_testkit::ssim(&pa, &pb, wa as usize, ha as usize)))
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

/// A direct IronRDP client (rebond-rdp, no gateway, no browser) on the workstation at
/// 127.0.0.1:`port`, asking for 1280×800, connected and synchronized.
async fn direct_client(port: u16, user: &str, password: &str) -> anyhow::Result<(rebond_rdp::WorkstationFramed, rebond_rdp::Session)> {
    use ironrdp_tokio::FramedWrite as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let req = rebond_rdp::ConnectRequest {
        host: "127.0.0.1".into(),
        port,
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
    let connected = rebond_rdp::connect(&req, |_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut framed = connected.framed;
    let mut session = rebond_rdp::Session::new(connected.result, None);
    for f in session.synchronize().map_err(anyhow::Error::msg)? {
        framed.write_all(&f).await?;
    }
    Ok((framed, session))
}

/// Processes and answers one PDU read from the workstation; returns whether pixels changed.
async fn direct_answer(
    framed: &mut rebond_rdp::WorkstationFramed,
    session: &mut rebond_rdp::Session,
    (action, frame): (ironrdp_pdu::Action, bytes::BytesMut),
) -> anyhow::Result<bool> {
    use ironrdp_tokio::FramedWrite as _;
    let processed = session.process(action, &frame).map_err(anyhow::Error::msg)?;
    for r in processed.responses {
        framed.write_all(&r).await?;
    }
    Ok(processed.events.iter().any(|e| matches!(e, rebond_rdp::SessionEvent::Damage { .. })))
}

/// Signs in directly, waits for the first picture and leaves (an xrdp session stays,
/// disconnected); returns the desktop's size.
async fn direct_first_picture(port: u16, user: &str, password: &str) -> anyhow::Result<(u16, u16)> {
    use ironrdp_tokio::FramedWrite as _;
    let (mut framed, mut session) = direct_client(port, user, password).await?;
    let picture = async {
        loop {
            let pdu = framed.read_pdu().await?;
            if direct_answer(&mut framed, &mut session, pdu).await? {
                return anyhow::Ok(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), picture).await.map_err(|_| anyhow::anyhow!("no picture from the workstation in 20 s"))??;
    for f in session.shutdown() {
        let _ = framed.write_all(&f).await;
    }
    Ok((session.width(), session.height()))
}

/// Key-to-frame latency of a direct IronRDP client (rebond-rdp, no gateway, no browser):
/// key pressed → the first graphics update from the workstation.
async fn direct_key_latency(desk: &Desk, seconds: u64) -> anyhow::Result<Vec<f64>> {
    use ironrdp_tokio::FramedWrite as _;
    let (mut framed, mut session) = direct_client(desk.port, &desk.user, &desk.password).await?;
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
                if direct_answer(&mut framed, &mut session, pdu?).await? {
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
}

/// The figures against the number of sessions, one line per workload (and workstation,
/// when there are several) (SVG).
fn svg(rows: &[Row], value: impl Fn(&Row) -> f64, title: &str) -> String {
    let (w, h, m) = (640.0, 360.0, 50.0);
    let max_n = rows.iter().map(|r| r.sessions).max().unwrap_or(1) as f64;
    let max_v = rows.iter().map(&value).filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-9);
    let colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{m}" y="20">{title} (max {max_v:.1})</text><line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/><text x="{}" y="{}">concurrent sessions (max {max_n})</text>"#, h - m, w - m, h - m, h - m, w / 2.0 - 60.0, h - 15.0);
    let mut series: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !series.contains(&(r.workload, r.workstation)) {
            series.push((r.workload, r.workstation));
        }
    }
    let several = series.iter().any(|s| s.1 != series[0].1);
    for (i, &(workload, workstation)) in series.iter().enumerate() {
        let pts: Vec<String> = rows
            .iter()
            .filter(|r| (r.workload, r.workstation) == (workload, workstation) && value(r).is_finite())
            .map(|r| format!("{:.1},{:.1}", m + (w - 2.0 * m) * r.sessions as f64 / max_n, h - m - (h - 2.0 * m) * value(r) / max_v))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = colours[i % colours.len()];
        let label = if several { format!("{workload} ({workstation})") } else { workload.to_owned() };
        out += &format!(r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{c}">{label}</text>"#, pts.join(" "), w - m - 110.0, m + 15.0 * i as f64);
    }
    out + "</svg>\n"
}

/// Which workstations a run measures.
#[derive(Clone, Copy, clap::ValueEnum)]
enum WorkstationChoice {
    Shadow,
    Xrdp,
    Both,
}

#[derive(clap::Parser)]
#[command(about = "Real workstations behind a real gateway, scripted workloads, the figures that matter (see the source's header and docs/performance.md)")]
struct Args {
    /// The `rebond` binary to measure.
    #[arg(long, default_value = "target/debug/rebond")]
    rebond: PathBuf,
    /// Length of each run after the first frame, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Runs per line (figures are medians over the runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Concurrent sessions, one line per count: 1,5,10,20.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u64).range(1..))]
    sessions: Vec<u64>,
    /// Workloads, comma-separated (all by default).
    #[arg(long, value_delimiter = ',', value_parser = parse_workload)]
    workloads: Vec<Workload>,
    #[arg(long, value_enum, default_value = "shadow")]
    workstation: WorkstationChoice,
    /// A gateway configuration (TOML) to run instead of the harness's defaults.
    #[arg(long)]
    gateway_config: Option<PathBuf>,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Plot CPU per session against the number of sessions here (and kB/s next to it).
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    Workload::parse(s).ok_or_else(|| format!("unknown workload {s}; one of {}", ALL.map(Workload::name).join(", ")))
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let exe = args.rebond;
    let (seconds, runs, json, svg_path) = (args.seconds, args.runs as usize, args.json, args.svg);
    let sessions: Vec<usize> = args.sessions.iter().map(|&n| n as usize).collect();
    let workloads = if args.workloads.is_empty() { ALL.to_vec() } else { args.workloads };
    let workstations = match args.workstation {
        WorkstationChoice::Shadow => vec![Workstation::Shadow],
        WorkstationChoice::Xrdp => vec![Workstation::Xrdp],
        WorkstationChoice::Both => vec![Workstation::Shadow, Workstation::Xrdp],
    };
    if let Some(path) = &args.gateway_config {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        GATEWAY_CONFIG.set(text).expect("set once");
    }
    let scratch = rebond_testkit::temp_dir("bench");
    let mut rows = Vec::new();
    for &n in &sessions {
        for &w in &workloads {
            for &ws in &workstations {
                let row = median_of_runs((0..runs).map(|_| run(&exe, w, ws, n, seconds, &scratch)).collect::<anyhow::Result<_>>()?);
                if !json {
                    eprintln!("{row:?}");
                }
                rows.push(row);
            }
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
        "{:<10} {:<7} {:>4} {:>10} {:>6} {:>7} {:>7} {:>8} {:>7} {:>7} {:>13} {:>13} {:>7} {:>7} {:>7}",
        "workload", "ws", "n", "B/s", "fps", "gw %", "wk %", "start ms", "wk MiB", "gw MiB", "key→frame ms", "direct ms", "jpeg %", "exact %", "ssim"
    );
    for r in &rows {
        println!(
            "{:<10} {:<7} {:>4} {:>10.0} {:>6.1} {:>7.2} {:>7.2} {:>8.0} {:>7.1} {:>7.1} {:>13} {:>13} {:>7} {:>7} {:>7}",
            r.workload,
            r.workstation,
            r.sessions,
            r.bytes_per_second,
            r.frames_per_second,
            r.gateway_cpu_percent,
            r.worker_cpu_percent,
            r.start_cpu_ms,
            r.worker_rss_mib,
            r.gateway_rss_mib,
            format!("{}/{}", f(r.key_to_frame_median_ms), f(r.key_to_frame_p99_ms)),
            format!("{}/{}", f(r.direct_key_to_frame_median_ms), f(r.direct_key_to_frame_p99_ms)),
            f(r.jpeg_tiles_percent),
            f(r.exact_pixels_percent),
            r.ssim.map_or("-".to_owned(), |v| format!("{v:.4}")),
        );
    }
    println!(
        "(medians over the sessions of each run, then over {runs} runs; {seconds} s per run (animation: then {STILL_SECONDS} s still, \
         its rates over the motion); gw % and wk %: steady, from 1 s after the first frame, gw % per session; \
         start ms: CPU to sign in, connect and draw the first frame, per session; key→frame: median/p99; exact % and ssim where the picture ends still)"
    );
    Ok(())
}
