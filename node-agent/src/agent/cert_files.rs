//! The key and client certificate the agent obtained itself: `<root>/pki/node.key` and
//! `node.crt`, mode 0600.
//!
//! A renewed pair replaces the old one without ever leaving a key beside another key's
//! certificate: both are written to `node.key.new` and `node.crt.new` and synced, then
//! renamed key first, certificate second. A start after a crash between the two renames
//! finds `node.crt.new` matching `node.key` and finishes the swap; `.new` files that are
//! not a complete pair are dropped.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The node's credential files in one directory.
#[derive(Debug, Clone)]
pub struct NodeCertificateFiles {
    dir: PathBuf,
}

/// A PEM certificate and its PEM key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAndCertificate {
    /// The certificate.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

/// When a certificate is valid, and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The serial number, hex.
    pub serial: String,
}

impl NodeCertificateFiles {
    /// The files `node.key` and `node.crt` in `dir` (`<root>/pki`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `node.crt`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("node.crt")
    }

    /// `node.key`.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    fn pending(path: &Path) -> PathBuf {
        path.with_extension(format!(
            "{}.new",
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
        ))
    }

    /// The stored pair, after finishing or dropping an interrupted replacement; `None`
    /// when there is none or the key does not belong to the certificate.
    pub fn load(&self) -> std::io::Result<Option<KeyAndCertificate>> {
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let (new_cert, new_key) = (Self::pending(&cert_path), Self::pending(&key_path));
        if let Some(cert_pem) = read(&new_cert)? {
            // Both written, neither renamed: take the new pair. Key renamed: finish.
            let key = match read(&new_key)? {
                Some(key) => Some((key, true)),
                None => read(&key_path)?.map(|key| (key, false)),
            };
            match key {
                Some((key_pem, key_pending)) if key_matches(&cert_pem, &key_pem) => {
                    if key_pending {
                        std::fs::rename(&new_key, &key_path).map_err(at(&key_path))?;
                    }
                    std::fs::rename(&new_cert, &cert_path).map_err(at(&cert_path))?;
                    tracing::info!(dir = %self.dir.display(), "finished replacing the node certificate after an interruption");
                }
                _ => {
                    remove_if_there(&new_cert)?;
                    remove_if_there(&new_key)?;
                }
            }
        } else {
            remove_if_there(&new_key)?;
        }
        let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) else {
            return Ok(None);
        };
        if !key_matches(&cert_pem, &key_pem) {
            tracing::warn!(
                cert = %cert_path.display(), key = %key_path.display(),
                "the node key does not belong to the node certificate; ignoring both"
            );
            return Ok(None);
        }
        Ok(Some(KeyAndCertificate { cert_pem, key_pem }))
    }

    /// Replaces the pair (see the module docs), creating the directory if needed.
    pub fn store(&self, pair: &KeyAndCertificate) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(at(&self.dir))?;
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let (new_cert, new_key) = (Self::pending(&cert_path), Self::pending(&key_path));
        write_private(&new_key, &pair.key_pem)?;
        write_private(&new_cert, &pair.cert_pem)?;
        std::fs::rename(&new_key, &key_path).map_err(at(&key_path))?;
        std::fs::rename(&new_cert, &cert_path).map_err(at(&cert_path))?;
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(at(&self.dir))
    }
}

/// notBefore, notAfter and serial of a PEM certificate; `None` when it is not one.
pub fn validity(cert_pem: &[u8]) -> Option<Validity> {
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    let time = |t: x509_parser::time::ASN1Time| {
        let seconds = t.timestamp();
        if seconds >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
        }
    };
    Some(Validity {
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        serial: cert.raw_serial_as_string(),
    })
}

/// Whether `key_pem` is the private key of the certificate `cert_pem`.
pub fn key_matches(cert_pem: &[u8], key_pem: &[u8]) -> bool {
    let Ok(key) = std::str::from_utf8(key_pem)
        .map_err(|_| ())
        .and_then(|k| rcgen::KeyPair::from_pem(k).map_err(|_| ()))
    else {
        return false;
    };
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(cert_pem) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&block.contents) else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at(path)(e)),
    }
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(path)(e)),
        _ => Ok(()),
    }
}

/// Writes `bytes` to a new file `path`, mode 0600, synced.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    remove_if_there(path)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(at(path))?;
    file.write_all(bytes).map_err(at(path))?;
    file.sync_all().map_err(at(path))
}

/// An I/O error that names `path`.
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cn: &str) -> KeyAndCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        KeyAndCertificate {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }

    #[test]
    fn a_stored_pair_loads_back_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = NodeCertificateFiles::new(dir.path().join("pki"));
        assert_eq!(files.load().unwrap(), None);
        let (old, new) = (pair("old"), pair("new"));
        files.store(&old).unwrap();
        files.store(&new).unwrap();
        assert_eq!(files.load().unwrap(), Some(new));
        for path in [files.key_path(), files.cert_path()] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("pki")).unwrap().count(),
            2
        );
    }

    #[test]
    fn an_interrupted_replacement_never_yields_a_mismatched_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = NodeCertificateFiles::new(dir.path());
        let (old, new) = (pair("old"), pair("new"));
        let new_key = dir.path().join("node.key.new");
        let new_cert = dir.path().join("node.crt.new");

        // Crash after the key's rename: the new certificate is waiting beside it.
        files.store(&old).unwrap();
        std::fs::write(files.key_path(), &new.key_pem).unwrap();
        std::fs::write(&new_cert, &new.cert_pem).unwrap();
        assert_eq!(files.load().unwrap(), Some(new.clone()));
        assert!(!new_cert.exists());

        // Crash before any rename, both written: the new pair.
        files.store(&old).unwrap();
        std::fs::write(&new_key, &new.key_pem).unwrap();
        std::fs::write(&new_cert, &new.cert_pem).unwrap();
        assert_eq!(files.load().unwrap(), Some(new.clone()));

        // Crash while writing the certificate: the old pair, leftovers gone.
        files.store(&old).unwrap();
        std::fs::write(&new_key, &new.key_pem).unwrap();
        std::fs::write(&new_cert, &new.cert_pem[..40]).unwrap();
        assert_eq!(files.load().unwrap(), Some(old.clone()));
        assert!(!new_key.exists() && !new_cert.exists());

        // A key that is not the certificate's is no pair at all.
        std::fs::write(files.key_path(), &new.key_pem).unwrap();
        assert_eq!(files.load().unwrap(), None);
    }

    #[test]
    fn validity_reads_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["n".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        params.serial_number = Some(vec![0x0a, 0xbc].into());
        let cert = params.self_signed(&key).unwrap();
        let v = validity(cert.pem().as_bytes()).unwrap();
        assert_eq!(
            v.not_after.duration_since(v.not_before).unwrap(),
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(v.serial, "0a:bc");
        assert_eq!(validity(b"not a certificate"), None);
        assert!(key_matches(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes()
        ));
        let other = rcgen::KeyPair::generate().unwrap();
        assert!(!key_matches(
            cert.pem().as_bytes(),
            other.serialize_pem().as_bytes()
        ));
    }
}
