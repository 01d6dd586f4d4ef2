//! `rebond`: the command line. `serve` runs the gateway; `user` and `route` manage
//! the local store; `probe` is the headless client; `worker` is started by the
//! gateway, one per session, and is not for people.

use std::io::{IsTerminal as _, Read as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use rebond_directory::{Route, Trust};
use rebond_gateway::Config;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(name = "rebond", version, about = "Rebond: a bounce-desktop gateway. Only pixels go down, only keystrokes and pointer moves go up.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (HTTPS on 127.0.0.1:8443 by default).
    Serve {
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
        /// Address to listen on, for example 0.0.0.0:443.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Drain the gateway running on this data folder: no new sessions, pages told,
    /// sessions given until the drain deadline, then it exits (same as SIGTERM).
    Drain {
        #[command(flatten)]
        data: DataDir,
        /// Return only when the gateway has exited.
        #[arg(long)]
        wait: bool,
    },
    /// Usage totals (sessions, active and idle minutes, bytes), the basis of pay-per-use.
    Usage {
        /// First day (YYYY-MM-DD, UTC), included; default: 30 days ago.
        #[arg(long)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD, UTC), included; default: today.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "user")]
        by: UsageBy,
        #[arg(long, value_enum, default_value = "table")]
        format: UsageFormat,
        /// Read a cluster's shared database instead of the data folder.
        #[arg(long, env = "REBOND_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// The tamper-evident audit log: sign-ins, sessions, violations, administrator actions.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage the local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the routes from users to their workstations.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Sign in like a browser, receive the desktop, and report figures.
    Probe(ProbeArgs),
    /// Check the directory, a user's groups, policy and route, and that their
    /// workstation answers: what to run when someone says "it doesn't work".
    Check {
        /// The gateway's TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
        /// The user to check (as they type it: alice, alice@corp.example, CORP\alice).
        #[arg(long)]
        user: Option<String>,
    },
    /// The bounce worker (started by the gateway, one per session).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        session: u64,
        /// Address-space limit, in MiB.
        #[arg(long, default_value_t = 1024)]
        memory_mib: u64,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum UsageBy {
    User,
    Group,
    Day,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum UsageFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
struct DataDir {
    /// The data folder (state, certificate); default ~/.local/share/rebond.
    #[arg(long = "data", env = "REBOND_DATA")]
    dir: Option<PathBuf>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(rebond_gateway::config::default_data_dir)
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or set an existing user's password.
    Add {
        name: String,
        /// Read the password from standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
        /// The user's groups (repeat the option); replaces the previous ones.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the users.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Forget a person's second factor (a lost or replaced phone): they enrol again,
    /// with a new QR code, at their next sign-in.
    ResetSecondFactor {
        name: String,
        /// A cluster's shared database (where second factors are kept).
        #[arg(long, env = "REBOND_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Print an Argon2id hash of a password, for the `users` of a configuration file.
    Hash {
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that no record was deleted, inserted or edited.
    Verify {
        #[arg(long, env = "REBOND_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Print the log as JSON lines, or send it to syslog.
    Export {
        /// Send each record to this syslog socket (for example /dev/log) instead of printing it.
        #[arg(long)]
        syslog: Option<PathBuf>,
        #[arg(long, env = "REBOND_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum RouteCommand {
    /// Send USER's sessions to the workstation at URL (rdp://HOST[:PORT]).
    Set {
        user: String,
        url: String,
        /// Trust the workstation's certificate if this CA (PEM file) issued it.
        #[arg(long, group = "trust")]
        ca: Option<PathBuf>,
        /// Trust exactly the certificate with this SHA-256 fingerprint.
        #[arg(long, group = "trust")]
        pin: Option<String>,
        /// Do not verify the workstation's certificate (not for production).
        #[arg(long, group = "trust")]
        insecure_skip_verify: bool,
        /// Wake the workstation with Wake-on-LAN when it sleeps: its MAC address.
        #[arg(long)]
        wake_mac: Option<String>,
        /// Where the magic packet goes (the office subnet's broadcast, IP:PORT).
        #[arg(long, requires = "wake_mac")]
        wake_address: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove USER's route.
    Remove {
        user: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the routes.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Show the SHA-256 fingerprint of the certificate a workstation presents.
    Fingerprint { url: String },
}

#[derive(Args)]
struct ProbeArgs {
    /// The gateway, for example https://127.0.0.1:8443
    #[arg(long)]
    url: String,
    #[arg(long)]
    user: String,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Accept the gateway's certificate without verifying it (self-signed).
    #[arg(long)]
    insecure: bool,
    /// Trust this CA certificate (PEM) for the gateway.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Keys to type after the first frame; {Enter}, {Tab}, {Ctrl+c}… for special keys,
    /// {Wait 2000} for a pause (milliseconds).
    #[arg(long = "type")]
    type_text: Option<String>,
    /// Seconds to stay after the first frame.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Save what the browser would show as a PNG.
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 1280)]
    width: u16,
    #[arg(long, default_value_t = 800)]
    height: u16,
    /// Browser language (sets the workstation keyboard layout).
    #[arg(long, default_value = "en-US")]
    language: String,
    /// Milliseconds between typed key events (40: a person's pace; much faster is
    /// treated by the gateway as injected typing).
    #[arg(long, default_value_t = 40)]
    key_interval_ms: u64,
    /// Seconds to stay after `--duration` without typing, not counted in the figures,
    /// so that `--screenshot` shows the screen once it has answered the last key.
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Probe(_)));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match &cli.command {
        Command::Worker { memory_mib, .. } => {
            // Confined before anything else runs; one thread serves the one session.
            let limits = rebond_worker::sandbox::Limits { memory_bytes: memory_mib << 20, ..Default::default() };
            if let Err(e) = rebond_worker::sandbox::limit_process(limits) {
                tracing::error!(error = %e, "cannot confine the bounce worker");
                return std::process::ExitCode::FAILURE;
            }
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rebond: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if std::env::var("REBOND_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// The configuration file (or the embedded defaults); `--data` overrides its data folder.
fn load_config(config: Option<&std::path::Path>, data: &DataDir) -> anyhow::Result<Config> {
    let mut cfg = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if data.dir.is_some() || config.is_none() {
        cfg.data_dir = data.path();
    }
    Ok(cfg)
}

/// The shared records: the cluster's database, or the data folder's.
async fn open_state(database_url: Option<String>, data: &std::path::Path) -> anyhow::Result<rebond_state::State> {
    Ok(match database_url {
        Some(url) => rebond_state::State::connect_postgres(&url).await?,
        None => {
            std::fs::create_dir_all(data)?;
            rebond_state::State::open_sqlite(&data.join("rebond.sqlite3"))?
        }
    })
}

/// Records an administrator's change in the data folder's audit log.
async fn audit_admin(data: &std::path::Path, action: &str, user: &str) -> anyhow::Result<()> {
    audit_admin_in(&open_state(None, data).await?, action, user).await
}

/// Records an administrator's change in the given records' audit log.
async fn audit_admin_in(state: &rebond_state::State, action: &str, user: &str) -> anyhow::Result<()> {
    let admin = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    state.audit(now, "cli", "admin", user, &serde_json::json!({ "action": action, "by": admin })).await?;
    Ok(())
}

fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut pw = Zeroizing::new(String::new());
    if from_stdin {
        std::io::stdin().read_to_string(&mut pw).context("cannot read the password from standard input")?;
        let trimmed = Zeroizing::new(pw.trim_end_matches(['\n', '\r']).to_owned());
        pw = trimmed;
    } else {
        pw = Zeroizing::new(rpassword::prompt_password(prompt).context("cannot read the password (use --password-stdin in scripts)")?);
    }
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(pw)
}

async fn run(command: Command) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        Command::Serve { config, data, listen } => {
            let mut cfg = load_config(config.as_deref(), &data)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let exe = std::env::current_exe().context("cannot find the rebond executable for the workers")?;
            let gw = rebond_gateway::Gateway::new(cfg, exe).await?;
            gw.serve().await?;
        }
        Command::Check { config, data, user } => {
            let cfg = load_config(config.as_deref(), &data)?;
            let (ok, report) = rebond_gateway::check(&cfg, user.as_deref()).await?;
            for line in report {
                println!("{line}");
            }
            println!("{}", if ok { "all checks passed" } else { "some checks failed: see FAIL above" });
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Drain { data, wait } => {
            let pid_file = data.path().join("rebond.pid");
            let pid = std::fs::read_to_string(&pid_file)
                .with_context(|| format!("no gateway runs on {} (no {})", data.path().display(), pid_file.display()))?;
            let pid: u32 = pid.trim().parse().with_context(|| format!("invalid {}", pid_file.display()))?;
            // `kill` (procps) sends the same SIGTERM an orchestrator would.
            let st = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
            if !st.success() {
                bail!("cannot signal the gateway (pid {pid}); it may have stopped already");
            }
            println!("gateway {pid} is draining");
            if wait {
                // Gone, or a zombie waiting for its parent: either way it has stopped.
                let running = |pid: u32| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .map(|st| st.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
                        .unwrap_or(false)
                };
                while running(pid) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                println!("gateway {pid} has stopped");
            }
        }
        Command::Usage { from, to, by, format, database_url, data } => {
            use rebond_state::report;
            let day = |text: &str| report::parse_date(text).with_context(|| format!("invalid date {text:?}: use YYYY-MM-DD"));
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
            let today = now - now.rem_euclid(86_400);
            let from = match from { Some(f) => day(&f)?, None => today - 30 * 86_400 };
            let to = match to { Some(t) => day(&t)?, None => today } + 86_400;
            if to <= from {
                bail!("--to is before --from");
            }
            let state = open_state(database_url, &data.path()).await?;
            let records = state.usage_between(from, to).await?;
            let (group, title) = match by {
                UsageBy::User => (report::GroupBy::User, "user"),
                UsageBy::Group => (report::GroupBy::Group, "group"),
                UsageBy::Day => (report::GroupBy::Day, "day"),
            };
            let rows = report::totals(&records, group);
            match format {
                UsageFormat::Table => print!("{}", report::table(&rows, title)),
                UsageFormat::Csv => print!("{}", report::csv(&rows, title)),
                UsageFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            }
        }
        Command::Audit(cmd) => {
            let (database_url, data) = match &cmd {
                AuditCommand::Verify { database_url, data } | AuditCommand::Export { database_url, data, .. } => (database_url.clone(), data.path()),
            };
            let state = open_state(database_url, &data).await?;
            let log = state.audit_log().await?;
            match cmd {
                AuditCommand::Verify { .. } => match rebond_state::audit::verify(&log) {
                    Ok(()) => println!("{} records; the chain is intact (last hash {})", log.len(), log.last().map_or("-", |r| r.hash.as_str())),
                    Err(e) => {
                        println!("the audit log was tampered with: {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                },
                AuditCommand::Export { syslog: None, .. } => {
                    for r in &log {
                        println!("{}", serde_json::to_string(r)?);
                    }
                }
                AuditCommand::Export { syslog: Some(socket), .. } => {
                    let sock = std::os::unix::net::UnixDatagram::unbound()?;
                    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "rebond".into());
                    for r in &log {
                        sock.send_to(rebond_state::audit::syslog_line(r, host.trim()).as_bytes(), &socket)
                            .with_context(|| format!("cannot send to {}", socket.display()))?;
                    }
                    println!("{} records sent to {}", log.len(), socket.display());
                }
            }
        }
        Command::Worker { session, .. } => {
            let span = tracing::info_span!("worker", session);
            let _enter = span.enter();
            // The gateway gives the worker two pipes: read and write them non-blocking on
            // the worker's own thread. (tokio's stdin/stdout hand every read and write to
            // a blocking thread: two thread switches per message, most of a typing
            // session's CPU.) Anything else (a terminal) falls back to those.
            let result = match worker_pipes() {
                Ok((input, output)) => rebond_worker::run(input, output).await,
                Err(_) => rebond_worker::run(tokio::io::stdin(), tokio::io::stdout()).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "bounce worker failed");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::User(cmd) => match cmd {
            UserCommand::ResetSecondFactor { name, database_url, data } => {
                let name = rebond_directory::normalize_user(&name);
                let state = open_state(database_url, &data.path()).await?;
                if !state.remove_second_factor(&name).await? {
                    bail!("{name} has no second factor");
                }
                audit_admin_in(&state, "second factor reset", &name).await?;
                println!("{name} will enrol a new second factor at their next sign-in");
            }
            UserCommand::Add { name, password_stdin, groups, data } => {
                let store = rebond_gateway::open_store(&data.path())?;
                let pw = read_password(password_stdin, &format!("Password for {name}: "))?;
                store.set_user(&name, &pw)?;
                if !groups.is_empty() {
                    store.set_groups(&name, &groups)?;
                }
                audit_admin(&data.path(), "user saved", &rebond_directory::normalize_user(&name)).await?;
                println!("user {} saved", rebond_directory::normalize_user(&name));
            }
            UserCommand::Remove { name, data } => {
                rebond_gateway::open_store(&data.path())?.remove_user(&name)?;
                audit_admin(&data.path(), "user removed", &rebond_directory::normalize_user(&name)).await?;
                println!("user {name} removed");
            }
            UserCommand::List { data } => {
                let store = rebond_gateway::open_store(&data.path())?;
                for u in store.users()? {
                    println!("{u}\t{}", store.groups(&u)?.join(","));
                }
            }
            UserCommand::Hash { password_stdin } => {
                let pw = read_password(password_stdin, "Password: ")?;
                println!("{}", rebond_directory::hash_password(&pw)?);
            }
        },
        Command::Route(cmd) => match cmd {
            RouteCommand::Set { user, url, ca, pin, insecure_skip_verify, wake_mac, wake_address, data } => {
                let trust = match (ca, pin, insecure_skip_verify) {
                    (Some(ca), None, false) => {
                        let ca = std::fs::canonicalize(&ca).with_context(|| format!("cannot find the CA file {}", ca.display()))?;
                        Trust::CaFile(ca.display().to_string())
                    }
                    (None, Some(pin), false) => Trust::from_parts("pin", &pin)?,
                    (None, None, true) => Trust::Insecure,
                    _ => bail!("say how to trust the workstation's certificate: --ca FILE, --pin SHA256 or --insecure-skip-verify"),
                };
                let mut route = Route::parse_url(&url, trust)?;
                route.wake = wake_mac.map(|mac| rebond_directory::Wake::parse(&mac, wake_address.as_deref())).transpose()?;
                rebond_gateway::open_store(&data.path())?.set_route(&user, &route)?;
                if route.trust == Trust::Insecure {
                    eprintln!("warning: the gateway will not verify {}'s certificate", route.url());
                }
                audit_admin(&data.path(), &format!("route set to {route}"), &rebond_directory::normalize_user(&user)).await?;
                println!("route {} -> {route}", rebond_directory::normalize_user(&user));
            }
            RouteCommand::Remove { user, data } => {
                if !rebond_gateway::open_store(&data.path())?.remove_route(&user)? {
                    bail!("no route for {user}");
                }
                audit_admin(&data.path(), "route removed", &rebond_directory::normalize_user(&user)).await?;
                println!("route for {user} removed");
            }
            RouteCommand::List { data } => {
                for (user, route) in rebond_gateway::open_store(&data.path())?.routes()? {
                    println!("{user}\t{route}");
                }
            }
            RouteCommand::Fingerprint { url } => {
                let route = Route::parse_url(&url, Trust::Insecure)?;
                let der = rebond_rdp::fetch_certificate(&route.host, route.port, Duration::from_secs(10)).await?;
                println!("{}", rebond_rdp::fingerprint_of_der(&der));
            }
        },
        Command::Probe(args) => {
            let password = if args.password_stdin {
                read_password(true, "")?
            } else {
                read_password(false, &format!("Password for {}: ", args.user))?
            };
            let opts = rebond_probe::ProbeOptions {
                url: args.url,
                user: args.user,
                password,
                insecure: args.insecure,
                ca_file: args.ca,
                type_text: args.type_text,
                duration: Duration::from_secs_f64(args.duration.max(0.0)),
                screenshot: args.screenshot,
                width: args.width,
                height: args.height,
                language: args.language,
                key_interval_ms: args.key_interval_ms,
                settle: Duration::from_secs_f64(args.settle.max(0.0)),
            };
            let (report, _) = rebond_probe::run(opts).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                match &report.error {
                    Some(e) => println!("error RB-{} {}: {}", e.number, e.code, e.message),
                    None => println!(
                        "first frame after {} ms; {} frames, {} bytes ({:.0} B/s)",
                        report.time_to_first_frame_ms.unwrap_or_default(),
                        report.frames,
                        report.bytes_received,
                        report.bytes_per_second
                    ),
                }
            }
            if report.error.is_some() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Standard input and output as non-blocking pipes, when they are pipes.
fn worker_pipes() -> std::io::Result<(tokio::net::unix::pipe::Receiver, tokio::net::unix::pipe::Sender)> {
    use std::os::fd::AsFd as _;
    let input = std::io::stdin().as_fd().try_clone_to_owned()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned()?;
    Ok((tokio::net::unix::pipe::Receiver::from_owned_fd(input)?, tokio::net::unix::pipe::Sender::from_owned_fd(output)?))
}
