//! Fresh identifiers for what the control plane creates: resource ids
//! (`i-`, `r-`, `eni-`, `ami-`, `key-` + 17 hex digits), MAC addresses,
//! incarnations, and the deterministic ids derived from names (instance
//! profile ids, security-group ids for group names, AZ ids).
//!
//! Randomness comes from the operating system through aws-lc-rs; a failure
//! of the generator is reported, never papered over. Uniqueness of random
//! ids is finally guaranteed by the store (every create is conditional on
//! the key being absent), not here.

use aws_lc_rs::digest;
use imds_core::ids::resource_id_from_bytes;

/// The system random generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

/// `<prefix>-` followed by 17 random hex digits.
pub fn resource_id(prefix: &str) -> Result<String, RandomError> {
    Ok(resource_id_from_bytes(prefix, random::<9>()?))
}

/// A random non-zero `u64` (instance incarnations).
pub fn incarnation() -> Result<u64, RandomError> {
    let n = u64::from_be_bytes(random::<8>()?);
    Ok(if n == 0 { 1 } else { n })
}

/// A random locally administered unicast MAC, lower-case, colon separated
/// (EC2's MACs look the same: `0e:49:61:0f:c3:11`).
pub fn mac() -> Result<String, RandomError> {
    let mut b = random::<6>()?;
    b[0] = (b[0] & 0xfe) | 0x02;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":"))
}

fn sha256(text: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, text.as_bytes()).as_ref().to_vec()
}

/// `AIPA` + 17 characters of base32 derived from the profile ARN, so the
/// same profile always has the same id (21 characters, like IAM's).
pub fn instance_profile_id(arn: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = sha256(arn);
    let mut out = String::from("AIPA");
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in hash {
        if out.len() == 21 {
            break;
        }
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && out.len() < 21 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    out
}

/// `<prefix>-` + 17 hex digits derived from `name` (stable ids for things
/// referred to by name, such as security groups given by group name).
pub fn derived_id(prefix: &str, name: &str) -> String {
    let hash = sha256(name);
    let mut bytes = [0u8; 9];
    bytes.copy_from_slice(&hash[..9]);
    resource_id_from_bytes(prefix, bytes)
}

/// The zone id EC2 would show for a zone name: `us-east-1a` → `use1-az1`
/// (region abbreviated, zone letter as a number). Real accounts map
/// letters to ids differently; any stable mapping serves the metadata.
pub fn availability_zone_id(region: &str, zone_letter: char) -> String {
    let mut abbrev = String::new();
    for part in region.split('-') {
        let short = match part {
            "east" => "e",
            "west" => "w",
            "north" => "n",
            "south" => "s",
            "central" => "c",
            "northeast" => "ne",
            "northwest" => "nw",
            "southeast" => "se",
            "southwest" => "sw",
            other => other,
        };
        abbrev.push_str(short);
    }
    let number = u32::from(zone_letter.to_ascii_lowercase()).saturating_sub(u32::from('a')) + 1;
    format!("{abbrev}-az{number}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_core::InstanceId;

    #[test]
    fn random_ids_have_ec2_shape() {
        let id = resource_id("i").unwrap();
        assert!(InstanceId::parse(&id).is_ok(), "{id}");
        assert_eq!(id.len(), 19);
        assert_ne!(id, resource_id("i").unwrap());
        assert!(imds_core::ids::is_valid_resource_id("eni", &resource_id("eni").unwrap()));
    }

    #[test]
    fn macs_are_local_unicast() {
        let m = mac().unwrap();
        assert_eq!(m.len(), 17);
        let first = u8::from_str_radix(&m[..2], 16).unwrap();
        assert_eq!(first & 0x03, 0x02);
    }

    #[test]
    fn profile_ids_are_stable_and_iam_shaped() {
        let a = instance_profile_id("arn:aws:iam::123456789012:instance-profile/web");
        assert_eq!(a, instance_profile_id("arn:aws:iam::123456789012:instance-profile/web"));
        assert_ne!(a, instance_profile_id("arn:aws:iam::123456789012:instance-profile/db"));
        assert_eq!(a.len(), 21);
        assert!(a.starts_with("AIPA"));
        assert!(a.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    }

    #[test]
    fn zone_ids_abbreviate_regions() {
        assert_eq!(availability_zone_id("us-east-1", 'a'), "use1-az1");
        assert_eq!(availability_zone_id("eu-central-1", 'c'), "euc1-az3");
        assert_eq!(availability_zone_id("ap-southeast-2", 'b'), "apse2-az2");
        assert_eq!(derived_id("sg", "web"), derived_id("sg", "web"));
        assert!(imds_core::ids::is_valid_resource_id("sg", &derived_id("sg", "web")));
    }
}
