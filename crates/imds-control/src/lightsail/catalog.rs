//! What Lightsail's bundles and blueprints mean for an instance record:
//! the EC2 instance type a bundle runs on, its hardware and transfer
//! allowance (the published Linux plans), the login user of a blueprint,
//! and syntactic checks of names and ids. There is no GetBundles /
//! GetBlueprints here; bundles are recognised by their documented id
//! pattern (`<size>[_win][_ipv6]_<major>_<minor>`), blueprints only by
//! syntax.

use super::error::LsError;

/// What a bundle provides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bundle {
    /// The EC2 type behind it (`t3.nano`), shown in instance metadata.
    pub instance_type: &'static str,
    /// vCPUs.
    pub cpu_count: u32,
    /// RAM in GB.
    pub ram_size_in_gb: f64,
    /// System disk size in GB.
    pub disk_size_in_gb: u32,
    /// Monthly data transfer allowance in GB.
    pub transfer_gb: u32,
}

/// Sizes with (t2 type, t3 type, vCPUs, RAM GB, disk GB, transfer GB).
const SIZES: &[(&str, &str, &str, u32, f64, u32, u32)] = &[
    ("nano", "t2.nano", "t3.nano", 2, 0.5, 20, 1024),
    ("micro", "t2.micro", "t3.micro", 2, 1.0, 40, 2048),
    ("small", "t2.small", "t3.small", 2, 2.0, 60, 3072),
    ("medium", "t2.medium", "t3.medium", 2, 4.0, 80, 4096),
    ("large", "t2.large", "t3.large", 2, 8.0, 160, 5120),
    ("xlarge", "t2.xlarge", "t3.xlarge", 4, 16.0, 320, 6144),
    ("2xlarge", "t2.2xlarge", "t3.2xlarge", 8, 32.0, 640, 7168),
];

/// The bundle a `bundleId` names, or `InvalidInputException`.
pub fn bundle(id: &str) -> Result<Bundle, LsError> {
    let invalid = || LsError::invalid_code("InvalidBundle", format!("The bundle ID '{id}' is not valid."));
    let mut parts: Vec<&str> = id.split('_').collect();
    if parts.len() < 3 || parts.len() > 5 {
        return Err(invalid());
    }
    let minor = parts.pop().ok_or_else(invalid)?;
    let major = parts.pop().ok_or_else(invalid)?;
    let version_ok = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !version_ok(major) || !version_ok(minor) {
        return Err(invalid());
    }
    let size = parts.first().copied().ok_or_else(invalid)?;
    let extras = &parts[1..];
    let extras_ok = matches!(extras, [] | ["win"] | ["ipv6"] | ["win", "ipv6"]);
    let entry = SIZES.iter().find(|s| s.0 == size).filter(|_| extras_ok).ok_or_else(invalid)?;
    let generation = major.parse::<u32>().map_err(|_| invalid())?;
    Ok(Bundle {
        instance_type: if generation >= 3 { entry.2 } else { entry.1 },
        cpu_count: entry.3,
        ram_size_in_gb: entry.4,
        disk_size_in_gb: entry.5,
        transfer_gb: entry.6,
    })
}

/// Checks a `blueprintId`: 1–64 characters of lower-case letters, digits,
/// `_`, `-` and `.`, starting with a letter or digit.
pub fn blueprint(id: &str) -> Result<(), LsError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LsError::invalid_code("InvalidBlueprint", format!("The blueprint ID '{id}' is not valid.")))
    }
}

/// The user name Lightsail shows for a blueprint (`username`).
pub fn username(blueprint_id: &str) -> &'static str {
    let starts = |p: &str| blueprint_id.starts_with(p);
    if starts("ubuntu") {
        "ubuntu"
    } else if starts("debian") {
        "admin"
    } else if starts("centos") {
        "centos"
    } else if starts("windows") {
        "Administrator"
    } else if ["amazon_linux", "almalinux", "freebsd", "opensuse", "fedora", "rocky"]
        .iter()
        .any(|p| starts(p))
    {
        "ec2-user"
    } else {
        // Application blueprints (WordPress, LAMP, Node.js, …) are Bitnami images.
        "bitnami"
    }
}

/// Whether `name` is a valid Lightsail resource name: 2–255 characters of
/// ASCII letters, digits, `_`, `-` and `.`, starting and ending with a
/// letter, digit or `_` (the model's `\w[\w\-]*\w`, plus the dots the
/// service also accepts).
pub fn is_resource_name(name: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = name.as_bytes();
    (2..=255).contains(&bytes.len())
        && bytes.first().is_some_and(|b| word(*b))
        && bytes.last().is_some_and(|b| word(*b))
        && bytes.iter().all(|b| word(*b) || *b == b'-' || *b == b'.')
}

/// [`is_resource_name`] as a check with the service's wording.
pub fn resource_name(name: &str) -> Result<(), LsError> {
    if is_resource_name(name) {
        Ok(())
    } else {
        let shown: String = name.chars().take(64).collect();
        Err(LsError::invalid(format!(
            "{shown} is not a valid resource name. Resource names must be at least 2 characters long and contain only alphanumerics, -, _, and ."
        )))
    }
}

/// Checks a tag key and value the way Lightsail documents them: keys of
/// 1–128 and values of up to 256 letters, digits, spaces or `+ - = . _ : / @`
/// (any script), keys not starting with `aws:`.
pub fn tag(key: &str, value: &str) -> Result<(), LsError> {
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c);
    let key_ok = (1..=128).contains(&key.chars().count()) && key.chars().all(allowed);
    if !key_ok || key.to_ascii_lowercase().starts_with("aws:") {
        let shown: String = key.chars().take(64).collect();
        return Err(LsError::invalid(format!("The tag key '{shown}' is not valid.")));
    }
    if value.chars().count() > 256 || !value.chars().all(allowed) {
        return Err(LsError::invalid(format!("The value of tag '{key}' is not valid.")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_map_to_types() {
        let b = bundle("nano_3_0").unwrap();
        assert_eq!(
            (b.instance_type, b.cpu_count, b.ram_size_in_gb, b.disk_size_in_gb),
            ("t3.nano", 2, 0.5, 20)
        );
        assert_eq!(bundle("micro_2_0").unwrap().instance_type, "t2.micro");
        assert_eq!(bundle("large_win_3_0").unwrap().instance_type, "t3.large");
        assert_eq!(bundle("small_ipv6_3_1").unwrap().instance_type, "t3.small");
        assert_eq!(bundle("2xlarge_3_0").unwrap().cpu_count, 8);
        for bad in ["", "nano", "nano_3", "huge_3_0", "nano_x_0", "nano_linux_3_0", "nano_3_0_", "NANO_3_0"] {
            assert_eq!(bundle(bad).unwrap_err().code, "InvalidBundle", "{bad}");
        }
    }

    #[test]
    fn resource_names_follow_the_model() {
        for ok in ["web-1", "ab", "Amazon_Linux_2023-1", "my.site", "_x", "a".repeat(255).as_str()] {
            assert!(is_resource_name(ok), "{ok}");
        }
        for bad in ["a", "-ab", "ab-", "a b", "ü1", "a/b", "", "a".repeat(256).as_str(), ".ab"] {
            assert!(!is_resource_name(bad), "{bad}");
        }
        assert_eq!(
            resource_name("a b").unwrap_err().message,
            "a b is not a valid resource name. Resource names must be at least 2 characters long and contain only alphanumerics, -, _, and ."
        );
    }

    #[test]
    fn usernames_by_blueprint() {
        assert_eq!(username("amazon_linux_2023"), "ec2-user");
        assert_eq!(username("ubuntu_22_04"), "ubuntu");
        assert_eq!(username("debian_12"), "admin");
        assert_eq!(username("wordpress"), "bitnami");
        assert_eq!(username("windows_server_2022"), "Administrator");
        assert!(blueprint("amazon_linux_2023").is_ok());
        assert!(blueprint("Amazon Linux").is_err());
        assert!(blueprint("").is_err());
    }

    #[test]
    fn tags_follow_the_documented_alphabet() {
        assert!(tag("team", "a b+c=d.e_f:g/h@i-j").is_ok());
        assert!(tag("Ünïcode", "日本").is_ok());
        assert!(tag("", "v").is_err());
        assert!(tag("aws:x", "v").is_err());
        assert!(tag("a;b", "v").is_err());
        assert!(tag("k", &"v".repeat(257)).is_err());
        assert!(tag(&"k".repeat(129), "v").is_err());
    }
}
