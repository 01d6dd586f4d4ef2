//! The demo: a local demo workstation (FreeRDP's shadow server sharing a desktop
//! with a terminal, on loopback), a demo account routed to it, and the gateway on
//! embedded defaults. Prints the URL and the sign-in; Ctrl-C stops everything.

use std::path::PathBuf;
use std::process::Command;

use rebond_testkit::workstation::{Security, Shadow};

#[derive(clap::Parser)]
#[command(about = "Rebond's demo: a local demo workstation and the gateway on embedded defaults; prints the URL and the sign-in")]
struct Args {
    /// The `rebond` binary to run.
    #[arg(long, default_value = "rebond")]
    rebond: PathBuf,
    /// Where the gateway listens (HTTPS).
    #[arg(long, env = "REBOND_LISTEN", default_value = "127.0.0.1:8443")]
    listen: String,
}

fn main() -> anyhow::Result<()> {
    let Args { rebond, listen } = <Args as clap::Parser>::parse();
    let password = random_password();
    let data = std::env::temp_dir().join("rebond-demo");
    let _ = std::fs::remove_dir_all(&data);

    eprintln!("rebond demo: starting the demo workstation…");
    let account = "rebond-demo";
    rebond_testkit::ensure_account(account, &password)?;
    let workstation = Shadow::start_for(Security::Tls, Some(account))?;

    let run = |args: &[&str], stdin: Option<&str>| rebond_testkit::gateway::rebond(&rebond, args, stdin);
    let data_s = data.display().to_string();
    run(&["user", "add", account, "--password-stdin", "--data", &data_s], Some(&password))?;
    let fingerprint = run(&["route", "fingerprint", &workstation.url()], None)?;
    run(&["route", "set", account, &workstation.url(), "--pin", fingerprint.trim(), "--data", &data_s], None)?;

    let mut serve = Command::new(&rebond);
    serve.args(["serve", "--data", &data_s, "--listen", &listen]);
    let mut gateway = rebond_testkit::Proc::spawn("rebond serve", serve, Some(&data.join("gateway.log")))?;
    let port: u16 = listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(8443);
    rebond_testkit::wait_for_port(port, std::time::Duration::from_secs(20))?;
    let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1");
    let host = if host == "0.0.0.0" { "localhost" } else { host };

    println!();
    println!("  Rebond is running: https://{host}:{port}/");
    println!("  Sign in as  {account}  with the password  {password}");
    println!("  (the certificate is self-signed: accept it in the browser)");
    println!();
    println!("  Demo workstation: {} (a desktop with a terminal for {account})", workstation.url());
    println!("  Gateway log: {}", data.join("gateway.log").display());
    println!("  Ctrl-C stops the demo.");

    // Stay until Ctrl-C (or the gateway ends); then every guard stops what it started.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                    if gateway.exited() {
                        eprintln!("rebond demo: the gateway stopped; see {}", data.join("gateway.log").display());
                        break;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    eprintln!("rebond demo: stopping");
    gateway.terminate(std::time::Duration::from_secs(10));
    drop(workstation);
    Ok(())
}

fn random_password() -> String {
    let mut bytes = [0u8; 12];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}
