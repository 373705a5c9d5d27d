//! `module:NAME`: loaded kernel modules, from /proc/modules.

use std::path::{Path, PathBuf};

use super::{Collection, SourceError, StateSource, fields, key, read_text, under};

pub struct Modules {
    pub proc_modules: PathBuf,
}

impl Modules {
    pub fn at(root: &Path) -> Self {
        Modules {
            proc_modules: under(root, "/proc/modules"),
        }
    }
}

impl StateSource for Modules {
    fn namespace(&self) -> &'static str {
        "module"
    }

    fn collect(&self) -> Result<Collection, SourceError> {
        Ok(parse_proc_modules(&read_text(
            "module",
            &self.proc_modules,
        )?))
    }
}

/// `name size refcount deps state address [taint]` lines. Only what identifies
/// the module is kept: the reference count changes with use.
pub fn parse_proc_modules(text: &str) -> Collection {
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, size) = (parts.first()?, parts.get(1)?);
            let taint = parts
                .get(6)
                .map_or("", |t| t.trim_matches(|c| c == '(' || c == ')'));
            Some((
                key("module", name),
                fields([("size", size), ("taint", taint)]),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_common::api::v1::SubjectKey;

    #[test]
    fn parses_names_sizes_and_taint() {
        let text = "br_netfilter 32768 0 - Live 0x0000000000000000\n\
                    evil 16384 1 - Live 0x0000000000000000 (OE)\n";
        let modules = parse_proc_modules(text);
        assert_eq!(modules.len(), 2);
        assert_eq!(
            modules[&SubjectKey("module:br_netfilter".into())]["size"],
            "32768"
        );
        assert_eq!(modules[&SubjectKey("module:evil".into())]["taint"], "OE");
    }

    #[test]
    fn a_host_without_modules_is_unavailable_not_an_error() {
        let source = Modules {
            proc_modules: PathBuf::from("/nonexistent/modules"),
        };
        assert!(matches!(
            source.collect(),
            Err(SourceError::Unavailable { .. })
        ));
    }
}
