//! Configuration problems, each located as precisely as the file allows.

use std::fmt;
use std::path::PathBuf;

/// One problem; Display is `file:line: KEY: message`, leaving out what is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file read.
    pub file: PathBuf,
    /// 1-based line, when the problem has one (a missing key has none).
    pub line: Option<usize>,
    /// The key as written in the file's format (`FAILOVER_PORT` or `port`).
    pub key: Option<String>,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file, in file order, so that one run of `-t` shows them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_unknown_parts() {
        let e = |line, key: Option<&str>| ConfigError {
            file: PathBuf::from("/etc/ipfailover/hostconfig"),
            line,
            key: key.map(str::to_string),
            message: "bad".to_string(),
        };
        assert_eq!(
            e(Some(7), Some("FAILOVER_INTERVAL")).to_string(),
            "/etc/ipfailover/hostconfig:7: FAILOVER_INTERVAL: bad"
        );
        assert_eq!(
            e(None, Some("FAILOVER_PEER_IP")).to_string(),
            "/etc/ipfailover/hostconfig: FAILOVER_PEER_IP: bad"
        );
        assert_eq!(
            e(Some(3), None).to_string(),
            "/etc/ipfailover/hostconfig:3: bad"
        );
        assert_eq!(e(None, None).to_string(), "/etc/ipfailover/hostconfig: bad");
        let all = ConfigErrors(vec![e(Some(1), None), e(Some(2), None)]);
        assert_eq!(
            all.to_string(),
            "/etc/ipfailover/hostconfig:1: bad\n/etc/ipfailover/hostconfig:2: bad"
        );
    }
}
