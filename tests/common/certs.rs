//! Certificates made by the tests (rcgen): self-signed, for `127.0.0.1` and `localhost`, with
//! the validity a test asks for, written as PEM files.

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct TestCert {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The certificate, DER, to compare with what a handshake presents.
    pub der: Vec<u8>,
}

/// A certificate valid from a day ago for 30 days, in `dir` as `{tag}.crt` and `{tag}.key`.
pub fn self_signed(dir: &Path, tag: &str) -> TestCert {
    let now = OffsetDateTime::now_utc();
    with_validity(dir, tag, now - Duration::days(1), now + Duration::days(30))
}

/// A certificate valid from `not_before` to `not_after`.
pub fn with_validity(
    dir: &Path,
    tag: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate parameters");
    params.not_before = not_before;
    params.not_after = not_after;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("world test {tag}"));
    let key = rcgen::KeyPair::generate().expect("a key pair");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    let paths = TestCert {
        cert: dir.join(format!("{tag}.crt")),
        key: dir.join(format!("{tag}.key")),
        der: cert.der().to_vec(),
    };
    std::fs::write(&paths.cert, cert.pem()).expect("write the certificate");
    std::fs::write(&paths.key, key.serialize_pem()).expect("write the key");
    paths
}
