//! The cluster's certificate authority and the certificates `cox server` serves and hands
//! out, as kubeadm lays them out: `<data-dir>/pki/ca.{crt,key}`, `apiserver.{crt,key}`
//! (serving), `admin.{crt,key}` (the admin kubeconfig's client certificate, CN
//! `kubernetes-admin`, O `system:masters`).
//!
//! Made on first start and loaded afterwards; an operator may put their own files there
//! before the first start (a CA key is then only needed to issue client certificates). Keys
//! are ECDSA P-256, written mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why the PKI could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key is malformed, or signing failed.
    #[error("{what}: {source}")]
    Certificate {
        /// Which certificate or key.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// The cluster CA and the server's own certificates, loaded or made under `<dir>`.
#[derive(Debug)]
pub struct ClusterPki {
    dir: PathBuf,
    /// The CA certificate (PEM): what clients trust and what client certificates chain to.
    pub ca_pem: String,
    ca_key_pem: String,
    /// The serving certificate and key.
    pub serving: CertifiedKey,
    /// The admin client certificate and key.
    pub admin: CertifiedKey,
}

/// CN and O of the admin kubeconfig's client certificate, as kubeadm issues it.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group every request of which is allowed (Kubernetes' superuser group).
pub const MASTERS_GROUP: &str = "system:masters";

impl ClusterPki {
    /// Loads the PKI under `dir`, making what is missing: the CA, a serving certificate for
    /// `localhost`, loopback and `sans` (IPs or DNS names), and the admin client certificate.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (ca_pem, ca_key_pem) = match (read(&dir.join("ca.crt"))?, read(&dir.join("ca.key"))?) {
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                let key = KeyPair::generate().map_err(cert_err("the CA key"))?;
                let mut params = CertificateParams::default();
                params.distinguished_name = name("coxswain-ca", &[]);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                params.not_after = years_from_now(10);
                let cert = params.self_signed(&key).map_err(cert_err("the CA"))?;
                write(&dir.join("ca.key"), &key.serialize_pem())?;
                write(&dir.join("ca.crt"), &cert.pem())?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let mut pki = ClusterPki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_key_pem,
            serving: CertifiedKey {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            admin: CertifiedKey {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
        };
        pki.serving = pki.load_or_issue("apiserver", |pki| pki.issue_serving(sans))?;
        pki.admin = pki.load_or_issue("admin", |pki| {
            pki.issue_client(ADMIN_USER, &[MASTERS_GROUP.to_string()])
        })?;
        Ok(pki)
    }

    /// The service-account signing key (PKCS#8 PEM, `sa.key`), made on first use.
    pub fn service_account_key(&self) -> Result<String, PkiError> {
        let path = self.dir.join("sa.key");
        if let Some(pem) = read(&path)? {
            return Ok(pem);
        }
        let key = KeyPair::generate().map_err(cert_err("the service-account key"))?;
        write(&path, &key.serialize_pem())?;
        Ok(key.serialize_pem())
    }

    /// Where the CA certificate is (for kubeconfigs and `--certificate-authority`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A client certificate for `user` in `groups` (CN and O, as Kubernetes reads them),
    /// signed by the cluster CA, valid for a year.
    pub fn issue_client(&self, user: &str, groups: &[String]) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(user, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = years_from_now(1);
        self.sign(params, &format!("the client certificate of {user:?}"))
    }

    /// Signs a PEM certificate signing request as a client certificate valid for a year,
    /// keeping the request's subject (the caller has checked it). The request's own
    /// signature is verified.
    pub fn sign_client_request(&self, csr_pem: &str) -> Result<String, PkiError> {
        self.sign_client_request_for(csr_pem, std::time::Duration::from_secs(365 * 24 * 3600))
    }

    /// As [`Self::sign_client_request`], valid for `ttl` with kube-controller-manager's
    /// backdating ([`client_validity`]).
    pub fn sign_client_request_for(
        &self,
        csr_pem: &str,
        ttl: std::time::Duration,
    ) -> Result<String, PkiError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(cert_err("the certificate signing request"))?;
        csr.params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params.is_ca = IsCa::ExplicitNoCa;
        let (not_before, not_after) = client_validity(time::OffsetDateTime::now_utc(), ttl);
        csr.params.not_before = not_before;
        csr.params.not_after = not_after;
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(cert_err("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, ca_key).map_err(cert_err("the CA"))?;
        let cert = csr
            .signed_by(&issuer)
            .map_err(cert_err("the certificate signing request"))?;
        Ok(cert.pem())
    }

    fn issue_serving(&self, sans: &[String]) -> Result<CertifiedKey, PkiError> {
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        for san in sans {
            if !names.contains(san) {
                names.push(san.clone());
            }
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name("kube-apiserver", &[]);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(cert_err(&format!("the serving name {n:?}"))),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = years_from_now(1);
        self.sign(params, "the serving certificate")
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<CertifiedKey, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(cert_err("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, ca_key).map_err(cert_err("the CA"))?;
        let key = KeyPair::generate().map_err(cert_err(what))?;
        let cert = params.signed_by(&key, &issuer).map_err(cert_err(what))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    fn load_or_issue(
        &self,
        base: &str,
        issue: impl FnOnce(&Self) -> Result<CertifiedKey, PkiError>,
    ) -> Result<CertifiedKey, PkiError> {
        let (cert_path, key_path) = (
            self.dir.join(format!("{base}.crt")),
            self.dir.join(format!("{base}.key")),
        );
        if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
            return Ok(CertifiedKey { cert_pem, key_pem });
        }
        let issued = issue(self)?;
        write(&key_path, &issued.key_pem)?;
        write(&cert_path, &issued.cert_pem)?;
        Ok(issued)
    }
}

fn name(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for o in organizations {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn
}

/// How far a signed certificate's notBefore goes back, for clocks behind the CA's.
const BACKDATE: time::Duration = time::Duration::minutes(5);
/// Certificates shorter-lived than this keep their whole `ttl` after signing.
const SHORT: time::Duration = time::Duration::hours(8);

/// notBefore and notAfter of a certificate signed at `now` for `ttl`, as
/// kube-controller-manager's signer sets them: notBefore is backdated by 5 minutes; a
/// short-lived certificate (under 8 h) ends `ttl` after `now`, a longer one `ttl` after
/// notBefore. Unlike Kubernetes, the backdate is at most a tenth of `ttl`, so that a
/// certificate of a few minutes (`--cluster-signing-duration 40s`) is not mostly in the
/// past when issued and its holder's rotation deadline (70–90 % of notBefore→notAfter)
/// is still ahead.
pub fn client_validity(
    now: time::OffsetDateTime,
    ttl: std::time::Duration,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let ttl = time::Duration::try_from(ttl).unwrap_or(time::Duration::days(365 * 100));
    let backdate = BACKDATE.min(ttl / 10);
    let not_after = if ttl < SHORT {
        now + ttl
    } else {
        now + ttl - backdate
    };
    (now - backdate, not_after)
}

fn years_from_now(years: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(365 * years)
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `text` to `path` (mode 0600) through a temporary file, so a crash leaves either
/// nothing or the whole file.
fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    crate::apiserver::kubeconfig::write_text(path, text).map_err(io(path))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        what: what.to_string(),
        source,
    }
}
