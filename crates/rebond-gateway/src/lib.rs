//! The gateway: HTTPS and WebSocket front, sign-in against the directory, routing,
//! and supervision of one bounce worker process per session.
//!
//! INVARIANT: the gateway never decodes RDP and never holds a password beyond the
//! sign-in request that carries it: the password goes to the directory check and
//! to the new worker's stdin, and is zeroized.
//! INVARIANT: a worker's crash ends its own session only.

mod cgroup;
pub mod config;
mod metrics;
mod routing;
pub mod second_factor;
mod sessions;
pub mod tls;
mod web;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rebond_directory::{Route, SignIn, Store, Trust};
use rebond_wire::ErrorCode;
use tracing::{info, warn};
use zeroize::Zeroizing;

pub use config::Config;
pub use rebond_rdp::keyboard_layout_for;
pub use web::COOKIE;

pub struct Gateway {
    pub config: Config,
    store: Mutex<Store>,
    sessions: Arc<sessions::Registry>,
    draining: AtomicBool,
    metrics: Arc<metrics::Metrics>,
    state: rebond_state::State,
    /// This node's name in shared records.
    node: String,
    /// Distinguishes this process's session numbers from those of earlier runs.
    run_id: String,
    /// Session watchers still running (each writes its final usage record on exit).
    watchers: std::sync::atomic::AtomicUsize,
    /// Active Directory, when configured (otherwise the local store signs people in).
    directory: Option<rebond_directory::ad::ActiveDirectory>,
    /// Failed sign-ins by account and address, and the limits from the domain's lockout policy.
    throttle: Mutex<(rebond_policy::SignInThrottle, rebond_policy::ThrottleLimits)>,
    /// Seals second-factor secrets (when a policy asks for a second factor).
    secret_box: Option<second_factor::SecretBox>,
    /// Local password checks at once (Argon2id takes 19 MiB and tens of milliseconds
    /// each): a sign-in storm queues here instead of taking all memory and cores.
    password_checks: tokio::sync::Semaphore,
}

/// Concurrent local password checks: one per core.
fn password_check_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Why a second factor did not let a person in yet.
pub(crate) enum SecondFactorRefusal {
    Challenge(second_factor::Challenge),
    Wrong,
    Unavailable,
}

/// A person the directory accepted, with where they go.
pub(crate) struct SignedIn {
    /// Their name in Rebond (the local user, or the `sAMAccountName`).
    pub user: String,
    /// The domain the workstation logon uses (directory users).
    pub domain: Option<String>,
    pub groups: Vec<String>,
    pub route: Option<Route>,
}

/// Why a sign-in was refused, and how long to wait when it was throttled.
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub retry_after_seconds: Option<u64>,
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Self {
        Self { code, retry_after_seconds: None }
    }
}

/// Input within this long counts the time as active, for metering.
const ACTIVE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Creates a random session token (256 bits, URL-safe).
pub(crate) fn new_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Opens the local store in the data folder, creating the folder (mode 0700).
pub fn open_store(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
    }
    Store::open(&data_dir.join("rebond.sqlite3")).context("cannot open the local store")
}

impl Gateway {
    pub async fn new(config: Config, worker_exe: PathBuf) -> anyhow::Result<Arc<Self>> {
        let store = open_store(&config.data_dir)?;
        for u in &config.users {
            store.set_user_hash(&u.name, &u.password_hash).with_context(|| format!("user {:?} in the configuration", u.name))?;
            store.set_groups(&u.name, &u.groups).with_context(|| format!("groups of {:?} in the configuration", u.name))?;
        }
        for r in &config.routes {
            if r.insecure_skip_verify {
                warn!(user = %r.user, workstation = %r.workstation, "route does not verify the workstation's certificate");
            }
        }
        let metrics = Arc::new(metrics::Metrics::default());
        let launch = worker_launch(&config, worker_exe)?;
        let directory = match &config.directory {
            Some(d) => Some(active_directory(d)?),
            None => None,
        };
        let secret_box = if config.policies.iter().any(|p| p.second_factor) {
            let path = config.second_factor_key_file.clone().unwrap_or_else(|| config.data_dir.join("second-factor.key"));
            Some(second_factor::SecretBox::load_or_create(&path)?)
        } else {
            None
        };
        let mut limits = if directory.is_some() {
            rebond_policy::ThrottleLimits::lockout_unknown()
        } else {
            rebond_policy::ThrottleLimits::below(None)
        };
        if let Some(ad) = directory.as_ref().filter(|ad| ad.settings().service_account.is_some()) {
            match ad.lockout_policy().await {
                Ok(lockout) => {
                    limits = rebond_policy::ThrottleLimits::below(Some(lockout));
                    info!(threshold = lockout.threshold, per_account = limits.per_account, "directory lockout policy read");
                }
                Err(error) => warn!(%error, "cannot read the directory's lockout policy yet; two failures per account until a sign-in reads it"),
            }
        }
        let state = match &config.database_url {
            Some(url) => rebond_state::State::connect_postgres(url).await.context("cannot reach the shared database (database_url)")?,
            None => rebond_state::State::open_sqlite(&config.data_dir.join("rebond.sqlite3")).context("cannot open the usage records")?,
        };
        let node = config.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "rebond".into())
        });
        Ok(Arc::new(Self {
            config,
            store: Mutex::new(store),
            sessions: sessions::Registry::new(launch, metrics.clone()),
            draining: AtomicBool::new(false),
            metrics,
            state,
            node,
            run_id: format!("{}.{}", unix_now(), std::process::id()),
            watchers: std::sync::atomic::AtomicUsize::new(0),
            directory,
            throttle: Mutex::new((rebond_policy::SignInThrottle::default(), limits)),
            secret_box,
            password_checks: tokio::sync::Semaphore::new(password_check_slots()),
        }))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Checks the password and finds the person's groups and route. Blocking (Argon2, SQLite).
    fn local_sign_in(&self, user: &str, password: &Zeroizing<String>) -> Result<SignedIn, ErrorCode> {
        let groups = match self.store.lock().unwrap().sign_in(user, password) {
            Ok(SignIn::Accepted { groups, .. }) => groups,
            Ok(SignIn::Refused) => return Err(ErrorCode::BadCredentials),
            Err(e) => {
                warn!(error = %e, "local store failed during sign-in");
                return Err(ErrorCode::SignInUnavailable);
            }
        };
        let route = routing::route_override(&self.config, &self.store.lock().unwrap(), user)?;
        Ok(SignedIn { user: user.to_owned(), domain: None, groups, route })
    }

    /// Signs a person in against the directory (Active Directory or the local store).
    pub(crate) async fn sign_in(self: &Arc<Self>, typed: &str, password: &Zeroizing<String>, from: std::net::IpAddr) -> Result<SignedIn, Refusal> {
        if password.is_empty() {
            return Err(ErrorCode::PasswordMissing.into());
        }
        let account_key = match &self.directory {
            Some(ad) => {
                let settings = ad.settings();
                rebond_directory::ad::AccountName::parse(typed, &settings.netbios_domain, &settings.upn_suffix)
                    .map_or_else(|| rebond_directory::normalize_user(typed), |n| n.sam)
            }
            None => rebond_directory::normalize_user(typed),
        };
        let now = unix_now().max(0) as u64;
        {
            let (throttle, limits) = &mut *self.throttle.lock().unwrap();
            if let Err(wait) = throttle.check(limits, &account_key, from, now) {
                warn!(user = %account_key, peer = %from, wait_seconds = wait, "sign-in throttled before the directory's lockout");
                return Err(Refusal { code: ErrorCode::TooManyAttempts, retry_after_seconds: Some(wait) });
            }
        }
        let Some(ad) = &self.directory else {
            if !rebond_directory::valid_user_name(&account_key) {
                return Err(ErrorCode::BadCredentials.into());
            }
            let gw = self.clone();
            let (user, password) = (account_key.clone(), password.clone());
            let slot = self.password_checks.acquire().await.map_err(|_| Refusal::from(ErrorCode::SignInUnavailable))?;
            let verdict = tokio::task::spawn_blocking(move || gw.local_sign_in(&user, &password)).await.unwrap_or(Err(ErrorCode::SignInUnavailable));
            drop(slot);
            match &verdict {
                Err(ErrorCode::BadCredentials) => self.throttle.lock().unwrap().0.failed(&account_key, from, now),
                Ok(_) => self.throttle.lock().unwrap().0.succeeded(&account_key),
                Err(_) => {}
            }
            return verdict.map_err(Refusal::from);
        };
        let settings = ad.settings();
        let account = match ad.sign_in(typed, password).await {
            Ok(a) => a,
            Err(code) => {
                if code == ErrorCode::BadCredentials {
                    self.throttle.lock().unwrap().0.failed(&account_key, from, now);
                }
                return Err(code.into());
            }
        };
        {
            let (throttle, limits) = &mut *self.throttle.lock().unwrap();
            throttle.succeeded(&account.user);
            if let Some(lockout) = account.lockout {
                *limits = rebond_policy::ThrottleLimits::below(Some(lockout));
            }
        }
        let route = match routing::route_override(&self.config, &self.store.lock().unwrap(), &account.user)? {
            Some(r) => Some(r),
            None => {
                let d = self.config.directory.as_ref().expect("a directory sign-in has a directory");
                account.workstation.as_deref().map(|host| routing::directory_route(d, host)).transpose()?
            }
        };
        Ok(SignedIn { user: account.user, domain: Some(settings.netbios_domain.clone()), groups: account.groups, route })
    }

    /// The second factor, for a person whose policy asks for one: enrol them, ask for
    /// the code, or check it (each code works once, on any node).
    pub(crate) async fn second_factor(&self, user: &str, code: Option<&str>, from: std::net::IpAddr) -> Result<(), SecondFactorRefusal> {
        use rebond_policy::second_factor as totp;
        let sealer = self.secret_box.as_ref().ok_or(SecondFactorRefusal::Unavailable)?;
        let unavailable = |e: &dyn std::fmt::Display| {
            warn!(error = %e, %user, "second factor unavailable");
            SecondFactorRefusal::Unavailable
        };
        let now = unix_now();
        let enrol = |secret: &[u8]| {
            let secret_base32 = data_encoding::BASE32_NOPAD.encode(secret);
            let otpauth = totp::otpauth_uri("Rebond", user, &secret_base32);
            let qr_svg = second_factor::qr_svg(&otpauth);
            SecondFactorRefusal::Challenge(second_factor::Challenge::Enrol { otpauth, secret_base32, qr_svg })
        };
        let stored = self.state.second_factor(user).await.map_err(|e| unavailable(&e))?;
        let Some(stored) = stored else {
            let secret = sealer.new_secret();
            self.state.begin_second_factor(user, &sealer.seal(user, &secret), now).await.map_err(|e| unavailable(&e))?;
            info!(%user, "second factor: enrolment started");
            return Err(enrol(&secret));
        };
        let secret = sealer.open(user, &stored.sealed_secret).ok_or_else(|| unavailable(&"the sealed secret does not open with this key (was second_factor_key_file changed?)"))?;
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
            return Err(if stored.enrolled { SecondFactorRefusal::Challenge(second_factor::Challenge::Code) } else { enrol(&secret) });
        };
        let last = stored.last_step.map(|s| s.max(0) as u64);
        match totp::verify(&secret, code, now.max(0) as u64, last) {
            Some(step) if self.state.use_second_factor_step(user, step as i64).await.map_err(|e| unavailable(&e))? => {
                if !stored.enrolled {
                    info!(%user, "second factor enrolled");
                    self.audit("second_factor_enrolled", user, serde_json::json!({ "peer": from.to_string() }));
                }
                Ok(())
            }
            _ => {
                self.throttle.lock().unwrap().0.failed(user, from, now.max(0) as u64);
                Err(SecondFactorRefusal::Wrong)
            }
        }
    }

    /// The start request for a new worker, as JSON. Holds the password: zeroized on drop.
    fn start_request(
        &self,
        user: &str,
        domain: Option<&str>,
        password: &Zeroizing<String>,
        route: &Route,
        page: PageSettings,
    ) -> Zeroizing<Vec<u8>> {
        let PageSettings { width, height, keyboard_layout, sound } = page;
        let trust = match &route.trust {
            Trust::CaFile(path) => match std::fs::read_to_string(path) {
                Ok(pem) => serde_json::json!({ "kind": "ca", "pem": pem }),
                Err(e) => {
                    warn!(%path, error = %e, "cannot read the workstation CA file");
                    serde_json::json!({ "kind": "ca", "pem": "" })
                }
            },
            Trust::Pinned(fp) => serde_json::json!({ "kind": "pinned", "sha256": fp }),
            Trust::Insecure => serde_json::json!({ "kind": "insecure" }),
        };
        #[derive(serde::Serialize)]
        struct Start<'a> {
            host: &'a str,
            port: u16,
            trust: serde_json::Value,
            username: &'a str,
            password: &'a str,
            domain: Option<&'a str>,
            width: u16,
            height: u16,
            keyboard_layout: u32,
            connect_timeout_ms: u64,
            lossless_only: bool,
            detect_moves: bool,
            tile_cache: bool,
            wake: Option<serde_json::Value>,
            wake_timeout_ms: u64,
            speaker: bool,
            microphone: bool,
            speaker_bitrate: u32,
        }
        let start = Start {
            host: &route.host,
            port: route.port,
            trust,
            username: user,
            password: password.as_str(),
            domain,
            width,
            height,
            keyboard_layout,
            connect_timeout_ms: self.config.connect_timeout_seconds * 1000,
            lossless_only: self.config.lossless_only,
            detect_moves: self.config.detect_moves,
            tile_cache: self.config.tile_cache,
            wake: route.wake.as_ref().map(|w| serde_json::json!({ "packet": hex::encode(w.magic_packet()), "address": w.address.to_string() })),
            wake_timeout_ms: self.config.wake_timeout_seconds * 1000,
            speaker: sound.speaker,
            microphone: sound.microphone,
            speaker_bitrate: self.config.sound.speaker_bitrate,
        };
        Zeroizing::new(serde_json::to_vec(&start).expect("serializable"))
    }

    /// Watches one session for its whole life: meters active and idle time and bytes
    /// (written at start, every few seconds, and at the end), and disconnects an idle
    /// page after a warning. The workstation's own session stays open (RDP disconnect).
    pub(crate) async fn watch(self: Arc<Self>, session: Arc<sessions::Session>, workstation: String, groups: Vec<String>) {
        use std::time::Duration;
        self.watchers.fetch_add(1, Ordering::SeqCst);
        // The person's policy (by group) may set its own idle timeout.
        let policy = rebond_policy::policy_for(&self.config.policies, &groups);
        let timeout = Duration::from_secs(policy.and_then(|p| p.idle_timeout_seconds).unwrap_or(self.config.idle_timeout_seconds));
        let warn_before = (timeout / 2).min(Duration::from_secs(60));
        let mut record = rebond_state::UsageRecord {
            session: format!("{}-{}-{}", self.node, self.run_id, session.id),
            user: session.user.clone(),
            workstation,
            node: self.node.clone(),
            groups,
            started_at: unix_now(),
            ended_at: None,
            active_seconds: 0,
            idle_seconds: 0,
            bytes_to_browser: 0,
            bytes_from_browser: 0,
        };
        self.save_usage(&record).await;
        let detail = serde_json::json!({
            "session": record.session,
            "workstation": record.workstation,
            "policy": policy.map_or("default", |p| p.name.as_str()),
        });
        write_audit(&self.state, &self.node, "session_start", &record.user, &detail).await;
        // The newest sign-in holds the person's session, on whichever node it happened.
        if let Err(error) = self.state.claim_session(&record.user, &record.session, &self.node, record.started_at).await {
            warn!(%error, "cannot record the live session");
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut warned, mut since_checkpoint) = (false, 0);
        while session.ended().is_none() {
            tick.tick().await;
            let idle_for = session.idle_for();
            if idle_for < ACTIVE_WINDOW {
                record.active_seconds += 1;
            } else {
                record.idle_seconds += 1;
            }
            since_checkpoint += 1;
            if since_checkpoint % 2 == 0 && !self.state.holds_claim(&record.user, &record.session).await.unwrap_or(true) {
                info!(session = session.id, user = %session.user, "session taken over by a sign-in on another node");
                session.stop(Some(ErrorCode::SessionTakenOver));
                break;
            }
            if since_checkpoint >= rebond_state::CHECKPOINT_SECONDS {
                since_checkpoint = 0;
                self.fill_bytes(&mut record, &session);
                self.save_usage(&record).await;
            }
            if timeout.is_zero() {
                continue;
            }
            if idle_for >= timeout {
                info!(session = session.id, user = %session.user, idle_seconds = idle_for.as_secs(), "idle: page disconnected");
                session.stop(Some(ErrorCode::Idle));
                break;
            }
            let left = timeout - idle_for;
            if left <= warn_before && !warned {
                let seconds = u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX);
                session.notify(rebond_wire::Downlink::Notice { notice: rebond_wire::Notice::IdleWarning, seconds }.encode());
                warned = true;
            } else if left > warn_before {
                warned = false;
            }
        }
        record.ended_at = Some(unix_now());
        self.fill_bytes(&mut record, &session);
        self.save_usage(&record).await;
        let detail = serde_json::json!({
                "session": record.session,
                "workstation": record.workstation,
                "reason": session.ended().map(|c| c.name()),
                "bytes_to_browser": record.bytes_to_browser,
                "bytes_from_browser": record.bytes_from_browser,
                "active_seconds": record.active_seconds,
                "idle_seconds": record.idle_seconds,
        });
        write_audit(&self.state, &self.node, "session_end", &record.user, &detail).await;
        if session.stopped_by_sandbox.load(Ordering::Relaxed) {
            let detail = serde_json::json!({ "session": record.session, "workstation": record.workstation });
            write_audit(&self.state, &self.node, "sandbox_violation", &record.user, &detail).await;
        }
        if let Err(error) = self.state.release_claim(&record.user, &record.session).await {
            warn!(%error, "cannot release the live session");
        }
        self.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    fn fill_bytes(&self, record: &mut rebond_state::UsageRecord, session: &sessions::Session) {
        record.bytes_to_browser = session.bytes_to_browser.load(Ordering::Relaxed);
        record.bytes_from_browser = session.bytes_from_browser.load(Ordering::Relaxed);
    }

    /// Appends to the tamper-evident audit log (in the background; a failure is logged).
    pub(crate) fn audit(&self, kind: &'static str, user: &str, detail: serde_json::Value) {
        let (state, node, user) = (self.state.clone(), self.node.clone(), user.to_owned());
        tokio::spawn(async move { write_audit(&state, &node, kind, &user, &detail).await });
    }

    async fn save_usage(&self, record: &rebond_state::UsageRecord) {
        if let Err(e) = self.state.record_usage(record).await {
            warn!(error = %e, "cannot write a usage record");
        }
    }

    /// Whether this node takes new sessions (for `/readyz` and load balancers).
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.sessions.count() < self.config.max_sessions
    }

    /// Serves until SIGTERM or Ctrl-C, then drains: no new sessions, pages told,
    /// sessions given until the deadline to end, the rest closed politely.
    pub async fn serve(self: Arc<Self>) -> anyhow::Result<()> {
        no_core_dumps();
        return_large_blocks_to_the_system();
        let (tls, fingerprint) = tls::server_config(self.config.tls.as_ref(), &self.config.data_dir)?;
        let listen = self.config.listen;
        let handle = axum_server::Handle::new();
        // TCP_NODELAY: a keystroke's echo is a few small writes; none may wait for an ACK.
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(axum_server::tls_rustls::RustlsConfig::from_config(tls))
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let server = axum_server::bind(listen)
            .acceptor(acceptor)
            .handle(handle.clone())
            .serve(web::router(self.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>());
        let pid_file = self.config.data_dir.join("rebond.pid");
        std::fs::write(&pid_file, std::process::id().to_string())
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        let gw = self.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            gw.drain().await;
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
        });
        info!(%listen, certificate_sha256 = %fingerprint, "gateway listening on https://{listen}/");
        let served = server.await.with_context(|| format!("cannot serve on {listen}"));
        let _ = std::fs::remove_file(&pid_file);
        served
    }

    async fn drain(&self) {
        use std::time::{Duration, Instant};
        self.draining.store(true, Ordering::Relaxed);
        let deadline = Duration::from_secs(self.config.drain_deadline_seconds);
        let live = self.sessions.all();
        info!(sessions = live.len(), deadline_seconds = deadline.as_secs(), "draining: no new sessions");
        let notice = rebond_wire::Downlink::Notice {
            notice: rebond_wire::Notice::Draining,
            seconds: deadline.as_secs().try_into().unwrap_or(u32::MAX),
        };
        for s in &live {
            s.notify(notice.encode());
        }
        let until = Instant::now() + deadline;
        while self.sessions.count() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let left = self.sessions.all();
        if !left.is_empty() {
            info!(sessions = left.len(), "drain deadline reached: closing the remaining sessions");
        }
        for s in &left {
            s.stop(Some(ErrorCode::GatewayShuttingDown));
        }
        // Every session's final usage record is written before the process exits.
        for _ in 0..80 {
            if self.sessions.count() == 0 && self.watchers.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        info!("drained");
    }
}

/// What the signing-in page and the person's policy ask of their session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageSettings {
    pub width: u16,
    pub height: u16,
    pub keyboard_layout: u32,
    pub sound: rebond_rdp::SoundChannels,
}

/// `rebond check`: the directory connection, a user's groups, policy and route, and
/// whether their workstation answers RDP with a trusted certificate. Returns whether all
/// is well and the report, one finding per line, each problem with what to do.
pub async fn check(config: &Config, user: Option<&str>) -> anyhow::Result<(bool, Vec<String>)> {
    let mut report = Vec::new();
    let store = open_store(&config.data_dir)?;
    let directory = match config.directory.as_ref().map(active_directory).transpose() {
        Ok(d) => d,
        Err(e) => {
            report.push(format!("FAIL  directory configuration: {e:#}"));
            return Ok((false, report));
        }
    };
    let (mut ok, account) = match &directory {
        Some(ad) => ad.check(user, &mut report).await,
        None => {
            report.push("ok    directory: the local store (no [directory] configured)".into());
            (true, None)
        }
    };
    let Some(typed) = user else { return Ok((ok, report)) };
    let (name, groups, directory_host) = match account {
        Some(a) => (a.user, a.groups, a.workstation),
        None if directory.is_some() => return Ok((false, report)),
        None => {
            let name = rebond_directory::normalize_user(typed);
            let groups = store.groups(&name).unwrap_or_default();
            (name, groups, None)
        }
    };
    let policy = rebond_policy::policy_for(&config.policies, &groups);
    report.push(format!("ok    policy: {}", policy.map_or("default (no policy names their groups)", |p| p.name.as_str())));
    let route = match routing::route_override(config, &store, &name) {
        Ok(Some(r)) => Some((r, "the route table")),
        Ok(None) => directory_host
            .as_deref()
            .zip(config.directory.as_ref())
            .and_then(|(h, d)| routing::directory_route(d, h).ok())
            .map(|r| (r, "the directory")),
        Err(_) => None,
    };
    let Some((route, from)) = route else {
        report.push(format!("FAIL  no workstation for {name}: set one in the directory or with `rebond route set {name} rdp://HOST`"));
        return Ok((false, report));
    };
    report.push(format!("ok    route (from {from}): {}", route.url()));
    let trust = match &route.trust {
        Trust::CaFile(path) => match std::fs::read(path) {
            Ok(pem) => rebond_rdp::CertTrust::Ca(vec![pem]),
            Err(e) => {
                report.push(format!("FAIL  cannot read the workstation CA file {path}: {e}"));
                return Ok((false, report));
            }
        },
        Trust::Pinned(fp) => rebond_rdp::CertTrust::pinned(fp).unwrap_or(rebond_rdp::CertTrust::Pinned([0; 32])),
        Trust::Insecure => rebond_rdp::CertTrust::InsecureAcceptAny,
    };
    match rebond_rdp::check_workstation(&route.host, route.port, trust, std::time::Duration::from_secs(10)).await {
        Ok(der) => report.push(format!("ok    workstation answers RDP; certificate {} trusted", rebond_rdp::fingerprint_of_der(&der))),
        Err(e) => {
            ok = false;
            report.push(format!("FAIL  workstation: {e}"));
            report.push(match e.code() {
                ErrorCode::WorkstationCertificateUntrusted => "      its certificate is not trusted: check workstation_ca_file (or the route's pin), and that the certificate names the host".into(),
                _ => "      is it switched on, on the network, with remote desktop enabled, and port open from the gateway?".into(),
            });
        }
    }
    Ok((ok, report))
}

/// Sign-in passwords pass through this process: a crash must not write them to a core
/// file, and other processes of the same user must not read its memory.
fn no_core_dumps() {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on this process with valid arguments.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) == 0 && libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 };
    if !ok {
        warn!(error = %std::io::Error::last_os_error(), "cannot turn off core dumps");
    }
}

/// Each password check takes 19 MiB (Argon2id). glibc raises its mmap threshold after
/// such a block is freed and then keeps the next ones in each thread's arena: 19 MiB
/// resident per thread that ever checked a password. A fixed threshold gives large
/// blocks back to the system when they are freed.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before the serving starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Opens the Active Directory described by the configuration.
fn active_directory(d: &config::DirectorySettings) -> anyhow::Result<rebond_directory::ad::ActiveDirectory> {
    let ca_pem = std::fs::read(&d.ca_file).with_context(|| format!("cannot read directory.ca_file {}", d.ca_file.display()))?;
    let service_account = match (&d.service_account, &d.service_password_file) {
        (Some(name), Some(file)) => {
            let pw = std::fs::read_to_string(file).with_context(|| format!("cannot read directory.service_password_file {}", file.display()))?;
            Some((name.clone(), Zeroizing::new(pw.trim_end_matches(['\n', '\r']).to_owned())))
        }
        _ => None,
    };
    if d.workstation_insecure_skip_verify {
        warn!("directory-routed workstations are not verified (workstation_insecure_skip_verify)");
    }
    let settings = rebond_directory::ad::AdSettings {
        servers: d.servers.clone(),
        ca_pem,
        netbios_domain: d.netbios_domain.clone(),
        upn_suffix: d.upn_suffix.clone(),
        base_dn: d.base_dn.clone(),
        allowed_groups: d.allowed_groups.clone(),
        workstation_attribute: d.workstation_attribute.clone(),
        service_account,
        connect_timeout: std::time::Duration::from_secs(d.connect_timeout_seconds),
        operation_timeout: std::time::Duration::from_secs(d.operation_timeout_seconds),
    };
    rebond_directory::ad::ActiveDirectory::new(settings).context("directory.ca_file")
}

/// Who workers run as: the configured account, `nobody` for a gateway running as
/// root, or the gateway's own user (logged: the separation then rests on the sandbox).
fn worker_launch(config: &Config, exe: PathBuf) -> anyhow::Result<sessions::WorkerLaunch> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let account = match (&config.worker.user, root) {
        (Some(name), true) => Some(account(name)?),
        (None, true) => Some(account("nobody")?),
        (Some(name), false) => {
            warn!(worker_user = %name, "the gateway is not root: workers run as the gateway's user, not as worker.user");
            None
        }
        (None, false) => None,
    };
    if let Some((uid, _)) = account {
        info!(uid, "bounce workers run as an unprivileged account");
    }
    let cpu = match config.worker.cpu_percent {
        0 => None,
        percent => match cgroup::Hierarchy::detect(std::path::Path::new("/sys/fs/cgroup")) {
            Ok(hierarchy) => {
                info!(percent, ?hierarchy, "each bounce worker gets a CPU quota");
                Some((hierarchy, percent))
            }
            Err(error) => {
                warn!(%error, "bounce workers get no CPU quota here (they keep a lower priority than the gateway)");
                None
            }
        },
    };
    Ok(sessions::WorkerLaunch { exe, account, memory_mib: config.worker.memory_mib, cpu })
}

/// The uid and gid of an account, from the system's user database.
fn account(name: &str) -> anyhow::Result<(u32, u32)> {
    let c_name = std::ffi::CString::new(name).context("worker.user contains a NUL byte")?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`.
    let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        anyhow::bail!("worker.user: no account named {name:?} on this system (create it, or name another)");
    }
    if pwd.pw_uid == 0 {
        anyhow::bail!("worker.user: {name:?} is root; workers must run as an unprivileged account");
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

/// Appends one audit record; a failure is logged (the session goes on).
pub async fn write_audit(state: &rebond_state::State, node: &str, kind: &str, user: &str, detail: &serde_json::Value) {
    if let Err(error) = state.audit(unix_now(), node, kind, user, detail).await {
        warn!(%error, kind, "cannot write an audit record");
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
