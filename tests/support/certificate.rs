//! A self-signed certificate for 127.0.0.1 made by openssl at test time (`tls.crt`,
//! `tls.key` in a directory of its own), removed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Certificate {
    pub dir: PathBuf,
}

impl Certificate {
    /// `tag` names the directory (one per test binary and tag).
    pub fn generate(tag: &str) -> Certificate {
        let dir = std::env::temp_dir().join(format!("bearer-guard-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.join("tls.key"))
            .arg("-out")
            .arg(dir.join("tls.crt"))
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl could not make a certificate");
        Certificate { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
