//! The three formats checked with the real `openssl` command, following the
//! AWS user guide's verification procedures line for line ("Instance identity
//! documents": verify-pkcs7, verify-rsa2048, verify-signature), with `curl`
//! replaced by `cat` of what the data plane would serve.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use imds_identity::{Pkcs7Algorithm, RegionSigner, wrap76};

/// The example document of docs/protocol/categories.md#identity-document, exactly.
const DOCUMENT: &str = r#"{
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
    SIGNER.get_or_init(|| {
        let start = Instant::now();
        let signer = RegionSigner::generate("us-west-2").expect("generate");
        eprintln!("RegionSigner::generate: {:?} (pkcs7 = {})", start.elapsed(), signer.pkcs7_algorithm());
        signer
    })
}

/// Runs one line of the AWS guide with `sh` in `dir`.
fn sh(dir: &Path, line: &str) -> Output {
    Command::new("sh").arg("-c").arg(line).current_dir(dir).output().expect("run sh")
}

/// A temporary directory holding what the instance would fetch:
/// `served-<name>` bodies and the region's `certificate`.
fn instance_dir(served: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in served {
        std::fs::write(dir.path().join(format!("served-{name}")), body).expect("write");
    }
    std::fs::write(dir.path().join("certificate"), signer().certificate_pem()).expect("write");
    dir
}

/// verify-pkcs7 / verify-rsa2048: armour the served text, then
/// `openssl smime -verify ... -noverify`. Returns openssl's output.
fn smime_verify(name: &str, body: &str) -> Output {
    let dir = instance_dir(&[(name, body)]);
    let armour = format!(
        "echo \"-----BEGIN PKCS7-----\" >> {name} \
         && cat served-{name} >> {name} \
         && echo \"\" >> {name} \
         && echo \"-----END PKCS7-----\" >> {name}"
    );
    assert!(sh(dir.path(), &armour).status.success());
    sh(dir.path(), &format!("openssl smime -verify -in {name} -inform PEM -certfile certificate -noverify"))
}

/// verify-signature: decode the signature, extract the key from the first
/// certificate, `openssl dgst -sha256 -verify`.
fn dgst_verify(document: &str, signature: &str) -> Output {
    let dir = instance_dir(&[("signature", signature), ("document", document)]);
    for line in [
        "cat served-signature | base64 -d >> signature",
        "cat served-document >> document",
        "openssl x509 -pubkey -noout -in certificate >> key",
    ] {
        let out = sh(dir.path(), line);
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    }
    sh(dir.path(), "openssl dgst -sha256 -verify key -signature signature document")
}

fn assert_served_format(text: &str) {
    assert!(!text.contains("-----"), "no PEM armour");
    assert!(!text.ends_with('\n'), "no trailing newline");
    assert!(!text.contains('\r'));
    let lines: Vec<&str> = text.split('\n').collect();
    let (last, full) = lines.split_last().expect("a line");
    assert!(full.iter().all(|line| line.len() == 76), "all but the last line are 76 characters");
    assert!(!last.is_empty() && last.len() <= 76);
    assert!(lines.len() > 1, "long enough to wrap");
    assert_eq!(wrap76(&text.replace('\n', "")), text);
}

/// Changes the base64 character at `at` of the served text to another one.
fn tamper_char(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let at = if bytes[at] == b'\n' { at + 1 } else { at };
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

#[test]
fn dsa_sha1_is_used_for_pkcs7_here() {
    assert_eq!(signer().pkcs7_algorithm(), Pkcs7Algorithm::DsaSha1);
}

#[test]
fn pkcs7_verifies_with_the_aws_procedure() {
    let pkcs7 = signer().pkcs7(DOCUMENT.as_bytes()).expect("pkcs7");
    assert_served_format(&pkcs7);
    let out = smime_verify("pkcs7", &pkcs7);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, DOCUMENT.as_bytes(), "embedded document is byte-identical");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Verification successful"));
}

#[test]
fn rsa2048_verifies_with_the_aws_procedure() {
    let rsa2048 = signer().rsa2048(DOCUMENT.as_bytes()).expect("rsa2048");
    assert_served_format(&rsa2048);
    let out = smime_verify("rsa2048", &rsa2048);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, DOCUMENT.as_bytes());
}

#[test]
fn signature_verifies_with_the_aws_procedure() {
    let signature = signer().signature(DOCUMENT.as_bytes()).expect("signature");
    assert_served_format(&signature);
    assert_eq!(signature.split('\n').map(str::len).collect::<Vec<_>>(), [76, 76, 76, 76, 40]);
    let out = dgst_verify(DOCUMENT, &signature);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Verified OK\n");
}

#[test]
fn tampered_document_fails_dgst_verify() {
    let signature = signer().signature(DOCUMENT.as_bytes()).expect("signature");
    let tampered = DOCUMENT.replacen("123456789012", "123456789013", 1);
    let out = dgst_verify(&tampered, &signature);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Verification failure\n");
}

#[test]
fn tampered_pkcs7_fails_smime_verify() {
    for (name, text) in [
        ("pkcs7", signer().pkcs7(DOCUMENT.as_bytes()).expect("pkcs7")),
        ("rsa2048", signer().rsa2048(DOCUMENT.as_bytes()).expect("rsa2048")),
    ] {
        // The middle, and a quarter from either end: with no certificate
        // inside, every byte of the structure is covered by the signature.
        for at in [text.len() / 2, text.len() / 4, text.len() * 3 / 4] {
            let out = smime_verify(name, &tamper_char(&text, at));
            assert!(!out.status.success(), "{name} tampered at {at} still verifies");
        }
    }
}

#[test]
fn structure_matches_aws() {
    let dir = instance_dir(&[
        ("pkcs7", &signer().pkcs7(DOCUMENT.as_bytes()).expect("pkcs7")),
        ("rsa2048", &signer().rsa2048(DOCUMENT.as_bytes()).expect("rsa2048")),
    ]);
    let print = |name: &str| {
        let line = format!(
            "(echo '-----BEGIN PKCS7-----'; cat served-{name}; echo; echo '-----END PKCS7-----') \
             | openssl cms -cmsout -print -inform PEM"
        );
        let out = sh(dir.path(), &line);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    };
    let pkcs7 = print("pkcs7");
    assert!(pkcs7.contains("algorithm: sha1 (1.3.14.3.2.26)"), "{pkcs7}");
    assert!(pkcs7.contains("algorithm: dsaWithSHA1 (1.2.840.10040.4.3)"), "{pkcs7}");
    let rsa2048 = print("rsa2048");
    assert!(rsa2048.contains("algorithm: sha256 (2.16.840.1.101.3.4.2.1)"), "{rsa2048}");
    assert!(rsa2048.contains("algorithm: rsaEncryption (1.2.840.113549.1.1.1)"), "{rsa2048}");
    for text in [&pkcs7, &rsa2048] {
        assert!(text.contains("certificates:\n      <ABSENT>"), "no certificates inside: {text}");
        for attribute in ["contentType", "signingTime", "messageDigest"] {
            assert!(text.contains(&format!("object: {attribute}")), "{attribute}: {text}");
        }
    }
}

#[test]
fn first_certificate_is_rsa_then_dsa() {
    let dir = instance_dir(&[]);
    let out =
        sh(dir.path(), "openssl x509 -pubkey -noout -in certificate | openssl pkey -pubin -noout -text");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Public-Key: (2048 bit)"));
    let out = sh(
        dir.path(),
        "openssl crl2pkcs7 -nocrl -certfile certificate | openssl pkcs7 -print_certs -text -noout",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rsa = text.find("rsaEncryption").expect("RSA certificate");
    let dsa = text.find("dsaEncryption").expect("DSA certificate");
    assert!(rsa < dsa, "RSA first");
    assert!(text.matches("CN=imdsd instance identity us-west-2").count() == 4, "{text}");
}

#[test]
fn full_chain_verification_with_the_certificate_as_trust_anchor() {
    // Beyond the AWS guide: without -noverify, the region certificate
    // itself as the trust anchor.
    for (name, text) in [
        ("pkcs7", signer().pkcs7(DOCUMENT.as_bytes()).expect("pkcs7")),
        ("rsa2048", signer().rsa2048(DOCUMENT.as_bytes()).expect("rsa2048")),
    ] {
        let dir = instance_dir(&[(name, &text)]);
        let line = format!(
            "(echo '-----BEGIN PKCS7-----'; cat served-{name}; echo; echo '-----END PKCS7-----') > {name} \
             && openssl smime -verify -in {name} -inform PEM -certfile certificate -CAfile certificate"
        );
        let out = sh(dir.path(), &line);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, DOCUMENT.as_bytes());
    }
}

#[test]
fn restored_signer_verifies_with_the_original_certificate() {
    let json = serde_json::to_string(signer()).expect("serialise");
    let restored: RegionSigner = serde_json::from_str(&json).expect("deserialise");
    // `instance_dir` writes the original signer's certificate.
    let out = smime_verify("pkcs7", &restored.pkcs7(DOCUMENT.as_bytes()).expect("pkcs7"));
    assert!(out.status.success());
    assert_eq!(out.stdout, DOCUMENT.as_bytes());
    let out = smime_verify("rsa2048", &restored.rsa2048(DOCUMENT.as_bytes()).expect("rsa2048"));
    assert!(out.status.success());
    let out = dgst_verify(DOCUMENT, &restored.signature(DOCUMENT.as_bytes()).expect("signature"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Verified OK\n");
}

#[test]
fn sign_costs() {
    // Reported, not asserted: speed belongs to bench/ (docs/design.md#conventions, item 10).
    let signer = signer();
    let document = DOCUMENT.as_bytes();
    const ROUNDS: u32 = 50;
    type SignFn = fn(&RegionSigner, &[u8]) -> Result<String, imds_identity::IdentityError>;
    let kinds: [(&str, SignFn); 3] = [
        ("signature", RegionSigner::signature),
        ("pkcs7", RegionSigner::pkcs7),
        ("rsa2048", RegionSigner::rsa2048),
    ];
    for (name, sign) in kinds {
        let start = Instant::now();
        sign(signer, document).expect("sign");
        let first = start.elapsed();
        let start = Instant::now();
        for _ in 0..ROUNDS {
            sign(signer, document).expect("sign");
        }
        eprintln!("sign cost {name}: first {first:?}, mean of {ROUNDS} {:?}", start.elapsed() / ROUNDS);
    }
}
