//! The `tls:` block every network receiver shares (resmoio's keys): parsed with the loader's
//! helpers, and applied to an HTTP client with every unreadable file reported by its key.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::kind::Problem;
use crate::config::yaml::{Ctx, Fields};
use crate::telemetry::error_chain;

pub const TLS_KEYS: &[&str] = &[
    "insecureSkipVerify",
    "serverName",
    "caFile",
    "certFile",
    "keyFile",
];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The `tls` map of `f` (defaults when absent).
    pub fn parse(ctx: &mut Ctx, f: &Fields) -> TlsConfig {
        let Some(n) = f.get("tls") else {
            return TlsConfig::default();
        };
        let Some(t) = ctx.map(n, &f.path("tls"), TLS_KEYS) else {
            return TlsConfig::default();
        };
        let cfg = TlsConfig {
            insecure_skip_verify: ctx.bool(&t, "insecureSkipVerify").unwrap_or(false),
            server_name: ctx.opt_string(&t, "serverName"),
            ca_file: ctx.opt_string(&t, "caFile").map(PathBuf::from),
            cert_file: ctx.opt_string(&t, "certFile").map(PathBuf::from),
            key_file: ctx.opt_string(&t, "keyFile").map(PathBuf::from),
        };
        match (&cfg.cert_file, &cfg.key_file) {
            (Some(_), None) => ctx.error(
                &t.path("certFile"),
                t.get("certFile").map_or(0, |n| n.line),
                "certFile is set without keyFile",
            ),
            (None, Some(_)) => ctx.error(
                &t.path("keyFile"),
                t.get("keyFile").map_or(0, |n| n.line),
                "keyFile is set without certFile",
            ),
            _ => {}
        }
        if let Some(name) = &cfg.server_name
            && let Err(why) = check_server_name(name)
        {
            ctx.error(
                &t.path("serverName"),
                t.get("serverName").map_or(0, |n| n.line),
                why,
            );
        }
        cfg
    }

    /// Applies the CA bundle, the client identity and `insecureSkipVerify` to `builder`; every
    /// file that cannot be read or parsed is a problem named by its key. (`serverName` needs the
    /// endpoint: see `http::Endpoint`.)
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
        problems: &mut Vec<Problem>,
    ) -> reqwest::ClientBuilder {
        builder = builder.tls_danger_accept_invalid_certs(self.insecure_skip_verify);
        if let Some(ca) = &self.ca_file {
            // The bundle replaces the system roots, as resmoio's `caFile` does (Go's RootCAs).
            match read_certificates(ca) {
                Ok(certs) => {
                    let certs: Result<Vec<_>, _> = certs
                        .iter()
                        .map(|der| reqwest::Certificate::from_der(der))
                        .collect();
                    match certs {
                        Ok(certs) => builder = builder.tls_certs_only(certs),
                        Err(e) => problems.push(("tls.caFile", format!("{}: {e}", ca.display()))),
                    }
                }
                Err(why) => problems.push(("tls.caFile", why)),
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let certs = read_certificates(cert).map_err(|why| problems.push(("tls.certFile", why)));
            let key_pem = read_private_key(key).map_err(|why| problems.push(("tls.keyFile", why)));
            if let (Ok(_), Ok(key_pem)) = (certs, key_pem) {
                let mut pem = std::fs::read(cert).unwrap_or_default();
                pem.extend_from_slice(b"\n");
                pem.extend(key_pem);
                match reqwest::Identity::from_pem(&pem) {
                    Ok(identity) => builder = builder.identity(identity),
                    Err(e) => problems.push((
                        "tls.certFile",
                        format!(
                            "{} with {}: {}",
                            cert.display(),
                            key.display(),
                            error_chain(&e)
                        ),
                    )),
                }
            }
        }
        builder
    }
}

/// `serverName` must be a DNS name (SNI carries no IP addresses).
pub fn check_server_name(name: &str) -> Result<(), String> {
    match rustls::pki_types::ServerName::try_from(name) {
        Ok(rustls::pki_types::ServerName::DnsName(_)) => Ok(()),
        Ok(_) => Err(format!(
            "{name:?} is an IP address: write it in endpoint instead (serverName is a DNS name)"
        )),
        Err(e) => Err(format!("{name:?} is not a valid DNS name: {e}")),
    }
}

/// The PEM certificates of `path` (at least one, each a valid X.509 trust anchor).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    for (i, der) in certs.iter().enumerate() {
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| {
                format!(
                    "{}: certificate {} does not parse: {e}",
                    path.display(),
                    i + 1
                )
            })?;
    }
    Ok(certs)
}

/// The PEM text of `path` if it holds a private key.
pub fn read_private_key(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{}: no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----): {e}",
            path.display()
        )
    })?;
    Ok(pem)
}
