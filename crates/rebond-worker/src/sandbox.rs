//! The worker's confinement: what a compromised worker could still do is close to nothing.
//!
//! Three layers, applied by the worker to itself (the gateway has already started it
//! as an unprivileged user with an empty environment):
//! 1. [`limit_process`], before the async runtime exists: resource limits (memory,
//!    open files, no core dump; no file-size limit, since its log may be a file), not dumpable (no `ptrace` by other
//!    workers of the same user), no new privileges, lower CPU priority than the
//!    gateway, and Landlock: the file system is read-only and limited to the system
//!    folders a host-name lookup needs; listening on TCP is denied.
//! 2. [`lock_down`], once the workstation is connected: Landlock denies every file and
//!    every new TCP connection, and a seccomp filter on every thread kills the worker
//!    if it ever spawns a process, makes a socket, listens, connects, or reaches for
//!    the kernel's debugging and administration calls. Opening a file is refused
//!    (`EACCES`) rather than fatal: the C library opens files on its own initiative
//!    (glibc's allocator reads `/sys/devices/system/cpu/online` when a new thread makes
//!    its first allocation), and a refusal there is harmless where a kill would end the
//!    person's session.
//!
//! A worker killed by the filter ends with `SIGSYS`; the gateway reports it as a
//! sandbox violation ([`STOPPED_BY_SANDBOX_SIGNAL`]).
//!
//! INVARIANT: a sandbox that cannot be set up is an error, never a silent downgrade,
//! except Landlock on kernels that lack it (logged once per worker).

use landlock::{Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr as _, RulesetCreatedAttr as _, RulesetStatus, ABI};
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
use std::collections::BTreeMap;
use tracing::warn;

/// The signal a worker dies of when it tries something its filter forbids.
pub const STOPPED_BY_SANDBOX_SIGNAL: i32 = libc::SIGSYS;

/// Folders a worker may read before it is connected (name resolution, shared libraries).
const READABLE_BEFORE_CONNECT: &[&str] = &["/etc", "/usr", "/lib", "/lib64", "/lib32", "/run/systemd/resolve"];

/// Newest Landlock ABI we know: best effort below it.
const LANDLOCK_ABI: ABI = ABI::V5;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set a resource limit: {0}")]
    Limit(std::io::Error),
    #[error("cannot set a process attribute: {0}")]
    Prctl(std::io::Error),
    #[error("cannot set Landlock rules: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("cannot build or apply the seccomp filter: {0}")]
    Seccomp(String),
}

/// Limits for one worker.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Address space, in bytes.
    pub memory_bytes: u64,
    /// Open file descriptors.
    pub open_files: u64,
    /// Added niceness (the gateway keeps priority over its workers).
    pub niceness: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 1 << 30, open_files: 64, niceness: 5 }
    }
}

/// Layer 1: call first thing in the worker process, while it has one thread.
pub fn limit_process(limits: Limits) -> Result<(), SandboxError> {
    set_limit(libc::RLIMIT_AS, limits.memory_bytes)?;
    set_limit(libc::RLIMIT_NOFILE, limits.open_files)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    prctl(libc::PR_SET_DUMPABLE, 0)?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    // SAFETY: plain syscall on this process; failure only means the priority stays.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, now.saturating_add(limits.niceness).min(19));
    }

    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::BindTcp)?
        .create()?;
    for dir in READABLE_BEFORE_CONNECT {
        if let Ok(fd) = PathFd::new(dir) {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::from_read(LANDLOCK_ABI)))?;
        }
    }
    report_landlock(ruleset.restrict_self()?.ruleset);
    Ok(())
}

/// Layer 2: call once the workstation is connected; nothing new is opened after this.
pub fn lock_down() -> Result<(), SandboxError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))?
        .create()?
        .restrict_self()?;
    report_landlock(status.ruleset);
    apply_seccomp()
}

fn report_landlock(status: RulesetStatus) {
    if status == RulesetStatus::NotEnforced {
        warn!("this kernel has no Landlock: the worker is confined by its user and seccomp only");
    }
}

/// Calls that open files: refused with `EACCES` once connected.
fn file_opening_calls() -> Vec<i64> {
    let mut calls = vec![libc::SYS_openat, libc::SYS_openat2, libc::SYS_open_by_handle_at];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_open, libc::SYS_creat]);
    calls
}

/// System calls a worker never makes once connected. Any of them kills it.
fn forbidden_calls() -> Vec<i64> {
    let mut calls = vec![
        // processes
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        // anonymous files (the way to run code without opening one)
        libc::SYS_memfd_create,
        // network
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_connect,
        // kernel administration and introspection
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_kexec_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_fork, libc::SYS_vfork]);
    calls
}

fn apply_seccomp() -> Result<(), SandboxError> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| SandboxError::Seccomp(format!("{e:?}")))?;
    let err = |e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string());

    let mut kill: BTreeMap<i64, Vec<SeccompRule>> = forbidden_calls().into_iter().map(|c| (c, vec![])).collect();
    // `clone` makes threads (allowed) or processes (forbidden).
    let new_process = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64), 0).map_err(err)?;
    kill.insert(libc::SYS_clone, vec![SeccompRule::new(vec![new_process]).map_err(err)?]);
    let kill = SeccompFilter::new(kill, SeccompAction::Allow, SeccompAction::KillProcess, arch).map_err(err)?;

    // `clone3` passes its flags in memory, out of the filter's sight: answer "not
    // supported", and the C library falls back to `clone`, which the filter can read.
    let clone3 = BTreeMap::from([(libc::SYS_clone3, vec![])]);
    let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch).map_err(err)?;

    let files: BTreeMap<i64, Vec<SeccompRule>> = file_opening_calls().into_iter().map(|c| (c, vec![])).collect();
    let files = SeccompFilter::new(files, SeccompAction::Allow, SeccompAction::Errno(libc::EACCES as u32), arch).map_err(err)?;

    for filter in [kill, clone3, files] {
        let program: seccompiler::BpfProgram = filter.try_into().map_err(err)?;
        seccompiler::apply_filter_all_threads(&program).map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), SandboxError> {
    let current = {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `l` is a valid out pointer.
        if unsafe { libc::getrlimit(resource, &mut l) } != 0 {
            return Err(SandboxError::Limit(std::io::Error::last_os_error()));
        }
        l
    };
    let value = value.min(current.rlim_max);
    let l = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: `l` is a valid rlimit; lowering a limit is always allowed.
    if unsafe { libc::setrlimit(resource, &l) } != 0 {
        return Err(SandboxError::Limit(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn prctl(option: libc::c_int, value: libc::c_ulong) -> Result<(), SandboxError> {
    // SAFETY: the options used take one integer argument.
    if unsafe { libc::prctl(option, value, 0, 0, 0) } != 0 {
        return Err(SandboxError::Prctl(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Forbidden things a compromised worker might try, for the tests that prove each is
/// stopped: all but [`ForbiddenAction::OpenFile`] kill the worker; opening a file fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenAction {
    Spawn,
    OpenFile,
    Listen,
    Connect,
}

impl ForbiddenAction {
    pub const ALL: [Self; 4] = [Self::Spawn, Self::OpenFile, Self::Listen, Self::Connect];

    /// Whether the sandbox kills the worker for it (otherwise the call fails).
    pub fn kills(self) -> bool {
        self != Self::OpenFile
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Spawn => "spawn",
            Self::OpenFile => "open-file",
            Self::Listen => "listen",
            Self::Connect => "connect",
        }
    }

    /// Tries it. Returns only if the sandbox did not kill the process (the result says
    /// whether the action itself failed).
    pub fn attempt(self) -> std::io::Result<()> {
        match self {
            Self::Spawn => std::process::Command::new("/bin/sh").arg("-c").arg("true").status().map(drop),
            Self::OpenFile => std::fs::read("/etc/hostname").map(drop),
            Self::Listen => std::net::TcpListener::bind("127.0.0.1:0").map(drop),
            Self::Connect => std::net::TcpStream::connect("127.0.0.1:9").map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    /// Each forbidden action runs in a child process (this test binary again), sandboxed.
    const CHILD_VAR: &str = "REBOND_SANDBOX_TEST_ACTION";

    #[test]
    fn sandboxed_child() {
        let Ok(action) = std::env::var(CHILD_VAR) else { return };
        limit_process(Limits::default()).unwrap();
        if action == "threads" {
            lock_down().unwrap();
            let handles: Vec<_> = (0..16).map(|i| std::thread::spawn(move || vec![i as u8; 1 << 20].len())).collect();
            let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(total, 16 << 20);
            std::process::exit(0);
        }
        if action == "none" {
            lock_down().unwrap();
            // What a worker does after lock-down still works: memory, threads, time.
            let v = vec![7u8; 64 << 20];
            let t = std::thread::spawn(move || v.iter().map(|&b| b as u64).sum::<u64>());
            assert_eq!(t.join().unwrap(), 7 * (64 << 20));
            let _ = std::time::SystemTime::now();
            std::process::exit(0);
        }
        let action = ForbiddenAction::parse(&action).unwrap();
        lock_down().unwrap();
        let r = action.attempt();
        if !action.kills() && r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
            std::process::exit(0); // refused, as intended
        }
        eprintln!("{} was not stopped: {r:?}", action.name());
        std::process::exit(3);
    }

    fn run_child(action: &str) -> std::process::ExitStatus {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sandbox::tests::sandboxed_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_VAR, action)
            .status()
            .unwrap()
    }

    #[test]
    fn every_forbidden_action_is_stopped() {
        for action in ForbiddenAction::ALL {
            let status = run_child(action.name());
            if action.kills() {
                assert_eq!(status.signal(), Some(STOPPED_BY_SANDBOX_SIGNAL), "{}: {status:?}", action.name());
            } else {
                assert_eq!(status.code(), Some(0), "{} is refused: {status:?}", action.name());
            }
        }
    }

    #[test]
    fn a_new_thread_after_lock_down_survives_the_allocator() {
        // glibc opens /sys/devices/system/cpu/online when a new thread makes a new arena.
        let status = run_child("threads");
        assert!(status.success(), "{status:?}");
    }

    #[test]
    fn allowed_work_carries_on_after_lock_down() {
        let status = run_child("none");
        assert!(status.success(), "{status:?}");
    }

    #[test]
    fn files_outside_the_system_folders_are_unreadable_before_connect() {
        // Landlock alone (no seccomp yet): the data folder of a gateway is out of reach.
        let dir = std::env::temp_dir().join(format!("rebond-sandbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), b"x").unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sandbox::tests::read_outside_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_VAR, dir.join("secret"))
            .status()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }

    #[test]
    fn read_outside_child() {
        let Ok(path) = std::env::var(CHILD_VAR) else { return };
        limit_process(Limits::default()).unwrap();
        let secret = std::fs::read(&path);
        let system = std::fs::read("/etc/hosts");
        let writable = std::fs::write("/etc/rebond-sandbox-test", b"x");
        if secret.is_err() && system.is_ok() && writable.is_err() && std::net::TcpListener::bind("127.0.0.1:0").is_err() {
            std::process::exit(0);
        }
        eprintln!("secret {secret:?} system {:?} write {writable:?}", system.map(|v| v.len()));
        std::process::exit(4);
    }
}
