//! TLS with rustls (its `ring` provider): the server's certificate, loaded, checked and
//! replaceable while the server runs; and the client's trust.
//!
//! [`load_certified_key`] reads a PEM chain and key and refuses, naming the file and the
//! reason, a missing file, a file without a certificate or key, a key that does not match the
//! certificate, and a certificate outside its validity period. A [`CertSlot`] holds the
//! certificate every new handshake uses; replacing it leaves established sessions as they
//! are. [`server_config`] is TLS 1.3 only unless TLS 1.2 is allowed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The ALPN id of HTTP/1.1, which a TLS client names to be served HTTP (RFC 7301).
pub const ALPN_HTTP: &[u8] = b"http/1.1";
/// Which of the two files a [`CertError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

/// Why a certificate and key cannot serve: which file, and why, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CertError {
    /// The file at fault.
    pub file: CertFile,
    /// Its path.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The process's crypto provider for every TLS config made here: rustls's `ring` one.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificate chain at `cert` (leaf first) and the PEM private key at `key`,
/// and checks that they belong together and that the leaf is valid at `now`.
pub fn load_certified_key(
    cert: &Path,
    key: &Path,
    now: SystemTime,
) -> Result<Arc<CertifiedKey>, CertError> {
    let fail = |file, path: &Path, reason: String| CertError {
        file,
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(cert)
        .map_err(|e| fail(CertFile::Cert, cert, format!("cannot read it: {e}")))?;
    let key_pem =
        std::fs::read(key).map_err(|e| fail(CertFile::Key, key, format!("cannot read it: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            fail(
                CertFile::Cert,
                cert,
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(fail(
            CertFile::Cert,
            cert,
            "no certificate in it (a PEM file with -----BEGIN CERTIFICATE-----, leaf first)".into(),
        ));
    };
    let (not_before, not_after) = validity(leaf).ok_or_else(|| {
        fail(
            CertFile::Cert,
            cert,
            "its first certificate is not a DER X.509 certificate".into(),
        )
    })?;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now_secs > not_after {
        return Err(fail(
            CertFile::Cert,
            cert,
            format!("the certificate expired on {}", utc(not_after)),
        ));
    }
    if now_secs < not_before {
        return Err(fail(
            CertFile::Cert,
            cert,
            format!("the certificate is not valid before {}", utc(not_before)),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail(
            CertFile::Key,
            key,
            format!("no private key in it (PEM: PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| fail(CertFile::Key, key, format!("the key cannot sign: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(fail(
            CertFile::Key,
            key,
            format!(
                "the key does not match the certificate in {}",
                cert.display()
            ),
        )),
        Err(e) => Err(fail(
            CertFile::Key,
            key,
            format!("cannot check the key against the certificate: {e}"),
        )),
    }
}

/// When the leaf certificate of `key` expires: Unix seconds, and as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn expiry(key: &CertifiedKey) -> Option<(i64, String)> {
    let (_, not_after) = validity(key.cert.first()?)?;
    Some((not_after, utc(not_after)))
}

/// The certificate new handshakes use; replaced while the server runs.
pub struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for CertSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertSlot")
    }
}

impl CertSlot {
    /// A slot holding `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Arc<CertSlot> {
        Arc::new(CertSlot(RwLock::new(key)))
    }

    /// Makes `key` the one every later handshake uses.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// The certificate in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server config: TLS 1.3, and 1.2 too if `allow_tls12`; the certificate of `slot`; with
/// `http`, HTTP/1.1 offered to the clients that ask for it by ALPN (browsers do).
pub fn server_config(slot: Arc<CertSlot>, allow_tls12: bool, http: bool) -> Arc<ServerConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] = if allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(slot);
    if http {
        config.alpn_protocols = vec![ALPN_HTTP.to_vec()];
    }
    Arc::new(config)
}

/// Which servers a client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The system's certificate authorities.
    System,
    /// The certificate authorities (or self-signed certificates) in this PEM file.
    CaFile(PathBuf),
    /// Any certificate, unchecked: for tests against a self-signed certificate only.
    Insecure,
}

/// A client config trusting `trust`, TLS 1.3 and 1.2.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::System | Trust::CaFile(_) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = match trust {
                Trust::CaFile(path) => CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?,
                _ => rustls_native_certs::load_native_certs().certs,
            };
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(match trust {
                    Trust::CaFile(path) => format!("{}: no certificate in it", path.display()),
                    _ => "no certificate authority found on this system".to_string(),
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// `config`, asking the server for HTTP by ALPN: what a WebSocket client over TLS (`wss://`)
/// uses, so that a TLS port that serves frames too serves it HTTP.
pub fn for_http(config: &ClientConfig) -> Arc<ClientConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![ALPN_HTTP.to_vec()];
    Arc::new(config)
}

/// The name a client checks the server's certificate against: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|_| format!("{host:?} is not a DNS name or an IP address"))
}

/// Accepts every certificate ([`Trust::Insecure`]); signatures are still checked, so the
/// handshake itself is sound.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The leaf's validity period, as Unix seconds: `notBefore` and `notAfter` of
/// `Certificate.tbsCertificate.validity` (RFC 5280, 4.1).
fn validity(cert: &CertificateDer<'_>) -> Option<(i64, i64)> {
    let (0x30, certificate, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    rest = der(rest)?.2; // serialNumber
    rest = der(rest)?.2; // signature
    rest = der(rest)?.2; // issuer
    let (0x30, validity, _) = der(rest)? else {
        return None;
    };
    let (tag, not_before, rest) = der(validity)?;
    let not_before = der_time(tag, not_before)?;
    let (tag, not_after, _) = der(rest)?;
    Some((not_before, der_time(tag, not_after)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    if !text.is_ascii() {
        // A time is digits; the fields below are cut at byte offsets, which in other text
        // could fall inside a character.
        return None;
    }
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(
        crate::calendar::days_from_civil(year, month, day) * 86_400
            + hour * 3600
            + minute * 60
            + second,
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: i64) -> String {
    format!("{} UTC", crate::calendar::date_time(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(der_time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(der_time(0x18, b"20991231235959Z"), Some(4_102_444_799));
        assert_eq!(der_time(0x18, b"2099123123595Z"), None);
        assert_eq!(der_time(0x17, b"991331000000Z"), None);
    }

    #[test]
    fn a_time_with_characters_of_several_bytes_is_not_a_time_instead_of_a_panic() {
        // Found by fuzz/fuzz_targets/tls_front.rs: a field's byte offset inside a character.
        assert_eq!(der_time(0x17, "€123456789Z".as_bytes()), None);
        let four_byte_chars = "\u{f605d}\u{f8d40}\u{88d8c}Z";
        assert_eq!(der_time(0x17, four_byte_chars.as_bytes()), None);
        assert_eq!(der_time(0x18, "123€12345678Z".as_bytes()), None);
        // The same through a whole certificate, as load_certified_key and expiry read it.
        assert_eq!(
            validity(&certificate("491231235959Z")),
            Some((2_524_607_999, 2_524_607_999))
        );
        assert_eq!(validity(&certificate("€123456789Z")), None);
    }

    /// A certificate whose validity starts at the UTCTime `not_before` and ends on
    /// 2049-12-31, with empty fields before it.
    fn certificate(not_before: &str) -> CertificateDer<'static> {
        let der = |tag: u8, contents: &[u8]| [&[tag, contents.len() as u8][..], contents].concat();
        let validity = [
            der(0x17, not_before.as_bytes()),
            der(0x17, b"491231235959Z"),
        ]
        .concat();
        let tbs = [
            der(0x02, &[1]),
            der(0x30, &[0x06, 0x00]),
            der(0x30, &[]),
            der(0x30, &validity),
        ]
        .concat();
        CertificateDer::from(der(0x30, &der(0x30, &tbs)))
    }

    #[test]
    fn der_lengths_are_checked() {
        assert_eq!(
            der(&[0x30, 0x02, 1, 2, 9]),
            Some((0x30, &[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(der(&[0x30, 0x03, 1, 2]), None);
        assert_eq!(
            der(&[0x30, 0x81, 0x02, 1, 2]),
            Some((0x30, &[1u8, 2][..], &[][..]))
        );
        assert_eq!(der(&[0x30, 0x80]), None);
        assert_eq!(validity(&CertificateDer::from(vec![0x30, 0x00])), None);
    }

    #[test]
    fn server_names_take_hosts_and_addresses() {
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("not a host").is_err());
    }
}
