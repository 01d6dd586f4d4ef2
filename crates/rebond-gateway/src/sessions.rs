//! Live sessions: one bounce worker each, at most one browser socket attached.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rebond_wire::{Downlink, ErrorCode, Stage};
use rebond_worker::link::{self, ToWorker};
use tokio::sync::{mpsc, oneshot};

/// How long a stopping worker has to read its stop request, then to exit, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
use tracing::{info, warn};
use zeroize::Zeroizing;

/// What the socket task is told to do.
#[derive(Debug)]
pub enum Outgoing {
    /// A downlink message for the browser.
    Message(Vec<u8>),
    /// Close the socket, after telling the page why (if a reason is given).
    Close(Option<ErrorCode>),
}

/// SHA-256 of a session token: the token itself is only in the browser's cookie.
pub type TokenHash = [u8; 32];

/// The secret binding a socket to its session ([`rebond_wire::Downlink::SocketKey`]).
pub type SocketKey = [u8; rebond_wire::SOCKET_KEY_LEN];

fn new_socket_key() -> SocketKey {
    use rand::RngCore as _;
    let mut key = [0u8; rebond_wire::SOCKET_KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    key
}

/// Compares keys in constant time.
fn same_key(a: &SocketKey, b: &SocketKey) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key a page offers in its WebSocket subprotocols (`rebond.key.<hex>`), if any.
pub fn offered_socket_key(protocols: &str) -> Option<SocketKey> {
    let hex_key = protocols.split(',').find_map(|p| p.trim().strip_prefix(rebond_wire::SOCKET_KEY_PROTOCOL_PREFIX))?;
    let mut key = [0u8; rebond_wire::SOCKET_KEY_LEN];
    hex::decode_to_slice(hex_key, &mut key).ok()?;
    Some(key)
}

pub fn hash_token(token: &str) -> TokenHash {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

pub struct Session {
    pub id: u64,
    pub user: String,
    /// The worker's standard input. Whoever has something for the worker writes it
    /// there directly (a key goes from the socket task to the pipe, no task between);
    /// the lock keeps messages whole and the start request first.
    to_worker: Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    state: Mutex<SessionState>,
    /// The last keyboard or pointer input from the person.
    last_input: Mutex<Instant>,
    /// Bytes over this session's sockets, for metering.
    pub bytes_to_browser: AtomicU64,
    pub bytes_from_browser: AtomicU64,
    /// The worker was killed by its sandbox (it tried something it never does).
    pub stopped_by_sandbox: AtomicBool,
    /// The sound the person's policy allows (fixed for the session's life).
    pub sound: rebond_rdp::SoundChannels,
}

struct SessionState {
    token: TokenHash,
    socket: Option<(u64, mpsc::Sender<Outgoing>)>,
    /// The secret the attached socket was given: another socket must present it.
    socket_key: Option<SocketKey>,
    /// Whether the attached socket has had its `DesktopSize`: what the worker sent
    /// before it saw the attach is dropped, so a page always starts from a blank,
    /// correctly sized canvas.
    synced: bool,
    generation: u64,
    status: Option<Stage>,
    ended: Option<ErrorCode>,
    error_sent: bool,
}

impl Session {
    /// Writes a message to the worker (nothing happens once it is gone).
    pub async fn send(&self, msg: ToWorker) {
        let mut stdin = self.to_worker.lock().await;
        let _ = link::write_to_worker(&mut *stdin, &msg).await;
    }

    /// Ends the session: a polite stop, then a kill if the worker does not exit.
    pub fn stop(self: &Arc<Self>, reason: Option<ErrorCode>) {
        {
            let mut st = self.state.lock().unwrap();
            if st.ended.is_none() {
                st.ended = reason;
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            // A worker that reads nothing any more cannot hold its kill back.
            let _ = tokio::time::timeout(STOP_GRACE, me.send(ToWorker::Stop)).await;
            tokio::time::sleep(STOP_GRACE).await;
            if let Some(kill) = me.kill.lock().unwrap().take() {
                let _ = kill.send(());
            }
        });
    }

    pub fn ended(&self) -> Option<ErrorCode> {
        self.state.lock().unwrap().ended
    }

    /// Attaches a browser socket. While a socket is attached, a new one is accepted
    /// only with that socket's key (a page coming back after a network drop the gateway
    /// has not noticed yet), and the old one is closed; otherwise it is refused.
    /// Returns the generation, the current progress to show, and the new socket's key.
    pub fn attach(&self, tx: mpsc::Sender<Outgoing>, offered: Option<SocketKey>) -> Result<(u64, Option<Stage>, SocketKey), ErrorCode> {
        let mut st = self.state.lock().unwrap();
        if st.socket.is_some() {
            let holds_key = matches!((offered, st.socket_key), (Some(o), Some(k)) if same_key(&o, &k));
            if !holds_key {
                return Err(ErrorCode::SessionOpenElsewhere);
            }
        }
        let key = new_socket_key();
        st.socket_key = Some(key);
        st.generation += 1;
        let generation = st.generation;
        st.synced = false;
        if let Some((_, old)) = st.socket.replace((generation, tx)) {
            let _ = old.try_send(Outgoing::Close(None));
        }
        Ok((generation, st.status, key))
    }

    /// Detaches the socket of this generation; true if it was the attached one.
    pub fn detach(&self, generation: u64) -> bool {
        let mut st = self.state.lock().unwrap();
        match st.socket {
            Some((g, _)) if g == generation => {
                st.socket = None;
                st.socket_key = None;
                true
            }
            _ => false,
        }
    }

    /// The person did something (a key, the pointer): the session is not idle.
    pub fn touch(&self) {
        *self.last_input.lock().unwrap() = Instant::now();
    }

    /// How long since the person's last input.
    pub fn idle_for(&self) -> Duration {
        self.last_input.lock().unwrap().elapsed()
    }

    /// Sends a message to the attached page, if any (never blocks).
    pub fn notify(&self, msg: Vec<u8>) {
        if let Some((_, tx)) = self.state.lock().unwrap().socket.as_ref() {
            let _ = tx.try_send(Outgoing::Message(msg));
        }
    }

    /// Whether a socket came back since `generation` detached.
    pub fn reattached_since(&self, generation: u64) -> bool {
        let st = self.state.lock().unwrap();
        st.socket.is_some() || st.generation != generation
    }

    /// The socket this worker message goes to, if any.
    fn socket_for(&self, msg: &[u8]) -> Option<mpsc::Sender<Outgoing>> {
        let mut st = self.state.lock().unwrap();
        if !st.synced {
            match Downlink::tag(msg) {
                Some(t) if t == Downlink::DESKTOP_SIZE_TAG => st.synced = true,
                Some(t) if t == Downlink::STATUS_TAG || t == Downlink::ERROR_TAG => {}
                _ => return None,
            }
        }
        st.socket.as_ref().map(|(_, tx)| tx.clone())
    }
}

/// How the gateway starts bounce workers.
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    /// The `rebond` executable (run as `rebond worker`).
    pub exe: PathBuf,
    /// The unprivileged account (uid, gid) workers run as, when the gateway may switch.
    pub account: Option<(u32, u32)>,
    pub memory_mib: u64,
    /// Where each worker gets its CPU quota, and how much (percent of one core).
    pub cpu: Option<(crate::cgroup::Hierarchy, u32)>,
}

/// The live sessions of this node.
pub struct Registry {
    launch: WorkerLaunch,
    metrics: Arc<crate::metrics::Metrics>,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<TokenHash, Arc<Session>>,
    by_user: HashMap<String, Arc<Session>>,
    /// Why recently ended sessions ended, for a page that comes back to ask.
    ended: HashMap<TokenHash, (ErrorCode, Instant)>,
}

/// The result of asking for a session at sign-in.
pub enum Admission {
    /// A new worker was started.
    Started(Arc<Session>),
    /// The user's running session now belongs to this sign-in.
    TakenOver(Arc<Session>),
    AtCapacity,
}

impl Registry {
    pub fn new(launch: WorkerLaunch, metrics: Arc<crate::metrics::Metrics>) -> Arc<Self> {
        Arc::new(Self { launch, metrics, next_id: AtomicU64::new(1), inner: Mutex::new(Inner::default()) })
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().by_user.len()
    }

    pub fn by_token(&self, token: &TokenHash) -> Result<Arc<Session>, Option<ErrorCode>> {
        let inner = self.inner.lock().unwrap();
        inner.by_token.get(token).cloned().ok_or_else(|| inner.ended.get(token).map(|(c, _)| *c))
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.inner.lock().unwrap().by_user.values().cloned().collect()
    }

    /// Admits a signed-in user: takes over their running session, or starts a worker.
    pub fn admit(
        self: &Arc<Self>,
        user: &str,
        token: TokenHash,
        max_sessions: usize,
        sound: rebond_rdp::SoundChannels,
        start: impl FnOnce() -> Zeroizing<Vec<u8>>,
    ) -> std::io::Result<Admission> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(existing) = inner.by_user.get(user).cloned() {
            if existing.ended().is_none() {
                let old_socket = {
                    let mut st = existing.state.lock().unwrap();
                    let old = std::mem::replace(&mut st.token, token);
                    inner.by_token.remove(&old);
                    inner.ended.insert(old, (ErrorCode::SessionTakenOver, Instant::now()));
                    st.socket_key = None;
                    st.socket.take()
                };
                if let Some((_, tx)) = old_socket {
                    let _ = tx.try_send(Outgoing::Close(Some(ErrorCode::SessionTakenOver)));
                }
                inner.by_token.insert(token, existing.clone());
                info!(session = existing.id, %user, "session taken over by a new sign-in");
                return Ok(Admission::TakenOver(existing));
            }
        }
        if inner.by_user.len() >= max_sessions {
            return Ok(Admission::AtCapacity);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = self.spawn_worker(id, user, token, sound, start())?;
        inner.by_token.insert(token, session.clone());
        inner.by_user.insert(user.to_owned(), session.clone());
        Ok(Admission::Started(session))
    }

    fn spawn_worker(
        self: &Arc<Self>,
        id: u64,
        user: &str,
        token: TokenHash,
        sound: rebond_rdp::SoundChannels,
        start: Zeroizing<Vec<u8>>,
    ) -> std::io::Result<Arc<Session>> {
        let mut cmd = tokio::process::Command::new(&self.launch.exe);
        cmd.arg("worker")
            .arg("--session")
            .arg(id.to_string())
            .arg("--memory-mib")
            .arg(self.launch.memory_mib.to_string())
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.launch.account {
            // The standard library also drops supplementary groups when it switches.
            cmd.uid(uid).gid(gid);
        }
        // Debug builds only: the tests' way to make one worker misbehave.
        let test_fault = cfg!(debug_assertions).then_some(rebond_worker::TEST_FAULT_VAR);
        for var in ["RUST_LOG", "REBOND_LOG_FORMAT"].into_iter().chain(test_fault) {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd.spawn()?;
        let cpu_group = match (&self.launch.cpu, child.id()) {
            (Some((hierarchy, percent)), Some(pid)) => match hierarchy.limit(&format!("worker-{pid}"), pid, *percent) {
                Ok(group) => Some(group),
                Err(error) => {
                    warn!(session = id, %error, "cannot give the worker its CPU quota");
                    None
                }
            },
            _ => None,
        };
        let stdin = Arc::new(tokio::sync::Mutex::new(child.stdin.take().expect("piped")));
        // Taken before anyone else can have it: the start request goes first.
        let mut first = stdin.clone().try_lock_owned().expect("a new lock is free");
        // Buffered: a frame's messages come out of the pipe in a few reads, not two each.
        let mut stdout = tokio::io::BufReader::with_capacity(64 << 10, child.stdout.take().expect("piped"));
        let (kill_tx, kill_rx) = oneshot::channel();
        let session = Arc::new(Session {
            id,
            user: user.to_owned(),
            to_worker: stdin,
            kill: Mutex::new(Some(kill_tx)),
            last_input: Mutex::new(Instant::now()),
            bytes_to_browser: AtomicU64::new(0),
            bytes_from_browser: AtomicU64::new(0),
            stopped_by_sandbox: AtomicBool::new(false),
            sound,
            state: Mutex::new(SessionState { token, socket: None, socket_key: None, synced: false, generation: 0, status: None, ended: None, error_sent: false }),
        });
        info!(session = id, %user, pid = child.id(), "bounce worker started");
        crate::metrics::Metrics::add(&self.metrics.sessions_started, 1);

        // The start request (then wiped); the lock is released after it.
        tokio::spawn(async move {
            let mut start_msg = ToWorker::Start(start.to_vec());
            let _ = link::write_to_worker(&mut *first, &start_msg).await;
            if let ToWorker::Start(bytes) = &mut start_msg {
                zeroize::Zeroize::zeroize(bytes);
            }
            drop(start);
        });

        // Reaper: the worker's exit, or a kill after a stop that did not finish.
        let (exit_tx, exit_rx) = oneshot::channel();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            drop(cpu_group); // the group can go once the worker has exited
            let _ = exit_tx.send(status);
        });

        // Pump: worker output to the attached socket.
        let registry = self.clone();
        let s = session.clone();
        tokio::spawn(async move {
            loop {
                let msg = match link::read_from_worker(&mut stdout).await {
                    Ok(m) => m,
                    Err(_) => break,
                };
                match Downlink::decode_header(&msg) {
                    Some(Downlink::Status { stage }) => s.state.lock().unwrap().status = Some(stage),
                    Some(Downlink::Error { code }) => {
                        let mut st = s.state.lock().unwrap();
                        st.ended.get_or_insert(code);
                        st.error_sent = st.socket.is_some();
                    }
                    _ => {}
                }
                if let Some(tx) = s.socket_for(&msg) {
                    // The worker limits frames in flight, so this waits only on a slow page.
                    let _ = tx.send(Outgoing::Message(msg)).await;
                }
            }
            let status = exit_rx.await.ok().and_then(Result::ok);
            let (code, socket, error_sent) = {
                let mut st = s.state.lock().unwrap();
                let code = *st.ended.get_or_insert(ErrorCode::WorkerFailed);
                (code, st.socket.take(), st.error_sent)
            };
            if stopped_by_sandbox(status.as_ref()) {
                s.stopped_by_sandbox.store(true, Ordering::Relaxed);
                crate::metrics::Metrics::add(&registry.metrics.sandbox_violations, 1);
                warn!(session = s.id, user = %s.user, "bounce worker stopped by its sandbox: it tried a forbidden system call");
            } else if code == ErrorCode::WorkerFailed {
                crate::metrics::Metrics::add(&registry.metrics.worker_crashes, 1);
                warn!(session = s.id, ?status, "bounce worker ended without a reason");
            } else {
                info!(session = s.id, %code, "session ended");
            }
            if let Some((_, tx)) = socket {
                let _ = tx.send(Outgoing::Close((!error_sent).then_some(code))).await;
            }
            registry.forget(&s, code);
        });
        Ok(session)
    }

    /// Removes an ended session, keeping why it ended for a while.
    fn forget(&self, session: &Arc<Session>, code: ErrorCode) {
        let mut inner = self.inner.lock().unwrap();
        let token = session.state.lock().unwrap().token;
        if inner.by_token.get(&token).is_some_and(|s| Arc::ptr_eq(s, session)) {
            inner.by_token.remove(&token);
        }
        if inner.by_user.get(&session.user).is_some_and(|s| Arc::ptr_eq(s, session)) {
            inner.by_user.remove(&session.user);
        }
        let now = Instant::now();
        inner.ended.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(600));
        inner.ended.insert(token, (code, now));
    }

    /// Signs a session out by its token.
    pub fn sign_out(&self, token: &TokenHash) {
        if let Ok(s) = self.by_token(token) {
            s.stop(Some(ErrorCode::SignedOut));
        }
    }
}

fn stopped_by_sandbox(status: Option<&std::process::ExitStatus>) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::ExitStatusExt as _;
        status.and_then(|s| s.signal()) == Some(rebond_worker::sandbox::STOPPED_BY_SANDBOX_SIGNAL)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = status;
        false
    }
}
