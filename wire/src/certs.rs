//! A cluster's certificates for mutual peer TLS: a CA made for one run ([`ClusterCa`]) and, per
//! node, a certificate naming the node's id and address, with its private key.
//!
//! A node's id is in its certificate as the DNS name [`peer_name`]`(id)`, so that a receiver
//! can check an envelope's claimed sender against the certificate its connection presented, and
//! a sender can check that it reached the node it dialled. The node's IP address is there too,
//! for tools that verify a host. Certificates never expire within any clock a run can set
//! (rcgen's default validity, 1975 to 4096): clock faults move nodes' clocks by hours or years.
//!
//! The CA's key lives in memory only; node keys are files (a node reads its own at every start),
//! removed at the end of the run ([`ClusterCa::remove_keys`]).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The DNS name that stands for node `id` in certificates.
///
/// # Examples
/// ```
/// assert_eq!(ordeal_wire::certs::peer_name(3), "node-3.peer.ordeal");
/// ```
pub fn peer_name(id: u64) -> String {
    format!("node-{id}.peer.ordeal")
}

/// One node's credential files, as `ordeal-broker serve --tls-ca --tls-cert --tls-key` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// The cluster CA's certificate (PEM).
    pub ca: PathBuf,
    /// The node's certificate (PEM).
    pub cert: PathBuf,
    /// The node's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A certificate authority for one cluster, writing its files under one directory.
#[derive(Clone)]
pub struct ClusterCa {
    dir: PathBuf,
    issuer: Arc<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn tls_error(what: &str, e: rcgen::Error) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

fn write_private(path: &Path, pem: &str) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(pem.as_bytes())
}

impl ClusterCa {
    /// A new CA; its certificate is written to `dir/ca.crt` (creating `dir`).
    ///
    /// # Examples
    /// ```
    /// let dir = std::env::temp_dir().join(format!("ordeal-ca-doc-{}", std::process::id()));
    /// let ca = ordeal_wire::certs::ClusterCa::new(&dir).unwrap();
    /// let files = ca.issue(2, "127.0.0.1".parse().unwrap()).unwrap();
    /// assert!(files.cert.is_file() && files.key.is_file());
    /// ca.remove_keys().unwrap();
    /// assert!(!files.key.exists());
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn new(dir: &Path) -> io::Result<ClusterCa> {
        std::fs::create_dir_all(dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, "ordeal cluster CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let cert = params.self_signed(&key).map_err(|e| tls_error("CA certificate", e))?;
        std::fs::write(dir.join("ca.crt"), cert.pem())?;
        Ok(ClusterCa { dir: dir.to_path_buf(), issuer: Arc::new(Issuer::new(params, key)) })
    }

    /// The files of node `id` (whether issued yet or not).
    pub fn files(&self, id: u64) -> NodeFiles {
        NodeFiles {
            ca: self.dir.join("ca.crt"),
            cert: self.dir.join(format!("node-{id}.crt")),
            key: self.dir.join(format!("node-{id}.key")),
        }
    }

    /// Issues node `id` a certificate for its name and `ip`, for both ends of a connection, and
    /// writes it and its key (readable by the owner only).
    pub fn issue(&self, id: u64, ip: IpAddr) -> io::Result<NodeFiles> {
        let mut params = CertificateParams::new(vec![peer_name(id)]).map_err(|e| tls_error("node parameters", e))?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
        params.distinguished_name.push(DnType::CommonName, peer_name(id));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(|e| tls_error("node key", e))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| tls_error("node certificate", e))?;
        let files = self.files(id);
        std::fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }

    /// Issues node `id` its files unless they exist.
    pub fn ensure(&self, id: u64, ip: IpAddr) -> io::Result<NodeFiles> {
        let files = self.files(id);
        if files.cert.is_file() && files.key.is_file() {
            return Ok(files);
        }
        self.issue(id, ip)
    }

    /// Removes every node's private key (certificates stay, for the record). Idempotent.
    pub fn remove_keys(&self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "key") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

/// Whether the `ordeal-broker` at `binary` takes the peer TLS flags (builds before them do not,
/// and refuse to start when given them): its `serve --help` names `--tls-ca`.
pub fn binary_supports_tls(binary: &Path) -> bool {
    let mut cmd = std::process::Command::new(binary);
    crate::launch::output_within(cmd.args(["serve", "--help"]), None, crate::launch::ANSWER_BOUND)
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--tls-ca"))
}
