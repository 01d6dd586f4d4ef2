//! A test certificate authority (openssl), for servers whose certificates the gateway
//! must verify: workstations and the directory.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate (PEM), what a client trusts.
    pub ca_file: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &format!("/CN={name}")])?;
        Ok(Self { dir: dir.to_owned(), ca_file: dir.join("ca.pem") })
    }

    /// Issues a server certificate (CA:FALSE, as rustls requires) for `sans`
    /// (`DNS:name` or `IP:address`); returns the certificate and key files.
    pub fn issue(&self, file_stem: &str, sans: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (crt, key, csr, ext) = (format!("{file_stem}.crt"), format!("{file_stem}.key"), format!("{file_stem}.csr"), format!("{file_stem}.ext"));
        let cn = sans.first().map(|s| s.split_once(':').map_or(*s, |(_, v)| v)).unwrap_or(file_stem);
        openssl(&self.dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")])?;
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n", sans.join(",")),
        )?;
        openssl(&self.dir, &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &crt, "-days", "2", "-extfile", &ext])?;
        Ok((self.dir.join(crt), self.dir.join(key)))
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl").args(args).current_dir(dir).output()?;
    anyhow::ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
