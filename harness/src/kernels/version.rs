//! Kernel versions as the matrix compares them.

use std::fmt;
use std::str::FromStr;

/// A kernel version: `major.minor` with an optional patch level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number (`6` in 6.1.27).
    pub major: u32,
    /// Minor number (`1` in 6.1.27).
    pub minor: u32,
    /// Patch level (`27` in 6.1.27), 0 when unknown.
    pub patch: u32,
}

impl Version {
    /// The `major.minor` series.
    pub fn series(self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// Reads the first `X.Y[.Z]` in `text`, e.g. in a Debian package name.
    pub fn find_in(text: &str) -> Option<Self> {
        let start = text.find(|c: char| c.is_ascii_digit())?;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        rest[..end].trim_end_matches('.').parse().ok()
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a kernel version (expected MAJOR.MINOR[.PATCH])");
        let mut parts = s.split('.');
        let mut next = |required: bool| match parts.next() {
            Some(part) => part.parse::<u32>().map_err(|_| bad()),
            None if required => Err(bad()),
            None => Ok(0),
        };
        let version = Version {
            major: next(true)?,
            minor: next(true)?,
            patch: next(false)?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            "6.1".parse(),
            Ok(Version {
                major: 6,
                minor: 1,
                patch: 0
            })
        );
        assert_eq!(
            "5.10.223".parse(),
            Ok(Version {
                major: 5,
                minor: 10,
                patch: 223
            })
        );
        assert!("6".parse::<Version>().is_err());
        assert!("6.x".parse::<Version>().is_err());
        assert!("6.1.2.3".parse::<Version>().is_err());
    }

    #[test]
    fn finds_versions_in_package_names() {
        let find = |s| Version::find_in(s).map(|v| v.to_string());
        assert_eq!(
            find("linux-image-5.10.0-32-cloud-amd64").as_deref(),
            Some("5.10.0")
        );
        assert_eq!(
            find("linux-image-7.3.4+deb13-cloud-amd64").as_deref(),
            Some("7.3.4")
        );
        assert_eq!(find("linux-image-cloud-amd64"), None);
    }
}
