//! Path globs for include/exclude rules.
//!
//! `*` and `?` stay within one path segment; `**` crosses segments
//! (`/etc/**/*.conf`). Patterns are matched against whole absolute paths.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled list of globs that remembers its source text.
#[derive(Clone, Debug)]
pub struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid glob `{pattern}`: {reason}")]
pub struct GlobError {
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

impl GlobList {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, GlobError> {
        let mut builder = GlobSetBuilder::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let pattern = pattern.as_ref();
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| GlobError {
                    index,
                    pattern: pattern.to_owned(),
                    reason: err.kind().to_string(),
                })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|err| GlobError {
            index: 0,
            pattern: String::new(),
            reason: err.to_string(),
        })?;
        Ok(GlobList {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set,
        })
    }

    pub fn empty() -> Self {
        GlobList {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_match(&self, path: &Path) -> bool {
        self.set.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> GlobList {
        GlobList::new(patterns).unwrap()
    }

    #[test]
    fn star_stays_in_one_segment() {
        let globs = list(&["/etc/*.conf"]);
        assert!(globs.is_match(Path::new("/etc/a.conf")));
        assert!(!globs.is_match(Path::new("/etc/sub/a.conf")));
    }

    #[test]
    fn double_star_crosses_segments() {
        let globs = list(&["**/*.key", "/etc/ssh/ssh_host_*_key"]);
        assert!(globs.is_match(Path::new("/etc/ssl/private/a.key")));
        assert!(globs.is_match(Path::new("/etc/ssh/ssh_host_ed25519_key")));
        assert!(!globs.is_match(Path::new("/etc/ssh/ssh_host_ed25519_key.pub")));
    }

    #[test]
    fn matches_non_utf8_paths() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let globs = list(&["/srv/*"]);
        assert!(globs.is_match(Path::new(OsStr::from_bytes(b"/srv/\xff"))));
    }

    #[test]
    fn reports_the_bad_pattern() {
        let err = GlobList::new(&["/ok", "/etc/[a"]).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.pattern, "/etc/[a");
    }
}
