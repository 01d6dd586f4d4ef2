//! A real Active Directory for the tests: Samba 4 as a domain controller on a loopback
//! address, provisioned once per address (`samba/provision.sh`, kept under
//! `/tmp/rebond-samba-IP/pristine`, never started) and started from a fresh copy of that
//! folder for each test, so lockouts and bad-password counts start from zero.
//!
//! The domain: `TEST` / `test.lan`, base `DC=test,DC=lan`, every password [`PASSWORD`].
//! Users: alice and bob (working; alice in `Call Centre Night` ⊂ `Call Centre` ⊂
//! `Rebond Users`, and `Rebond Audio`; bob directly in `Rebond Users`), carol (disabled),
//! dave (expired), erin (password expired), frank (must change password), grace (limited
//! to another computer), heidi (no logon hours), ivan (for lockout tests), svc-rebond (the
//! service account). alice's and bob's `msTSPrimaryDesktop` name the computers `ws-alice`
//! and `ws-bob`, whose `dNSHostName` is `ws-alice.test.lan` / `ws-bob.test.lan`. The
//! domain locks an account after 5 bad passwords within 10 minutes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::network::Host;
use crate::Proc;

pub const PASSWORD: &str = "Passw0rd!";
pub const NETBIOS_DOMAIN: &str = "TEST";
pub const UPN_SUFFIX: &str = "test.lan";
pub const BASE_DN: &str = "DC=test,DC=lan";
pub const SERVICE_ACCOUNT: &str = "svc-rebond@test.lan";
pub const LOCKOUT_THRESHOLD: u32 = 5;

pub struct Samba {
    pub ip: String,
    pub dir: PathBuf,
    /// The CA that issued the domain controller's certificate.
    pub ca_file: PathBuf,
    _proc: Proc,
}

impl Samba {
    /// Starts a fresh domain controller on `ip` (a loopback address such as 127.0.0.2;
    /// LDAP ports are fixed, so one per address).
    pub fn start(ip: &str) -> anyhow::Result<Self> {
        static BUILDING: Mutex<()> = Mutex::new(());
        let dir = PathBuf::from(format!("/tmp/rebond-samba-{ip}"));
        {
            let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
            if !dir.join("pristine/.complete").exists() {
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("samba/provision.sh");
                let out = Command::new("bash").arg(script).arg(&dir).arg(ip).output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "provisioning Samba failed: {}{}",
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(dir.join("provision.log")).unwrap_or_default()
                );
            }
        }
        let live = dir.join("live");
        let _ = std::fs::remove_dir_all(&live);
        let st = Command::new("cp").arg("-a").arg(dir.join("pristine")).arg(&live).status()?;
        anyhow::ensure!(st.success(), "cannot copy the pristine domain");
        let mut cmd = Command::new("samba");
        cmd.arg("-s").arg(live.join("etc/smb.conf")).args(["-F", "--debug-stdout"]);
        let proc = Proc::spawn("samba", cmd, Some(&live.join("log/samba.out")))?;
        let host = Host { netns: None, ip: ip.to_owned() };
        host.wait_for_port(636, Duration::from_secs(30))?;
        Ok(Self { ip: ip.to_owned(), ca_file: dir.join("tls/ca.pem"), dir, _proc: proc })
    }

    /// The gateway's `[directory]` section for this domain (service account included;
    /// its password in a file next to the domain).
    pub fn gateway_config(&self, allowed_groups: &[&str], workstation_port: u16, workstation_ca: &Path) -> String {
        let password_file = self.dir.join("svc.password");
        std::fs::write(&password_file, PASSWORD).expect("write the service password file");
        format!(
            "[directory]\nkind = \"active_directory\"\nservers = [\"ldaps://{ip}:636\"]\nca_file = \"{ca}\"\n\
             netbios_domain = \"{NETBIOS_DOMAIN}\"\nupn_suffix = \"{UPN_SUFFIX}\"\nbase_dn = \"{BASE_DN}\"\n\
             allowed_groups = {groups:?}\nservice_account = \"{SERVICE_ACCOUNT}\"\nservice_password_file = \"{pw}\"\n\
             workstation_port = {workstation_port}\nworkstation_ca_file = \"{wca}\"\n",
            ip = self.ip,
            ca = self.ca_file.display(),
            groups = allowed_groups,
            pw = password_file.display(),
            wca = workstation_ca.display(),
        )
    }
}

/// Makes `name` resolve to `ip` on this machine (an `/etc/hosts` line marked as the
/// tests'), as the office DNS would resolve a workstation's `dNSHostName`. Idempotent.
pub fn resolve_host(name: &str, ip: &str) -> anyhow::Result<()> {
    static HOSTS: Mutex<()> = Mutex::new(());
    let _one = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = std::fs::read_to_string("/etc/hosts")?;
    let line = format!("{ip} {name} # rebond-test");
    if hosts.lines().any(|l| l == line) {
        return Ok(());
    }
    let kept: Vec<&str> = hosts.lines().filter(|l| !(l.ends_with("# rebond-test") && l.split_whitespace().nth(1) == Some(name))).collect();
    std::fs::write("/etc/hosts", format!("{}\n{line}\n", kept.join("\n")))?;
    Ok(())
}
