//! The byte pipes under a session: TCP, TLS (implicit or STARTTLS) and tunnels. No protocol
//! logic lives here.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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

/// Which IP family to connect over (OfflineIMAP's `ipv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamily {
    /// `ipv6` unset: whatever the resolver returns, in its order.
    #[default]
    Any,
    /// `ipv6 = no`: IPv4 addresses only.
    V4,
    /// `ipv6 = yes`: IPv6 addresses only.
    V6,
}

/// Which TLS versions to offer (OfflineIMAP's `ssl_version` within `tls_level`). rustls
/// speaks only TLS 1.2 and 1.3, so `tls1_1`, `tls1` and `ssl3` cannot be honoured and the
/// configuration must reject them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersions {
    /// `ssl_version` unset or `ssl23`: the best both sides have (TLS 1.2 or 1.3).
    #[default]
    Negotiate,
    /// `ssl_version = tls1_2`: exactly TLS 1.2, as Python's `PROTOCOL_TLSv1_2`.
    Tls12Only,
}

/// A TLS client certificate (`sslclientcert`, `sslclientkey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM file with the certificate (and its chain); may hold the key too.
    pub cert: PathBuf,
    /// PEM file with the private key; `None` reads the key from `cert`, as Python's
    /// `load_cert_chain(certfile, keyfile=None)` does.
    pub key: Option<PathBuf>,
}

/// Connection options beyond [`TlsSettings`]: address family, TLS versions, client
/// certificate. The default is what we did before these options existed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetOptions {
    /// IPv4, IPv6 or either.
    pub family: IpFamily,
    /// TLS protocol versions.
    pub tls_versions: TlsVersions,
    /// Client certificate authentication.
    pub client_cert: Option<ClientCert>,
    /// A proxy in front of the TCP connection (`proxy`).
    pub proxy: Option<crate::proxy::Proxy>,
    /// Ask for COMPRESS=DEFLATE after login when offered (`usecompression`).
    pub compress: bool,
}

/// A connected transport; `Box<dyn Stream>` keeps the session code independent of it.
pub struct Transport {
    stream: Box<dyn Stream>,
    timeout: Option<Duration>,
    /// Keeps a tunnel's child process alive (it is killed on drop).
    _child: Option<tokio::process::Child>,
    /// COMPRESS=DEFLATE, once negotiated.
    deflate: Option<Box<crate::compress::Deflate>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("timeout", &self.timeout)
            .field("compressed", &self.deflate.is_some())
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

/// A TCP connection to the first reachable address of `host` in the family, as Python's
/// `socket.create_connection` tries them in turn.
pub(crate) async fn tcp_stream(
    host: &str,
    port: u16,
    family: IpFamily,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let wanted = match family {
            IpFamily::Any => true,
            IpFamily::V4 => addr.is_ipv4(),
            IpFamily::V6 => addr.is_ipv6(),
        };
        if !wanted {
            continue;
        }
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        let which = match family {
            IpFamily::V4 => "IPv4 ",
            IpFamily::V6 => "IPv6 ",
            IpFamily::Any => "",
        };
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host} has no {which}address"),
        )
    }))
}

impl Transport {
    /// A plain TCP connection.
    pub async fn tcp(host: &str, port: u16, timeout: Option<Duration>) -> Result<Self, ImapError> {
        Transport::tcp_with(host, port, timeout, IpFamily::Any).await
    }

    /// A plain TCP connection over one IP family. Each resolved address of the family is
    /// tried in turn, like Python's `socket.create_connection`; the timeout covers the
    /// whole attempt.
    pub async fn tcp_with(
        host: &str,
        port: u16,
        timeout: Option<Duration>,
        family: IpFamily,
    ) -> Result<Self, ImapError> {
        let tcp = with_timeout(timeout, tcp_stream(host, port, family)).await?;
        tcp.set_nodelay(true)?;
        Ok(Transport {
            stream: Box::new(tcp),
            timeout,
            _child: None,
            deflate: None,
        })
    }

    /// A TCP connection through a proxy (`proxy`); the timeout covers reaching the
    /// proxy and its set-up of the tunnel.
    pub async fn via_proxy(
        proxy: &crate::proxy::Proxy,
        host: &str,
        port: u16,
        timeout: Option<Duration>,
        family: IpFamily,
    ) -> Result<Self, ImapError> {
        let tcp = crate::proxy::connect(proxy, host, port, timeout, family).await?;
        tcp.set_nodelay(true)?;
        Ok(Transport {
            stream: Box::new(tcp),
            timeout,
            _child: None,
            deflate: None,
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
            deflate: None,
        })
    }

    /// Wraps the stream in TLS (implicit TLS right after connecting, or after STARTTLS).
    pub async fn start_tls(self, host: &str, tls: &TlsSettings) -> Result<Self, ImapError> {
        self.start_tls_with(host, tls, &NetOptions::default()).await
    }

    /// [`Transport::start_tls`] with TLS versions and a client certificate.
    pub async fn start_tls_with(
        self,
        host: &str,
        tls: &TlsSettings,
        net: &NetOptions,
    ) -> Result<Self, ImapError> {
        let config = tls.client_config_with(net)?;
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
            deflate: self.deflate,
        })
    }

    /// From now on, compresses what is written and inflates what is read (RFC 4978),
    /// right after the server's OK to `COMPRESS DEFLATE`.
    pub(crate) fn start_compression(&mut self) {
        self.deflate = Some(Box::new(crate::compress::Deflate::new()));
    }

    /// True for a tunnel (a child process), which dropping the transport kills.
    pub fn is_tunnel(&self) -> bool {
        self._child.is_some()
    }

    /// True once COMPRESS=DEFLATE is on.
    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Reads some bytes; `Ok(0)` at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ImapError> {
        let Some(z) = self.deflate.as_mut() else {
            return with_timeout(self.timeout, self.stream.read(buf)).await;
        };
        loop {
            let n = z.inflate(buf)?;
            if n > 0 || z.ended() {
                return Ok(n);
            }
            let got = with_timeout(self.timeout, self.stream.read(z.input_space()?)).await?;
            if got == 0 {
                return Ok(0);
            }
            z.filled(got);
        }
    }

    /// Reads some bytes, waiting at most `wait` instead of the socket timeout (IDLE waits
    /// far longer than any socket timeout); `Ok(None)` when nothing came in time.
    pub async fn read_for(
        &mut self,
        buf: &mut [u8],
        wait: std::time::Duration,
    ) -> Result<Option<usize>, ImapError> {
        let Some(z) = self.deflate.as_mut() else {
            return match tokio::time::timeout(wait, self.stream.read(buf)).await {
                Ok(r) => Ok(Some(r?)),
                Err(_) => Ok(None),
            };
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = z.inflate(buf)?;
            if n > 0 || z.ended() {
                return Ok(Some(n));
            }
            // Reading is cancel-safe: compressed bytes already buffered stay for later.
            match tokio::time::timeout_at(deadline, self.stream.read(z.input_space()?)).await {
                Ok(r) => match r? {
                    0 => return Ok(Some(0)),
                    got => z.filled(got),
                },
                Err(_) => return Ok(None),
            }
        }
    }

    /// Writes all bytes and flushes (compressed and sync-flushed under COMPRESS=DEFLATE).
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), ImapError> {
        let packed;
        let bytes = match self.deflate.as_mut() {
            Some(z) => {
                packed = z.compress(buf)?;
                &packed[..]
            }
            None => buf,
        };
        let s = &mut self.stream;
        with_timeout(self.timeout, async move {
            s.write_all(bytes).await?;
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
        self.client_config_with(&NetOptions::default())
    }

    /// The rustls configuration with TLS versions and a client certificate.
    pub fn client_config_with(&self, net: &NetOptions) -> Result<rustls::ClientConfig, ImapError> {
        let provider = provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match net.tls_versions {
            TlsVersions::Negotiate => rustls::DEFAULT_VERSIONS,
            TlsVersions::Tls12Only => &[&rustls::version::TLS12],
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| ImapError::Tls(e.to_string()))?;
        let identity = match &net.client_cert {
            Some(c) => Some(load_client_cert(c)?),
            None => None,
        };
        let finish =
            |b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>| {
                match identity {
                    Some((chain, key)) => b
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| ImapError::Config(format!("TLS client certificate: {e}"))),
                    None => Ok(b.with_no_client_auth()),
                }
            };
        let fingerprints: Vec<String> = self
            .fingerprints
            .iter()
            .map(|f| f.replace(':', "").trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect();
        if fingerprints.is_empty() {
            let roots = self.roots()?;
            return finish(builder.with_root_certificates(roots));
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
        finish(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier)),
        )
    }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_cert(c: &ClientCert) -> Result<Identity, ImapError> {
    let bad = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ImapError::Config(format!("{}: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| bad(&c.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&c.cert, &e))?;
    if chain.is_empty() {
        return Err(bad(&c.cert, &"no certificate in sslclientcert"));
    }
    let key_path = c.key.as_ref().unwrap_or(&c.cert);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| bad(key_path, &e))?;
    Ok((chain, key))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{AuthMechanism, ConnectSettings, Connection, Security};
    use std::path::Path;
    use std::process::Command;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn ip_family_is_respected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let t = Some(Duration::from_secs(10));
        assert!(
            Transport::tcp_with("127.0.0.1", port, t, IpFamily::V4)
                .await
                .is_ok()
        );
        assert!(
            Transport::tcp_with("127.0.0.1", port, t, IpFamily::Any)
                .await
                .is_ok()
        );
        let e = Transport::tcp_with("127.0.0.1", port, t, IpFamily::V6)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no IPv6 address"), "{e}");
        // And the other way round when the host has IPv6 loopback at all.
        if let Ok(l6) = tokio::net::TcpListener::bind("[::1]:0").await {
            let port6 = l6.local_addr().unwrap().port();
            assert!(
                Transport::tcp_with("::1", port6, t, IpFamily::V6)
                    .await
                    .is_ok()
            );
            assert!(
                Transport::tcp_with("::1", port6, t, IpFamily::V4)
                    .await
                    .is_err()
            );
        }
    }

    /// A mock peer (no installable server sends corrupt DEFLATE): after COMPRESS both
    /// ways, it answers our compressed line with a valid compressed line, then with
    /// `garbage`, then closes.
    async fn deflate_peer(garbage: Vec<u8>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut z = crate::compress::Deflate::new();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"\r\n") {
                let n = z.inflate(&mut buf).unwrap();
                if n > 0 {
                    got.extend_from_slice(&buf[..n]);
                    continue;
                }
                let space = z.input_space().unwrap();
                let k = s.read(space).await.unwrap();
                assert!(k > 0, "client closed early");
                z.filled(k);
            }
            assert_eq!(got, b"A1 NOOP\r\n");
            let ok = z.compress(b"A1 OK done\r\n").unwrap();
            s.write_all(&ok).await.unwrap();
            s.write_all(&garbage).await.unwrap();
            s.flush().await.unwrap();
        });
        port
    }

    async fn read_all(t: &mut Transport) -> (Vec<u8>, Result<(), ImapError>) {
        let mut got = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            match t.read(&mut buf).await {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[tokio::test]
    async fn compressed_transport_round_trip_and_corrupt_input() {
        let t = Some(Duration::from_secs(20));
        // Corrupt data (reserved block type 3) after a good response: a clean error.
        let port = deflate_peer(vec![0xff; 64]).await;
        let mut tr = Transport::tcp("127.0.0.1", port, t).await.unwrap();
        tr.start_compression();
        assert!(tr.is_compressed());
        tr.write_all(b"A1 NOOP\r\n").await.unwrap();
        let (got, end) = read_all(&mut tr).await;
        assert_eq!(got, b"A1 OK done\r\n");
        let e = end.unwrap_err();
        assert!(matches!(e, ImapError::Protocol(_)), "{e}");
        // A stream cut in the middle of a block: end of stream, not a hang.
        let mut peer = crate::compress::Deflate::new();
        let half = peer.compress(&[b'x'; 5000]).unwrap();
        let port = deflate_peer(half[..half.len() / 2].to_vec()).await;
        let mut tr = Transport::tcp("127.0.0.1", port, t).await.unwrap();
        tr.start_compression();
        tr.write_all(b"A1 NOOP\r\n").await.unwrap();
        let (got, end) = read_all(&mut tr).await;
        assert!(end.is_ok(), "{end:?}");
        assert!(got.starts_with(b"A1 OK done\r\n"), "{got:?}");
        assert!(got.len() < 12 + 5000);
    }

    fn openssl(dir: &Path, args: &[&str]) -> bool {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A CA, a server certificate for localhost and a client certificate, all by openssl.
    fn make_pki(dir: &Path) -> bool {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ok = openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-subj",
                    "/CN=test ca",
                    "-days",
                    "2",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        if !ok {
            return false;
        }
        for (who, ext) in [
            (
                "srv",
                "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("cli", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(
                dir.join(format!("{who}.ext")),
                format!("basicConstraints=CA:FALSE\n{ext}"),
            )
            .unwrap();
            let key = format!("{who}.key");
            let csr = format!("{who}.csr");
            let crt = format!("{who}.crt");
            let ext = format!("{who}.ext");
            if !openssl(
                dir,
                &[
                    &["req"][..],
                    &ec,
                    &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"],
                ]
                .concat(),
            ) || !openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            ) {
                return false;
            }
        }
        true
    }

    /// A one-shot TLS echo server; `tls13_only` limits it to TLS 1.3.
    async fn tls_server(dir: &Path, tls13_only: bool) -> u16 {
        let p = provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone())
                .build()
                .unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("srv.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("srv.key")).unwrap();
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let config = rustls::ServerConfig::builder_with_provider(p)
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut buf = [0u8; 5];
                        if tls.read_exact(&mut buf).await.is_ok() {
                            let _ = tls.write_all(&buf).await;
                            let _ = tls.flush().await;
                        }
                    }
                });
            }
        });
        port
    }

    async fn echo(port: u16, dir: &Path, net: &NetOptions) -> Result<Vec<u8>, ImapError> {
        let tls = TlsSettings {
            ca: CaSource::File(dir.join("ca.crt")),
            fingerprints: Vec::new(),
        };
        let t = Transport::tcp_with(
            "localhost",
            port,
            Some(Duration::from_secs(10)),
            IpFamily::V4,
        )
        .await?;
        let mut t = t.start_tls_with("localhost", &tls, net).await?;
        t.write_all(b"hello").await?;
        let mut buf = [0u8; 5];
        let mut got = 0;
        while got < 5 {
            match t.read(&mut buf[got..]).await? {
                0 => return Err(ImapError::Tls("closed".into())),
                n => got += n,
            }
        }
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn client_certificate_and_tls_versions() {
        let tmp = tempfile::tempdir().unwrap();
        if !make_pki(tmp.path()) {
            eprintln!("openssl not usable; skipping");
            return;
        }
        let dir = tmp.path();
        let with_cert = NetOptions {
            client_cert: Some(ClientCert {
                cert: dir.join("cli.crt"),
                key: Some(dir.join("cli.key")),
            }),
            ..NetOptions::default()
        };
        let port = tls_server(dir, false).await;
        assert_eq!(echo(port, dir, &with_cert).await.unwrap(), b"hello");
        // Without a certificate the server refuses us.
        assert!(echo(port, dir, &NetOptions::default()).await.is_err());
        // Key and certificate in one file, as Python's load_cert_chain allows.
        let both = dir.join("both.pem");
        let mut pem = std::fs::read(dir.join("cli.crt")).unwrap();
        pem.extend(std::fs::read(dir.join("cli.key")).unwrap());
        std::fs::write(&both, pem).unwrap();
        let combined = NetOptions {
            client_cert: Some(ClientCert {
                cert: both,
                key: None,
            }),
            ..NetOptions::default()
        };
        assert_eq!(echo(port, dir, &combined).await.unwrap(), b"hello");
        // A missing file is a configuration error, not a panic.
        let missing = NetOptions {
            client_cert: Some(ClientCert {
                cert: dir.join("nope.crt"),
                key: None,
            }),
            ..NetOptions::default()
        };
        assert!(matches!(
            echo(port, dir, &missing).await,
            Err(ImapError::Config(_))
        ));

        // TLS 1.2 only cannot talk to a TLS 1.3-only server; negotiating can.
        let port13 = tls_server(dir, true).await;
        let tls12 = NetOptions {
            tls_versions: TlsVersions::Tls12Only,
            ..with_cert.clone()
        };
        assert!(echo(port13, dir, &tls12).await.is_err());
        assert_eq!(echo(port13, dir, &with_cert).await.unwrap(), b"hello");
        assert_eq!(echo(port, dir, &tls12).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn dovecot_over_ipv4_with_tls12_only() {
        let Some(d) = oi_testkit::Dovecot::start_or_skip("dovecot_over_ipv4_with_tls12_only")
        else {
            return;
        };
        let settings = |security, port| ConnectSettings {
            host: "127.0.0.1".into(),
            port,
            security,
            tls: TlsSettings {
                ca: CaSource::File(d.ca_cert_path()),
                fingerprints: Vec::new(),
            },
            tunnel: None,
            timeout: Some(Duration::from_secs(30)),
            user: "alice".into(),
            password: Some(oi_core::Secret::new("alicepass")),
            mechanisms: vec![AuthMechanism::Plain],
            identity: None,
            oauth2: None,
            pipeline_depth: 4,
        };
        let net = NetOptions {
            family: IpFamily::V4,
            tls_versions: TlsVersions::Tls12Only,
            client_cert: None,
            proxy: None,
            compress: false,
        };
        for (security, port) in [
            (Security::Tls, d.imaps_port()),
            (Security::StartTls, d.imap_port()),
        ] {
            let conn = Connection::open_with(&settings(security, port), &net)
                .await
                .unwrap();
            assert!(conn.has("IMAP4REV1"), "{:?}", conn.capabilities());
            conn.logout().await;
        }
        let v6 = NetOptions {
            family: IpFamily::V6,
            ..NetOptions::default()
        };
        assert!(
            Connection::open_with(&settings(Security::Tls, d.imaps_port()), &v6)
                .await
                .is_err()
        );
    }
}
