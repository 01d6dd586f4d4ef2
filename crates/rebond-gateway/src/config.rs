//! The gateway's configuration: embedded defaults, or a TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `rebond serve` can be told. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTPS address of the gateway.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the state (SQLite), the certificate and the key live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Sessions this node accepts at once.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// How long a session waits for its page to come back after the network drops.
    #[serde(default = "default_grace")]
    pub reconnect_grace_seconds: u64,
    /// Disconnect a page after this long without keyboard or pointer input (0: never).
    /// The workstation's own session stays open; signing in again resumes it.
    #[serde(default)]
    pub idle_timeout_seconds: u64,
    /// Keystrokes far faster than a person types (a paste or a rogue device disguised
    /// as typing): `log`, `slow` (to a person's pace; the default) or `block`.
    #[serde(default)]
    pub injected_typing: rebond_policy::TypingPolicy,
    /// On SIGTERM or `rebond drain`: how long to wait for sessions to end before
    /// closing them (match the orchestrator's termination grace period).
    #[serde(default = "default_drain_deadline")]
    pub drain_deadline_seconds: u64,
    /// How long to wait for a workstation to answer.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// How long to wait for a sleeping workstation to answer after waking it.
    #[serde(default = "default_wake_timeout")]
    pub wake_timeout_seconds: u64,
    /// Send every region losslessly (no JPEG).
    #[serde(default)]
    pub lossless_only: bool,
    /// Send scrolls and moved windows as moves of pixels the browser already has
    /// (false: as images, as before; for comparing, or to rule it out).
    #[serde(default = "yes")]
    pub detect_moves: bool,
    /// Let the page keep tiles it was sent (up to 1024, 16 MiB in the page) and draw
    /// them again when they come back, as when switching windows (false: send them again).
    #[serde(default = "yes")]
    pub tile_cache: bool,
    /// PostgreSQL shared by the nodes of a cluster (`postgres://user:password@host/db`);
    /// without it, the records stay in SQLite in `data_dir` (one node).
    #[serde(default)]
    pub database_url: Option<String>,
    /// This node's name in shared records (default: the host name).
    #[serde(default)]
    pub node_name: Option<String>,
    /// An HTTPS certificate and key (PEM); otherwise a self-signed one is made in `data_dir`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Where people sign in: the local store (default) or Active Directory.
    #[serde(default)]
    pub directory: Option<DirectorySettings>,
    /// What sessions may do, by directory (or local) group; the first match applies.
    #[serde(default)]
    pub policies: Vec<rebond_policy::SessionPolicy>,
    /// The key that seals second-factor secrets (created if missing; default
    /// `DATA_DIR/second-factor.key`). Keep it out of database backups.
    #[serde(default)]
    pub second_factor_key_file: Option<PathBuf>,
    /// Workstations the people of a group may choose from at sign-in (hot desks, a lab);
    /// elsewhere the gateway alone decides.
    #[serde(default)]
    pub workstation_choices: Vec<WorkstationChoice>,
    /// How bounce workers are confined.
    #[serde(default)]
    pub worker: WorkerSettings,
    /// Sound quality, for people whose policy allows the speaker or the microphone.
    #[serde(default)]
    pub sound: SoundSettings,
    /// Users declared here are added to (or updated in) the local store at start.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Routes declared here override the route table.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
}

/// Active Directory: people sign in with their domain account, their groups and
/// workstation come from the directory (the route table still overrides).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySettings {
    /// Only `active_directory` for now.
    pub kind: DirectoryKind,
    /// `ldaps://dc1.corp.example` (or `ldap://…`, then StartTLS), tried in order.
    pub servers: Vec<String>,
    /// The CA that issued the domain controllers' certificates (PEM).
    pub ca_file: PathBuf,
    /// NetBIOS domain (`CORP`), for `CORP\alice` and the workstation logon.
    pub netbios_domain: String,
    /// UPN suffix (`corp.example`), for `alice` and `alice@corp.example`.
    pub upn_suffix: String,
    /// Where people, groups and computers are (`DC=corp,DC=example`).
    pub base_dn: String,
    /// Only members of these groups (nested membership counts) may sign in.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The user attribute naming their workstation (a computer's DN, or a host name).
    #[serde(default = "default_workstation_attribute")]
    pub workstation_attribute: String,
    /// The RDP port of directory-routed workstations.
    #[serde(default = "default_rdp_port")]
    pub workstation_port: u16,
    /// The CA that issued the workstations' certificates (PEM)...
    #[serde(default)]
    pub workstation_ca_file: Option<PathBuf>,
    /// ...or no verification of directory-routed workstations (logged as a warning).
    #[serde(default)]
    pub workstation_insecure_skip_verify: bool,
    /// A service account (`svc-rebond@corp.example`) for `rebond check` and the lockout policy.
    #[serde(default)]
    pub service_account: Option<String>,
    /// A file holding the service account's password (readable by the gateway only).
    #[serde(default)]
    pub service_password_file: Option<PathBuf>,
    #[serde(default = "default_directory_connect_timeout")]
    pub connect_timeout_seconds: u64,
    #[serde(default = "default_directory_operation_timeout")]
    pub operation_timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    ActiveDirectory,
}

fn default_workstation_attribute() -> String {
    "msTSPrimaryDesktop".into()
}
fn default_rdp_port() -> u16 {
    3389
}
fn default_directory_connect_timeout() -> u64 {
    5
}
fn default_directory_operation_timeout() -> u64 {
    10
}

/// The confinement of bounce workers (each also confines itself: see `rebond_worker::sandbox`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// The unprivileged account workers run as when the gateway runs as root
    /// (default `nobody`). A gateway started by another user runs workers as itself.
    #[serde(default)]
    pub user: Option<String>,
    /// Address-space limit of one worker, in MiB.
    #[serde(default = "default_worker_memory")]
    pub memory_mib: u64,
    /// CPU quota of one worker, in percent of one core (a cgroup; 0: none).
    #[serde(default = "default_worker_cpu")]
    pub cpu_percent: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { user: None, memory_mib: default_worker_memory(), cpu_percent: default_worker_cpu() }
    }
}

/// Opus bitrates of sound, each way (voice is clear from 16 kbit/s; 24-32 is a good call).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundSettings {
    /// The workstation's sound to the browser, bits per second.
    #[serde(default = "default_speaker_bitrate")]
    pub speaker_bitrate: u32,
    /// The browser's microphone to the workstation, bits per second.
    #[serde(default = "default_microphone_bitrate")]
    pub microphone_bitrate: u32,
}

impl Default for SoundSettings {
    fn default() -> Self {
        Self { speaker_bitrate: default_speaker_bitrate(), microphone_bitrate: default_microphone_bitrate() }
    }
}

fn default_speaker_bitrate() -> u32 {
    32_000
}
fn default_microphone_bitrate() -> u32 {
    24_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkstationChoice {
    /// The group (local or directory, nested membership counts) offered these.
    pub group: String,
    /// `rdp://HOST[:PORT]` each.
    pub workstations: Vec<String>,
    /// The CA that issued their certificates (PEM)...
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// ...or no verification (logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// Argon2id hash in PHC form (`rebond user hash` prints one).
    pub password_hash: String,
    /// Local groups (usage by group; the directory's groups for directory users).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub user: String,
    /// `rdp://HOST[:PORT]`
    pub workstation: String,
    /// PEM file of the CA that issued the workstation's certificate.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the workstation's certificate.
    pub pin_sha256: Option<String>,
    /// Accept any certificate (logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Wake-on-LAN: the workstation's MAC address...
    #[serde(default)]
    pub wake_mac: Option<String>,
    /// ...and where the magic packet goes (default `255.255.255.255:9`).
    #[serde(default)]
    pub wake_address: Option<String>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8443".parse().expect("valid default")
}
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => Path::new(&home).join(".local/share/rebond"),
        None => PathBuf::from("/var/lib/rebond"),
    }
}
fn yes() -> bool {
    true
}
fn default_max_sessions() -> usize {
    100
}
fn default_grace() -> u64 {
    120
}
fn default_drain_deadline() -> u64 {
    600
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_wake_timeout() -> u64 {
    120
}
fn default_worker_cpu() -> u32 {
    100
}
fn default_worker_memory() -> u64 {
    1024
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("the empty configuration is valid")
    }
}

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: line {line}, column {column}: {message}")]
    Invalid { path: String, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    Rule { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.display().to_string(), error })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    (before.matches('\n').count() + 1, before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1)
                })
                .unwrap_or((1, 1));
            ConfigError::Invalid { path: path.to_owned(), line, column, message: e.message().to_owned() }
        })?;
        config.check().map_err(|message| ConfigError::Rule { path: path.to_owned(), message })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.max_sessions == 0 {
            return Err("max_sessions must be at least 1".into());
        }
        if !(1..=120).contains(&self.connect_timeout_seconds) {
            return Err("connect_timeout_seconds must be between 1 and 120".into());
        }
        for (name, bitrate) in [("sound.speaker_bitrate", self.sound.speaker_bitrate), ("sound.microphone_bitrate", self.sound.microphone_bitrate)] {
            if !(6_000..=128_000).contains(&bitrate) {
                return Err(format!("{name} must be between 6000 and 128000 bits per second (Opus)"));
            }
        }
        if self.worker.cpu_percent > 6400 {
            return Err("worker.cpu_percent must be at most 6400 (64 cores)".into());
        }
        if !(256..=65536).contains(&self.worker.memory_mib) {
            return Err("worker.memory_mib must be between 256 and 65536".into());
        }
        if let Some(d) = &self.directory {
            if d.servers.is_empty() {
                return Err("directory.servers: name at least one domain controller (ldaps://…)".into());
            }
            if let Some(s) = d.servers.iter().find(|s| !(s.starts_with("ldaps://") || s.starts_with("ldap://"))) {
                return Err(format!("directory.servers: {s:?} is not an ldaps:// or ldap:// address"));
            }
            if d.workstation_ca_file.is_some() == d.workstation_insecure_skip_verify {
                return Err("directory: say exactly one of workstation_ca_file or workstation_insecure_skip_verify = true".into());
            }
            if d.service_account.is_some() != d.service_password_file.is_some() {
                return Err("directory: service_account and service_password_file go together".into());
            }
            if !(1..=60).contains(&d.connect_timeout_seconds) || !(1..=120).contains(&d.operation_timeout_seconds) {
                return Err("directory: connect_timeout_seconds must be 1-60 and operation_timeout_seconds 1-120".into());
            }
        }
        for c in &self.workstation_choices {
            if c.ca_file.is_some() == c.insecure_skip_verify {
                return Err(format!("workstation_choices for {:?}: say exactly one of ca_file or insecure_skip_verify = true", c.group));
            }
            for w in &c.workstations {
                rebond_directory::Route::parse_url(w, rebond_directory::Trust::Insecure).map_err(|e| format!("workstation_choices for {:?}: {e}", c.group))?;
            }
        }
        if !(5..=900).contains(&self.wake_timeout_seconds) {
            return Err("wake_timeout_seconds must be between 5 and 900".into());
        }
        for r in &self.routes {
            if let Some(mac) = &r.wake_mac {
                rebond_directory::Wake::parse(mac, r.wake_address.as_deref()).map_err(|e| format!("route for {:?}: {e}", r.user))?;
            } else if r.wake_address.is_some() {
                return Err(format!("route for {:?}: wake_address needs wake_mac", r.user));
            }
            let ways = usize::from(r.ca_file.is_some()) + usize::from(r.pin_sha256.is_some()) + usize::from(r.insecure_skip_verify);
            if ways != 1 {
                return Err(format!(
                    "route for {:?}: say exactly one of ca_file, pin_sha256 or insecure_skip_verify = true",
                    r.user
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_the_embedded_default() {
        let c = Config::parse("", "x").unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.max_sessions, 100);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "listen = \"127.0.0.1:9443\"\nmax_sessions = \"many\"\n";
        let e = Config::parse(text, "gw.toml").unwrap_err().to_string();
        assert!(e.starts_with("gw.toml: line 2, column 16:"), "{e}");
        let e = Config::parse("colour = 1\n", "gw.toml").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("unknown field"), "{e}");
        let e = Config::parse("[[routes]]\nuser = \"a\"\nworkstation = \"rdp://h\"\n", "gw.toml").unwrap_err().to_string();
        assert!(e.contains("exactly one of"), "{e}");
    }
}
