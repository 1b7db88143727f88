//! The rustls client of `network: tls` (RFC 5425), from the shared `tls:` block: the CA bundle
//! (`caFile`, instead of the platform's roots), the client identity (`certFile` + `keyFile`),
//! `insecureSkipVerify` and the name to verify (`serverName`, else the address's host). The ring
//! provider is ours, whatever the process installed as default.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;

use crate::sink::kind::Problem;
use crate::sink::tls::{TlsConfig, read_certificates, read_private_key};

/// The client configuration, every unreadable file or unusable setting reported by its key.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, Vec<Problem>> {
    let mut problems = Vec::new();
    let roots = match &tls.ca_file {
        Some(ca) if !tls.insecure_skip_verify => match read_certificates(ca) {
            Ok(certs) => {
                let mut roots = RootCertStore::empty();
                let (_, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 {
                    problems.push((
                        "tls.caFile",
                        format!("{}: {ignored} certificate(s) unusable", ca.display()),
                    ));
                }
                Some(roots)
            }
            Err(why) => {
                problems.push(("tls.caFile", why));
                None
            }
        },
        _ => None,
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certificates(cert).map_err(|why| problems.push(("tls.certFile", why)));
            let key = read_private_key(key)
                .map_err(|why| problems.push(("tls.keyFile", why)))
                .and_then(|pem| {
                    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                        problems.push(("tls.keyFile", format!("{}: {e}", key.display())))
                    })
                });
            match (certs, key) {
                (Ok(c), Ok(k)) => Some((c, k)),
                _ => None,
            }
        }
        _ => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![("tls", format!("TLS versions: {e}"))])?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else if let Some(roots) = roots {
        builder.with_root_certificates(roots)
    } else {
        builder
            .with_platform_verifier()
            .map_err(|e| vec![("tls", format!("the system's certificate roots: {e}"))])?
    };
    let config = match identity {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| {
            let (cert, key) = (
                tls.cert_file.as_deref().unwrap_or_else(|| "".as_ref()),
                tls.key_file.as_deref().unwrap_or_else(|| "".as_ref()),
            );
            vec![(
                "tls.certFile",
                format!("{} with {}: {e}", cert.display(), key.display()),
            )]
        })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name the server's certificate is verified against: `serverName`, else `host` (a DNS name
/// or an IP address).
pub fn server_name(tls: &TlsConfig, host: &str) -> Result<ServerName<'static>, String> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("{name:?} is neither a DNS name nor an IP address: {e}"))
}

/// `insecureSkipVerify`: any certificate for any name, as Go's `InsecureSkipVerify` (the handshake
/// signatures are still checked, so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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
