//! The byte pipes under a session: TCP, TLS (implicit or STARTTLS) and tunnels. No protocol
//! logic lives here.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ImapError;

/// A bidirectional byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where TLS trust comes from (OfflineIMAP's `sslcacertfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// Nothing configured: the system roots, unless fingerprints are given, in which case
    /// the fingerprint alone decides (as OfflineIMAP does without `sslcacertfile`).
    System,
    /// `sslcacertfile = OS-DEFAULT`: the system roots, and the fingerprint too if given.
    OsDefault,
    /// A PEM file of CA certificates, and the fingerprint too if given.
    File(PathBuf),
}

/// A connected transport; `Box<dyn Stream>` keeps the session code independent of it.
pub struct Transport {
    stream: Box<dyn Stream>,
    timeout: Option<Duration>,
    /// Keeps a tunnel's child process alive (it is killed on drop).
    _child: Option<tokio::process::Child>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ImapError> {
    match timeout {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .map_err(|_| ImapError::Timeout(d))?
            .map_err(ImapError::Io),
        None => fut.await.map_err(ImapError::Io),
    }
}

impl Transport {
    /// A plain TCP connection.
    pub async fn tcp(host: &str, port: u16, timeout: Option<Duration>) -> Result<Self, ImapError> {
        let tcp = with_timeout(timeout, tokio::net::TcpStream::connect((host, port))).await?;
        tcp.set_nodelay(true)?;
        Ok(Transport {
            stream: Box::new(tcp),
            timeout,
            _child: None,
        })
    }

    /// A tunnel: `sh -c CMD`, its stdin/stdout as the stream.
    pub fn tunnel(command: &str, timeout: Option<Duration>) -> Result<Self, ImapError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ImapError::Io(std::io::Error::other("tunnel without pipes")));
        };
        Ok(Transport {
            stream: Box::new(tokio::io::join(stdout, stdin)),
            timeout,
            _child: Some(child),
        })
    }

    /// Wraps the stream in TLS (implicit TLS right after connecting, or after STARTTLS).
    pub async fn start_tls(self, host: &str, tls: &TlsSettings) -> Result<Self, ImapError> {
        let config = tls.client_config()?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ImapError::Config(format!("bad TLS server name {host}: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = with_timeout(self.timeout, connector.connect(name, self.stream))
            .await
            .map_err(|e| match e {
                ImapError::Io(io) => ImapError::Tls(io.to_string()),
                other => other,
            })?;
        Ok(Transport {
            stream: Box::new(stream),
            timeout: self.timeout,
            _child: self._child,
        })
    }

    /// Reads some bytes; `Ok(0)` at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ImapError> {
        with_timeout(self.timeout, self.stream.read(buf)).await
    }

    /// Writes all bytes and flushes.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), ImapError> {
        let s = &mut self.stream;
        with_timeout(self.timeout, async move {
            s.write_all(buf).await?;
            s.flush().await
        })
        .await
    }

    /// Shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        let _ = Pin::new(&mut self.stream).shutdown().await;
    }
}

/// TLS trust settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Where CA certificates come from.
    pub ca: CaSource,
    /// Accepted certificate digests (hex, any case, colons allowed).
    pub fingerprints: Vec<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsSettings {
    fn roots(&self) -> Result<rustls::RootCertStore, ImapError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            CaSource::File(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ImapError::Config(format!("{}: {e}", path.display())))?;
                for c in certs {
                    let c = c.map_err(|e| ImapError::Config(format!("{}: {e}", path.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| ImapError::Config(format!("{}: {e}", path.display())))?;
                }
            }
            CaSource::System | CaSource::OsDefault => {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    // One unusable system certificate must not disable the others.
                    let _ = roots.add(c);
                }
            }
        }
        if roots.is_empty() {
            return Err(ImapError::Config(
                "no CA certificates and no server fingerprints configured".into(),
            ));
        }
        Ok(roots)
    }

    /// The rustls configuration these settings describe.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ImapError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ImapError::Tls(e.to_string()))?;
        let fingerprints: Vec<String> = self
            .fingerprints
            .iter()
            .map(|f| f.replace(':', "").trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect();
        if fingerprints.is_empty() {
            let roots = self.roots()?;
            return Ok(builder.with_root_certificates(roots).with_no_client_auth());
        }
        let chain = match self.ca {
            CaSource::System => None,
            _ => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.roots()?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| ImapError::Tls(e.to_string()))?,
            ),
        };
        let verifier = FingerprintVerifier {
            fingerprints,
            chain,
            algorithms: provider.signature_verification_algorithms,
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }
}

/// Accepts a server certificate whose digest matches a configured `cert_fingerprint`
/// (OfflineIMAP compares SHA-1/224/256/384/512 of the leaf DER), still checking the
/// handshake signatures, and the chain too when a CA source was configured.
#[derive(Debug)]
struct FingerprintVerifier {
    fingerprints: Vec<String>,
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Hex digests of a certificate with every algorithm OfflineIMAP accepts.
pub fn certificate_digests(der: &[u8]) -> Vec<String> {
    use aws_lc_rs::digest;
    [
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
        &digest::SHA224,
        &digest::SHA256,
        &digest::SHA384,
        &digest::SHA512,
    ]
    .iter()
    .map(|alg| {
        digest::digest(alg, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
    .collect()
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let digests = certificate_digests(end_entity.as_ref());
        if digests.iter().any(|d| self.fingerprints.contains(d)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint (sha256 {}) matches no configured cert_fingerprint",
                digests.get(2).map(String::as_str).unwrap_or("")
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
