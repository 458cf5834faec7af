//! [`RegionSigner`]: one region's keys and certificates, its serde form and
//! the three signing functions.
//!
//! # The `pkcs7` algorithm: DSA-2048 over SHA-1, like AWS
//!
//! AWS signs `pkcs7` with DSA over SHA-1, and the brief was to do the same
//! only if this OpenSSL 3 both signs it and lets `openssl smime -verify`
//! accept it at the default security level. Tried on Debian's OpenSSL 3.0.19
//! (default `openssl.cnf`, no crypto policy): DSA-2048 key generation takes
//! ~0.3 s, DSA/SHA-1 signing works, and `openssl smime -verify -in pkcs7
//! -inform PEM -certfile certificate -noverify` exits 0 and prints the
//! embedded document byte for byte: the default security level did not
//! reject the SHA-1 signature. The tests `tests/openssl_cli.rs` re-check exactly
//! that on every run, and `openssl cms -cmsout -print` confirms `sha1` /
//! `dsaWithSHA1` in the structure. So `pkcs7` is DSA/SHA-1.
//!
//! Systems that refuse SHA-1 signatures (RHEL's DEFAULT crypto policy, a
//! FIPS provider) would break that, so the choice is also made at run time:
//! [`RegionSigner::generate`] and deserialisation sign and verify a probe
//! document with DSA/SHA-1 in-process, and if anything fails `pkcs7` is
//! signed like `rsa2048` (RSA-2048/SHA-256) instead. Both are verified by
//! the same `openssl smime -verify -certfile` procedure because
//! [`RegionSigner::certificate_pem`] holds both certificates; clients that
//! parse `pkcs7` read the algorithm from the structure. Callers can see the
//! outcome in [`RegionSigner::pkcs7_algorithm`].
//!
//! # No certificates inside the PKCS#7
//!
//! AWS's `pkcs7` and `rsa2048` carry no certificates, and neither do ours:
//! every documented verification passes the region certificate
//! (`-certfile`, or the Go/Vault libraries' explicit `Certificates`), and
//! OpenSSL prefers passed certificates over embedded ones anyway, so an
//! embedded copy proves nothing. It would cost ~1 KB per response (~1.4 KB
//! of base64), which for responses cached per instance across a 100,000
//! instance fleet is hundreds of megabytes, and its bytes would be the only
//! part of the structure not covered by the signature.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::dsa::Dsa;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::der::DsaSha1Pkcs7;
use crate::wrap::wrap76;
use crate::{Context, IdentityError};

/// Version of the serialised form; bumped on incompatible changes.
const STORED_FORMAT: u32 = 1;
/// RSA modulus size for `signature` and `rsa2048`.
const RSA_BITS: u32 = 2048;
/// DSA modulus size for `pkcs7`.
const DSA_BITS: u32 = 2048;
/// Certificate lifetime: ~10 years.
const VALIDITY_DAYS: u32 = 3652;
/// `notBefore` is backdated this much so guests with a lagging clock can
/// still verify the chain.
const BACKDATE_SECS: i64 = 86_400;
/// Document signed to decide whether DSA/SHA-1 works here. The CR, CRLF and
/// trailing LF make the round trip also prove no line-ending conversion.
const PROBE_DOCUMENT: &[u8] = b"{\r\n  \"probe\" : \"imdsd\"\r}\n";

/// The algorithm behind [`RegionSigner::pkcs7`] (see the module docs for
/// how it is chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkcs7Algorithm {
    /// DSA-2048 over SHA-1, AWS's algorithm for `pkcs7`.
    DsaSha1,
    /// RSA-2048 over SHA-256 (the `rsa2048` key), when this OpenSSL refuses
    /// DSA/SHA-1.
    RsaSha256,
}

impl fmt::Display for Pkcs7Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DsaSha1 => "DSA/SHA-1",
            Self::RsaSha256 => "RSA/SHA-256",
        })
    }
}

/// The serialised form: plain PEM strings, so the store can keep it as JSON
/// (or any serde format) and an operator can inspect it with `openssl`.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    /// [`STORED_FORMAT`].
    format: u32,
    region: String,
    /// PKCS#8 PEM of the RSA-2048 key.
    rsa_private_key_pem: String,
    rsa_certificate_pem: String,
    /// PKCS#8 PEM of the DSA-2048 key; absent when DSA was refused at
    /// generation.
    #[serde(default)]
    dsa_private_key_pem: Option<String>,
    #[serde(default)]
    dsa_certificate_pem: Option<String>,
}

/// The keys and self-signed certificates of one region.
///
/// An RSA-2048 key signs `signature` and `rsa2048`; a DSA-2048 key signs
/// `pkcs7` (or the RSA key does, see [`Pkcs7Algorithm`]). Keys and
/// certificates are parsed once, so the signing functions only sign.
///
/// Serialisable with serde as a struct of PEM strings (private keys as
/// PKCS#8) plus a format version; deserialising checks that keys and
/// certificates belong together. `Debug` shows the region, the algorithm and
/// the RSA certificate's serial, never key material. Cheap to clone (reference
/// counted OpenSSL objects), `Send + Sync`.
#[derive(Clone)]
pub struct RegionSigner {
    stored: Stored,
    rsa_key: PKey<Private>,
    rsa_cert: X509,
    /// `Some` when `pkcs7` is DSA/SHA-1.
    dsa: Option<DsaSha1Pkcs7>,
    certificate_pem: String,
}

impl RegionSigner {
    /// Longest accepted region name: the certificate's common name
    /// `imdsd instance identity <region>` must stay within X.509's 64.
    pub const MAX_REGION_LEN: usize = 40;

    /// Generates new keys and certificates for `region`: RSA-2048, and
    /// DSA-2048 for `pkcs7` if DSA/SHA-1 signing works here (otherwise
    /// `pkcs7` uses the RSA key). Certificates are self-signed X.509 v3,
    /// subject `C=US, ST=Washington, L=Seattle, O=imdsd, OU=RSA-2048|DSA-2048,
    /// CN=imdsd instance identity <region>`, valid ~10 years from a day ago,
    /// with a random 159-bit serial.
    ///
    /// Takes about half a second (DSA parameter generation dominates); do it
    /// once per region and keep the serialised result.
    pub fn generate(region: &str) -> Result<Self, IdentityError> {
        Self::generate_with(region, true)
    }

    /// [`Self::generate`], with DSA skipped when `try_dsa` is false (the
    /// tests use this to exercise the RSA fallback).
    pub(crate) fn generate_with(region: &str, try_dsa: bool) -> Result<Self, IdentityError> {
        validate_region(region)?;
        let rsa = Rsa::generate(RSA_BITS).context("generate an RSA-2048 key")?;
        let rsa_key = PKey::from_rsa(rsa).context("wrap the RSA key")?;
        let rsa_cert = self_signed(region, "RSA-2048", &rsa_key)?;
        let dsa = if try_dsa { generate_dsa(region) } else { None };
        let (dsa_private_key_pem, dsa_certificate_pem) = match &dsa {
            Some((key, cert, _)) => (Some(private_pem(key)?), Some(certificate_pem(cert)?)),
            None => (None, None),
        };
        let stored = Stored {
            format: STORED_FORMAT,
            region: region.to_owned(),
            rsa_private_key_pem: private_pem(&rsa_key)?,
            rsa_certificate_pem: certificate_pem(&rsa_cert)?,
            dsa_private_key_pem,
            dsa_certificate_pem,
        };
        let dsa = dsa.map(|(_, _, signer)| signer);
        Self::assemble(stored, rsa_key, rsa_cert, dsa)
    }

    /// The region this signer belongs to.
    pub fn region(&self) -> &str {
        &self.stored.region
    }

    /// The algorithm [`Self::pkcs7`] signs with.
    pub fn pkcs7_algorithm(&self) -> Pkcs7Algorithm {
        if self.dsa.is_some() { Pkcs7Algorithm::DsaSha1 } else { Pkcs7Algorithm::RsaSha256 }
    }

    /// The PEM certificates users verify with: the RSA certificate first, so
    /// `openssl x509 -pubkey -noout -in certificate` yields the key that
    /// checks [`Self::signature`], then the DSA certificate if there is one.
    /// `openssl smime -verify ... -certfile certificate` picks the right one
    /// for `pkcs7` and `rsa2048` by issuer and serial.
    pub fn certificate_pem(&self) -> String {
        self.certificate_pem.clone()
    }

    /// `signature`: base64 (76-character lines) of the raw RSA PKCS#1 v1.5
    /// signature over SHA-256 of exactly `document`.
    pub fn signature(&self, document: &[u8]) -> Result<String, IdentityError> {
        let mut signer =
            Signer::new(MessageDigest::sha256(), &self.rsa_key).context("start an RSA/SHA-256 signature")?;
        signer.update(document).context("sign the document")?;
        let signature = signer.sign_to_vec().context("sign the document")?;
        Ok(base64_lines(&signature))
    }

    /// `pkcs7`: base64 (76-character lines) of DER PKCS#7 `SignedData` that
    /// embeds exactly `document` as its content, signed per
    /// [`Self::pkcs7_algorithm`], with `signingTime` from the system clock
    /// and no certificates (module docs).
    pub fn pkcs7(&self, document: &[u8]) -> Result<String, IdentityError> {
        let der = match &self.dsa {
            Some(dsa) => dsa.sign(document, unix_now()?)?,
            None => self.rsa_pkcs7_der(document)?,
        };
        Ok(base64_lines(&der))
    }

    /// `rsa2048`: like [`Self::pkcs7`] but always RSA-2048 over SHA-256.
    pub fn rsa2048(&self, document: &[u8]) -> Result<String, IdentityError> {
        Ok(base64_lines(&self.rsa_pkcs7_der(document)?))
    }

    /// RSA/SHA-256 `SignedData` by OpenSSL's `PKCS7_sign`, which picks
    /// SHA-256 (the RSA key's default digest) and adds `contentType`,
    /// `signingTime` and `messageDigest`. `BINARY` keeps the content byte for
    /// byte (no CRLF canonicalisation), `NOCERTS` leaves the certificate out,
    /// `NOSMIMECAP` drops the S/MIME capabilities attribute AWS doesn't have.
    fn rsa_pkcs7_der(&self, document: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let no_extra_certs = Stack::new().context("allocate a certificate stack")?;
        let flags = Pkcs7Flags::BINARY | Pkcs7Flags::NOCERTS | Pkcs7Flags::NOSMIMECAP;
        Pkcs7::sign(&self.rsa_cert, &self.rsa_key, &no_extra_certs, document, flags)
            .context("sign the RSA PKCS#7")?
            .to_der()
            .context("encode the RSA PKCS#7")
    }

    /// Parses and checks a stored signer.
    fn from_stored(stored: Stored) -> Result<Self, IdentityError> {
        if stored.format != STORED_FORMAT {
            return Err(IdentityError::InvalidStored("unknown format version"));
        }
        validate_region(&stored.region)?;
        let rsa_key = PKey::private_key_from_pem(stored.rsa_private_key_pem.as_bytes())
            .context("parse the stored RSA private key")?;
        if rsa_key.id() != Id::RSA || rsa_key.bits() != RSA_BITS {
            return Err(IdentityError::InvalidStored("the RSA key is not RSA-2048"));
        }
        let rsa_cert = X509::from_pem(stored.rsa_certificate_pem.as_bytes())
            .context("parse the stored RSA certificate")?;
        check_pair(&rsa_key, &rsa_cert, "the RSA certificate does not match the RSA key")?;

        let dsa = match (&stored.dsa_private_key_pem, &stored.dsa_certificate_pem) {
            (None, None) => None,
            (Some(key_pem), Some(cert_pem)) => {
                let key = PKey::private_key_from_pem(key_pem.as_bytes())
                    .context("parse the stored DSA private key")?;
                if key.id() != Id::DSA {
                    return Err(IdentityError::InvalidStored("the DSA key is not DSA"));
                }
                let cert = X509::from_pem(cert_pem.as_bytes()).context("parse the stored DSA certificate")?;
                check_pair(&key, &cert, "the DSA certificate does not match the DSA key")?;
                // Keys that load but cannot sign here (e.g. SHA-1 refused by
                // policy) fall back to RSA; they stay in `stored`.
                prepared_dsa(key, &cert)
            }
            _ => {
                return Err(IdentityError::InvalidStored(
                    "DSA key and certificate must be both present or both absent",
                ));
            }
        };
        Self::assemble(stored, rsa_key, rsa_cert, dsa)
    }

    fn assemble(
        stored: Stored,
        rsa_key: PKey<Private>,
        rsa_cert: X509,
        dsa: Option<DsaSha1Pkcs7>,
    ) -> Result<Self, IdentityError> {
        let mut certificate_pem = certificate_pem(&rsa_cert)?;
        if let Some(dsa_pem) = &stored.dsa_certificate_pem {
            let dsa_cert = X509::from_pem(dsa_pem.as_bytes()).context("parse the DSA certificate")?;
            certificate_pem.push_str(&self::certificate_pem(&dsa_cert)?);
        }
        Ok(Self { stored, rsa_key, rsa_cert, dsa, certificate_pem })
    }

    /// The prepared DSA signer, for tests that pin the signing time.
    #[cfg(test)]
    pub(crate) fn dsa(&self) -> Option<&DsaSha1Pkcs7> {
        self.dsa.as_ref()
    }
}

impl Serialize for RegionSigner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.stored.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RegionSigner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(deserializer)?;
        Self::from_stored(stored).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for RegionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let serial = |cert: &X509| {
            cert.serial_number()
                .to_bn()
                .and_then(|bn| bn.to_hex_str().map(|hex| hex.to_string()))
                .unwrap_or_else(|_| "?".to_owned())
        };
        f.debug_struct("RegionSigner")
            .field("region", &self.stored.region)
            .field("pkcs7_algorithm", &self.pkcs7_algorithm())
            .field("rsa_certificate_serial", &serial(&self.rsa_cert))
            .field("has_dsa_key", &self.stored.dsa_private_key_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Accepts names that are safe and unambiguous in a certificate subject.
fn validate_region(region: &str) -> Result<(), IdentityError> {
    let ok = !region.is_empty()
        && region.len() <= RegionSigner::MAX_REGION_LEN
        && region.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(IdentityError::InvalidRegion(region.to_owned())) }
}

/// A DSA-2048 key, its certificate and the prepared signer, or `None` if any
/// step, including the probe, fails here.
fn generate_dsa(region: &str) -> Option<(PKey<Private>, X509, DsaSha1Pkcs7)> {
    let dsa = Dsa::generate(DSA_BITS).ok()?;
    let key = PKey::from_dsa(dsa).ok()?;
    let cert = self_signed(region, "DSA-2048", &key).ok()?;
    let signer = prepared_dsa(key.clone(), &cert)?;
    Some((key, cert, signer))
}

/// Prepares DSA/SHA-1 signing and proves it works here: signs
/// [`PROBE_DOCUMENT`] and verifies it with OpenSSL's own PKCS#7 verifier,
/// which must give back the same bytes.
fn prepared_dsa(key: PKey<Private>, cert: &X509) -> Option<DsaSha1Pkcs7> {
    let signer = DsaSha1Pkcs7::new(key, cert).ok()?;
    let der = signer.sign(PROBE_DOCUMENT, unix_now().ok()?).ok()?;
    let pkcs7 = Pkcs7::from_der(&der).ok()?;
    let mut certs = Stack::new().ok()?;
    certs.push(cert.clone()).ok()?;
    let store = X509StoreBuilder::new().ok()?.build();
    let mut content = Vec::new();
    pkcs7.verify(&certs, &store, None, Some(&mut content), Pkcs7Flags::NOVERIFY).ok()?;
    (content == PROBE_DOCUMENT).then_some(signer)
}

/// A self-signed X.509 v3 certificate for `key`.
fn self_signed(region: &str, unit: &str, key: &PKey<Private>) -> Result<X509, IdentityError> {
    const STEP: &str = "build a certificate";
    let mut name = X509NameBuilder::new().context(STEP)?;
    for (nid, value) in [
        (Nid::COUNTRYNAME, "US"),
        (Nid::STATEORPROVINCENAME, "Washington"),
        (Nid::LOCALITYNAME, "Seattle"),
        (Nid::ORGANIZATIONNAME, "imdsd"),
        (Nid::ORGANIZATIONALUNITNAME, unit),
        (Nid::COMMONNAME, &format!("imdsd instance identity {region}")),
    ] {
        name.append_entry_by_nid(nid, value).context(STEP)?;
    }
    let name = name.build();

    // 159 random bits with the top one set: positive, 20 bytes, never zero.
    let mut serial = BigNum::new().context(STEP)?;
    serial.rand(159, MsbOption::ONE, false).context(STEP)?;
    let not_before = Asn1Time::from_unix(unix_now()? - BACKDATE_SECS).context(STEP)?;
    let not_after = Asn1Time::days_from_now(VALIDITY_DAYS).context(STEP)?;

    let mut builder = X509Builder::new().context(STEP)?;
    builder.set_version(2).context(STEP)?;
    let serial = serial.to_asn1_integer().context(STEP)?;
    builder.set_serial_number(&serial).context(STEP)?;
    builder.set_subject_name(&name).context(STEP)?;
    builder.set_issuer_name(&name).context(STEP)?;
    builder.set_pubkey(key).context(STEP)?;
    builder.set_not_before(&not_before).context(STEP)?;
    builder.set_not_after(&not_after).context(STEP)?;
    builder.append_extension(BasicConstraints::new().critical().build().context(STEP)?).context(STEP)?;
    builder
        .append_extension(
            KeyUsage::new().critical().digital_signature().non_repudiation().build().context(STEP)?,
        )
        .context(STEP)?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None)).context(STEP)?;
    builder.append_extension(ski).context(STEP)?;
    builder.sign(key, MessageDigest::sha256()).context("self-sign a certificate")?;
    Ok(builder.build())
}

fn check_pair(key: &PKey<Private>, cert: &X509, mismatch: &'static str) -> Result<(), IdentityError> {
    let public = cert.public_key().context("read a certificate's public key")?;
    if public.public_eq(key) { Ok(()) } else { Err(IdentityError::InvalidStored(mismatch)) }
}

fn private_pem(key: &PKey<Private>) -> Result<String, IdentityError> {
    let pem = key.private_key_to_pem_pkcs8().context("encode a private key")?;
    String::from_utf8(pem).map_err(|_| IdentityError::InvalidStored("PEM is not UTF-8"))
}

fn certificate_pem(cert: &X509) -> Result<String, IdentityError> {
    let pem = cert.to_pem().context("encode a certificate")?;
    String::from_utf8(pem).map_err(|_| IdentityError::InvalidStored("PEM is not UTF-8"))
}

fn base64_lines(bytes: &[u8]) -> String {
    wrap76(&STANDARD.encode(bytes))
}

fn unix_now() -> Result<i64, IdentityError> {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| IdentityError::Clock)?;
    i64::try_from(elapsed.as_secs()).map_err(|_| IdentityError::Clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::sign::Verifier;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// The example document of docs/protocol/categories.md#identity-document.
    const DOCUMENT: &[u8] = br#"{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "us-west-2b",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-5fb8c835",
  "instanceId" : "i-1234567890abcdef0",
  "instanceType" : "t2.micro",
  "kernelId" : null,
  "pendingTime" : "2016-11-19T16:32:11Z",
  "privateIp" : "10.158.112.84",
  "ramdiskId" : null,
  "region" : "us-west-2",
  "version" : "2017-09-30"
}"#;

    fn signer() -> &'static RegionSigner {
        static SIGNER: OnceLock<RegionSigner> = OnceLock::new();
        SIGNER.get_or_init(|| RegionSigner::generate("us-west-2").expect("generate"))
    }

    fn rsa_only() -> &'static RegionSigner {
        static SIGNER: OnceLock<RegionSigner> = OnceLock::new();
        SIGNER.get_or_init(|| RegionSigner::generate_with("eu-north-1", false).expect("generate"))
    }

    fn certs(pem: &str) -> Stack<X509> {
        let mut stack = Stack::new().expect("stack");
        for cert in X509::stack_from_pem(pem.as_bytes()).expect("certificates") {
            stack.push(cert).expect("push");
        }
        stack
    }

    fn unbase64(text: &str) -> Vec<u8> {
        STANDARD.decode(text.replace('\n', "")).expect("base64")
    }

    /// Verifies a served PKCS#7 text against `cert_pem` the way `openssl
    /// smime -verify -noverify` does and returns the embedded content.
    fn open_pkcs7(text: &str, cert_pem: &str) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let pkcs7 = Pkcs7::from_der(&unbase64(text))?;
        let store = X509StoreBuilder::new()?.build();
        let mut content = Vec::new();
        pkcs7.verify(&certs(cert_pem), &store, None, Some(&mut content), Pkcs7Flags::NOVERIFY)?;
        Ok(content)
    }

    fn verify_signature(signer: &RegionSigner, document: &[u8], signature: &str) -> bool {
        let cert = X509::from_pem(signer.certificate_pem().as_bytes()).expect("first certificate");
        let key = cert.public_key().expect("public key");
        let mut verifier = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
        verifier.update(document).expect("update");
        verifier.verify(&unbase64(signature)).unwrap_or(false)
    }

    #[test]
    fn dsa_sha1_is_available_here() {
        // The evidence for the module-level decision on this OpenSSL.
        assert_eq!(signer().pkcs7_algorithm(), Pkcs7Algorithm::DsaSha1);
        assert_eq!(X509::stack_from_pem(signer().certificate_pem().as_bytes()).expect("pem").len(), 2);
    }

    #[test]
    fn signature_verifies_with_the_first_certificate() {
        let signature = signer().signature(DOCUMENT).expect("sign");
        assert!(verify_signature(signer(), DOCUMENT, &signature));
        let mut tampered = DOCUMENT.to_vec();
        tampered[10] ^= 1;
        assert!(!verify_signature(signer(), &tampered, &signature));
    }

    #[test]
    fn signature_is_deterministic_pkcs1() {
        // PKCS#1 v1.5 has no randomness: a re-sign gives the same bytes.
        assert_eq!(signer().signature(DOCUMENT).expect("sign"), signer().signature(DOCUMENT).expect("sign"));
        assert_eq!(unbase64(&signer().signature(DOCUMENT).expect("sign")).len(), 256);
    }

    #[test]
    fn pkcs7_and_rsa2048_embed_the_document_verbatim() {
        for signer in [signer(), rsa_only()] {
            let pem = signer.certificate_pem();
            for text in [signer.pkcs7(DOCUMENT).expect("pkcs7"), signer.rsa2048(DOCUMENT).expect("rsa2048")] {
                assert_eq!(open_pkcs7(&text, &pem).expect("verifies"), DOCUMENT);
            }
        }
    }

    #[test]
    fn no_line_ending_conversion() {
        let document = b"a\nb\r\nc\rd\n\n\r\n\x00\xff end\n";
        let pem = signer().certificate_pem();
        for text in [signer().pkcs7(document).expect("pkcs7"), signer().rsa2048(document).expect("rsa2048")] {
            assert_eq!(open_pkcs7(&text, &pem).expect("verifies"), document);
            let der = unbase64(&text);
            assert!(der.windows(document.len()).any(|w| w == document), "content is stored raw");
        }
    }

    #[test]
    fn empty_document_signs() {
        let pem = signer().certificate_pem();
        assert_eq!(open_pkcs7(&signer().pkcs7(b"").expect("pkcs7"), &pem).expect("verifies"), b"");
        assert!(verify_signature(signer(), b"", &signer().signature(b"").expect("sign")));
    }

    #[test]
    fn tampered_pkcs7_fails() {
        let pem = signer().certificate_pem();
        for text in [signer().pkcs7(DOCUMENT).expect("pkcs7"), signer().rsa2048(DOCUMENT).expect("rsa2048")] {
            let mut der = unbase64(&text);
            let at = der.windows(DOCUMENT.len()).position(|w| w == DOCUMENT).expect("content") + 20;
            der[at] ^= 0x20;
            let tampered = wrap76(&STANDARD.encode(&der));
            assert!(open_pkcs7(&tampered, &pem).is_err());
            // A byte of the signature value (the last bytes of the structure).
            let mut der = unbase64(&text);
            let last = der.len() - 3;
            der[last] ^= 0x01;
            assert!(open_pkcs7(&wrap76(&STANDARD.encode(&der)), &pem).is_err());
        }
    }

    #[test]
    fn pkcs7_does_not_verify_with_another_regions_certificate() {
        let text = signer().pkcs7(DOCUMENT).expect("pkcs7");
        assert!(open_pkcs7(&text, &rsa_only().certificate_pem()).is_err());
    }

    #[test]
    fn signing_time_before_2050_is_utc_time() {
        let dsa = signer().dsa().expect("DSA");
        // 2016-11-19T16:32:11Z
        let der = dsa.sign(DOCUMENT, 1_479_573_131).expect("sign");
        assert!(der.windows(15).any(|w| w == b"\x17\x0d161119163211Z"));
        let text = wrap76(&STANDARD.encode(&der));
        assert_eq!(open_pkcs7(&text, &signer().certificate_pem()).expect("verifies"), DOCUMENT);
    }

    #[test]
    fn rsa_fallback_uses_one_certificate() {
        assert_eq!(rsa_only().pkcs7_algorithm(), Pkcs7Algorithm::RsaSha256);
        assert_eq!(X509::stack_from_pem(rsa_only().certificate_pem().as_bytes()).expect("pem").len(), 1);
    }

    #[test]
    fn serde_round_trip_keeps_keys() {
        let json = serde_json::to_string(signer()).expect("serialise");
        let restored: RegionSigner = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(restored.region(), "us-west-2");
        assert_eq!(restored.pkcs7_algorithm(), Pkcs7Algorithm::DsaSha1);
        assert_eq!(restored.certificate_pem(), signer().certificate_pem());
        let original_pem = signer().certificate_pem();
        assert!(verify_signature(signer(), DOCUMENT, &restored.signature(DOCUMENT).expect("sign")));
        assert_eq!(
            open_pkcs7(&restored.pkcs7(DOCUMENT).expect("pkcs7"), &original_pem).expect("pkcs7"),
            DOCUMENT
        );
        assert_eq!(
            open_pkcs7(&restored.rsa2048(DOCUMENT).expect("rsa2048"), &original_pem).expect("rsa2048"),
            DOCUMENT
        );
        // Stable: serialising the restored signer gives the same text.
        assert_eq!(serde_json::to_string(&restored).expect("serialise"), json);

        let json = serde_json::to_string(rsa_only()).expect("serialise");
        let restored: RegionSigner = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(restored.pkcs7_algorithm(), Pkcs7Algorithm::RsaSha256);
    }

    #[test]
    fn serialised_form_is_pem_strings() {
        let value = serde_json::to_value(signer()).expect("serialise");
        assert_eq!(value["format"], 1);
        assert_eq!(value["region"], "us-west-2");
        for field in ["rsa_private_key_pem", "dsa_private_key_pem"] {
            assert!(value[field].as_str().expect(field).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        }
        for field in ["rsa_certificate_pem", "dsa_certificate_pem"] {
            assert!(value[field].as_str().expect(field).starts_with("-----BEGIN CERTIFICATE-----\n"));
        }
    }

    #[test]
    fn inconsistent_stored_signers_are_rejected() {
        let good = serde_json::to_value(signer()).expect("serialise");
        let other = serde_json::to_value(rsa_only()).expect("serialise");
        let reject = |value: serde_json::Value, why: &str| {
            let err = serde_json::from_value::<RegionSigner>(value).expect_err(why);
            assert!(err.to_string().contains(why), "{err} should mention {why}");
        };
        let mut v = good.clone();
        v["format"] = 2.into();
        reject(v, "format version");
        let mut v = good.clone();
        v["rsa_certificate_pem"] = other["rsa_certificate_pem"].clone();
        reject(v, "does not match");
        let mut v = good.clone();
        v["dsa_certificate_pem"] = serde_json::Value::Null;
        reject(v, "both present or both absent");
        let mut v = good.clone();
        v["rsa_private_key_pem"] = good["dsa_private_key_pem"].clone();
        reject(v, "not RSA-2048");
        let mut v = good.clone();
        v["region"] = "us west 2".into();
        reject(v, "invalid region");
        let mut v = good;
        v["rsa_private_key_pem"] = "garbage".into();
        reject(v, "parse the stored RSA private key");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let debug = format!("{:?}", signer());
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(!debug.contains("BEGIN"), "{debug}");
        assert!(debug.contains("us-west-2") && debug.contains("DsaSha1"), "{debug}");
    }

    #[test]
    fn region_names_are_checked() {
        for bad in ["", "us west", "a/b", "région", &"x".repeat(41), "CN=evil,O=x"] {
            assert!(matches!(validate_region(bad), Err(IdentityError::InvalidRegion(_))), "{bad:?}");
        }
        for good in ["us-west-2", "cn-north-1", "lab", "local_1.test", &"x".repeat(40)] {
            assert!(validate_region(good).is_ok(), "{good:?}");
        }
        assert!(matches!(RegionSigner::generate("no such region"), Err(IdentityError::InvalidRegion(_))));
    }

    #[test]
    fn certificates_name_the_region() {
        for cert in X509::stack_from_pem(signer().certificate_pem().as_bytes()).expect("pem") {
            let cn = cert
                .subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .expect("CN")
                .data()
                .to_string()
                .expect("utf8");
            assert_eq!(cn, "imdsd instance identity us-west-2");
            assert_eq!(cert.serial_number().to_bn().expect("serial").num_bits(), 159);
            let ten_years = Asn1Time::days_from_now(3650).expect("time");
            assert!(cert.not_after() > ten_years);
        }
    }

    #[test]
    fn signer_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RegionSigner>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn signature_of_any_bytes_verifies(document in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let signature = signer().signature(&document).expect("sign");
            prop_assert!(verify_signature(signer(), &document, &signature));
            prop_assert!(signature.split('\n').all(|line| line.len() <= 76));
        }

        #[test]
        fn pkcs7_of_any_bytes_round_trips(document in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = signer().pkcs7(&document).expect("pkcs7");
            prop_assert_eq!(open_pkcs7(&text, &signer().certificate_pem()).expect("verifies"), document);
        }
    }
}
