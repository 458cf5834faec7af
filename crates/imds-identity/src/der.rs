//! The DER of a PKCS#7 (RFC 2315) `SignedData` signed with DSA over SHA-1,
//! the layout AWS serves at `dynamic/instance-identity/pkcs7`.
//!
//! Why hand-written: the `openssl` crate's `Pkcs7::sign` (`PKCS7_sign`) takes
//! the digest from the key's default, which is SHA-256 for DSA in OpenSSL 3,
//! and the call that accepts a digest (`PKCS7_sign_add_signer`) is not bound;
//! reaching it through `openssl-sys` would need `unsafe`, which the workspace
//! forbids. So OpenSSL still does all the cryptography (SHA-1 digest, DSA
//! signature) and this module only lays out the bytes. Every structure is
//! checked by parsing it back with OpenSSL (`Pkcs7::verify`, `openssl smime
//! -verify`, `openssl cms -cmsout -print`) in the tests.
//!
//! The layout mirrors AWS's (decoded from a real `pkcs7` value): version 1,
//! digest algorithm `sha1` with NULL parameters, the document as `data`
//! content, no certificates, one `SignerInfo` identified by issuer and
//! serial, authenticated attributes `contentType`, `signingTime`,
//! `messageDigest`, and `dsaWithSHA1` as the signature algorithm. AWS writes
//! indefinite-length BER; this writes DER, which every BER reader accepts.

use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::x509::X509;

use crate::{Context, IdentityError};

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0]` constructed: EXPLICIT content, IMPLICIT certificates/attributes.
const TAG_CONTEXT_0: u8 = 0xA0;

/// OID 1.2.840.113549.1.7.1 `data`, full TLV.
const OID_DATA: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
/// OID 1.2.840.113549.1.7.2 `signedData`.
const OID_SIGNED_DATA: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
/// OID 1.2.840.113549.1.9.3 `contentType`.
const OID_CONTENT_TYPE: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x03];
/// OID 1.2.840.113549.1.9.4 `messageDigest`.
const OID_MESSAGE_DIGEST: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];
/// OID 1.2.840.113549.1.9.5 `signingTime`.
const OID_SIGNING_TIME: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x05];
/// AlgorithmIdentifier { 1.3.14.3.2.26 `sha1`, NULL }, as AWS writes it.
const ALG_SHA1: &[u8] = &[0x30, 0x09, 0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A, 0x05, 0x00];
/// AlgorithmIdentifier { 1.2.840.10040.4.3 `dsaWithSHA1` } (no parameters).
const ALG_DSA_WITH_SHA1: &[u8] = &[0x30, 0x09, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x03];

/// The DSA signing key with everything of its certificate that each
/// `SignedData` repeats, encoded once.
#[derive(Clone)]
pub(crate) struct DsaSha1Pkcs7 {
    key: PKey<Private>,
    /// `IssuerAndSerialNumber` of the signer certificate, DER.
    issuer_and_serial: Vec<u8>,
}

impl DsaSha1Pkcs7 {
    /// Prepares signing with `key`, identified by `cert` in each `SignerInfo`.
    pub(crate) fn new(key: PKey<Private>, cert: &X509) -> Result<Self, IdentityError> {
        let issuer = cert.issuer_name().to_der().context("encode the DSA certificate issuer")?;
        let serial = cert.serial_number().to_bn().context("read the DSA certificate serial")?.to_vec();
        let issuer_and_serial = tlv(TAG_SEQUENCE, &[&issuer[..], &unsigned_integer(&serial)].concat());
        Ok(Self { key, issuer_and_serial })
    }

    /// DER `ContentInfo` carrying `SignedData` over `document`, which is
    /// embedded byte for byte as the `data` content. `signing_time` is Unix
    /// seconds.
    pub(crate) fn sign(&self, document: &[u8], signing_time: i64) -> Result<Vec<u8>, IdentityError> {
        let digest = hash(MessageDigest::sha1(), document).context("hash the document with SHA-1")?;
        let mut attributes = [
            attribute(OID_CONTENT_TYPE, OID_DATA),
            attribute(OID_SIGNING_TIME, &time(signing_time)),
            attribute(OID_MESSAGE_DIGEST, &tlv(TAG_OCTET_STRING, &digest)),
        ];
        // DER orders SET OF by encoding; verifiers re-encode the attributes
        // in that order to check the signature.
        attributes.sort();
        let attributes = attributes.concat();

        // The signature covers the attributes with the SET tag (RFC 2315
        // §9.3), while the SignerInfo carries them under [0] IMPLICIT.
        let mut signer =
            Signer::new(MessageDigest::sha1(), &self.key).context("start a DSA/SHA-1 signature")?;
        signer.update(&tlv(TAG_SET, &attributes)).context("sign the PKCS#7 attributes")?;
        let signature = signer.sign_to_vec().context("sign the PKCS#7 attributes")?;

        let signer_info = tlv(
            TAG_SEQUENCE,
            &[
                &[TAG_INTEGER, 1, 1][..],
                &self.issuer_and_serial,
                ALG_SHA1,
                &tlv(TAG_CONTEXT_0, &attributes),
                ALG_DSA_WITH_SHA1,
                &tlv(TAG_OCTET_STRING, &signature),
            ]
            .concat(),
        );
        let content =
            tlv(TAG_SEQUENCE, &[OID_DATA, &tlv(TAG_CONTEXT_0, &tlv(TAG_OCTET_STRING, document))].concat());
        let signed_data = tlv(
            TAG_SEQUENCE,
            &[&[TAG_INTEGER, 1, 1][..], &tlv(TAG_SET, ALG_SHA1), &content, &tlv(TAG_SET, &signer_info)]
                .concat(),
        );
        Ok(tlv(TAG_SEQUENCE, &[OID_SIGNED_DATA, &tlv(TAG_CONTEXT_0, &signed_data)].concat()))
    }
}

/// `Attribute ::= SEQUENCE { type OID, values SET OF ANY }` with one value.
fn attribute(oid: &[u8], value: &[u8]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &[oid, &tlv(TAG_SET, value)].concat())
}

/// One DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.extend_from_slice(&len.to_be_bytes()[size_of::<usize>() - 1..]);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        // At most size_of::<usize>() bytes, so the count fits in 7 bits.
        out.push(0x80 | significant.len().to_be_bytes()[size_of::<usize>() - 1]);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative DER INTEGER from big-endian magnitude bytes.
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let magnitude = &magnitude[skip..];
    let mut content = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(magnitude);
    tlv(TAG_INTEGER, &content)
}

/// X.509/CMS `Time`: UTCTime `YYMMDDHHMMSSZ` for 1950–2049, GeneralizedTime
/// `YYYYMMDDHHMMSSZ` otherwise (RFC 5652 §11.3).
fn time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let clock = format!("{month:02}{day:02}{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
    if (1950..2050).contains(&year) {
        tlv(TAG_UTC_TIME, format!("{:02}{clock}", year % 100).as_bytes())
    } else {
        tlv(TAG_GENERALIZED_TIME, format!("{year:04}{clock}").as_bytes())
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        assert_eq!(tlv(0x04, &[]), [0x04, 0x00]);
        assert_eq!(tlv(0x04, &[7; 0x7F])[..2], [0x04, 0x7F]);
        assert_eq!(tlv(0x04, &[7; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(0x04, &[7; 0x100])[..4], [0x04, 0x82, 0x01, 0x00]);
        assert_eq!(tlv(0x04, &[7; 0x1_0000])[..5], [0x04, 0x83, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer(&[0, 0, 5]), [0x02, 0x01, 0x05]);
        assert_eq!(unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[0x01, 0xFF]), [0x02, 0x02, 0x01, 0xFF]);
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert_eq!(time(0), tlv(TAG_UTC_TIME, b"700101000000Z"));
        // 2000-02-29 (a leap day in a century year) 12:34:56
        assert_eq!(time(951_827_696), tlv(TAG_UTC_TIME, b"000229123456Z"));
        assert_eq!(time(2_524_607_999), tlv(TAG_UTC_TIME, b"491231235959Z"));
        assert_eq!(time(2_524_608_000), tlv(TAG_GENERALIZED_TIME, b"20500101000000Z"));
        assert_eq!(time(-631_152_001), tlv(TAG_GENERALIZED_TIME, b"19491231235959Z"));
    }
}
