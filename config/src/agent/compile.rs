//! TOML text → validated [`AgentConfig`], collecting every error with its place.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use driftwatch_common::attrs::{Attribute, AttributeSet, BUILTIN_GROUPS};
use driftwatch_common::pattern::GlobList;
use toml::Spanned;

use super::raw::{AgentToml, RuleToml};
use super::{
    AgentConfig, DEFAULT_FULL_REHASH_INTERVAL_HOURS, DEFAULT_SNAPSHOT_MAX_BYTES,
    DEFAULT_SOURCES_INTERVAL_SECS, DEFAULT_STATE_DIR, MAX_FULL_REHASH_INTERVAL_HOURS,
    MAX_SNAPSHOT_BYTES, MAX_SOURCES_INTERVAL_SECS, MAX_WORKERS, Rule, SOURCE_NAMES, ScanSettings,
    SnapshotSettings, SourceSettings,
};
use crate::diagnostics::{Diagnostics, parse};
use crate::error::ConfigErrors;
use crate::span::key_segment;

pub(super) fn from_toml(text: &str, source: &Path) -> Result<AgentConfig, ConfigErrors> {
    let (raw, mut diag) = parse::<AgentToml>(text, source)?;
    let config = compile(raw, source, &mut diag);
    diag.result(config)
}

/// The semantic checks. Always returns a config; it is only meaningful when `diag`
/// collected no errors (placeholders stand in for invalid values).
fn compile(raw: AgentToml, source: &Path, diag: &mut Diagnostics<'_>) -> AgentConfig {
    let state_dir = match &raw.state_dir {
        None => PathBuf::from(DEFAULT_STATE_DIR),
        Some(dir) => normalize_absolute(dir.get_ref()).unwrap_or_else(|why| {
            diag.at(dir.span(), "state_dir", why);
            PathBuf::new()
        }),
    };

    let workers = match &raw.scan.workers {
        None => 0,
        Some(workers) => diag
            .in_range(
                workers,
                "scan.workers",
                MAX_WORKERS as u64,
                "0 = one per core",
            )
            .unwrap_or(1) as usize,
    };
    let hours = match &raw.scan.full_rehash_interval_hours {
        None => DEFAULT_FULL_REHASH_INTERVAL_HOURS,
        Some(hours) => diag
            .in_range(
                hours,
                "scan.full_rehash_interval_hours",
                MAX_FULL_REHASH_INTERVAL_HOURS,
                "0 = never",
            )
            .unwrap_or(0),
    };
    let scan = ScanSettings {
        workers: if workers == 0 {
            super::workers_per_core()
        } else {
            workers
        },
        full_rehash_interval: super::rehash_interval(hours),
    };

    let max_bytes = match &raw.snapshots.max_bytes {
        None => DEFAULT_SNAPSHOT_MAX_BYTES,
        Some(max) => diag
            .in_range(
                max,
                "snapshots.max_bytes",
                MAX_SNAPSHOT_BYTES,
                "16 MiB; 0 disables snapshots",
            )
            .unwrap_or(0),
    };
    let snapshot_exclude = match &raw.snapshots.exclude {
        None => SnapshotSettings::default().exclude,
        Some(patterns) => diag
            .globs("snapshots.exclude", patterns)
            .unwrap_or_else(GlobList::empty),
    };
    let snapshot_include = match &raw.snapshots.include {
        None => GlobList::empty(),
        Some(patterns) => diag
            .globs("snapshots.include", patterns)
            .unwrap_or_else(GlobList::empty),
    };
    let secret_keys = match &raw.snapshots.secret_keys {
        None => SnapshotSettings::default().secret_keys,
        Some(patterns) => diag.secret_keys("snapshots.secret_keys", patterns),
    };
    let snapshots = SnapshotSettings {
        max_bytes,
        include: snapshot_include,
        exclude: snapshot_exclude,
        secret_keys,
        ..SnapshotSettings::default()
    };

    let sources = compile_sources(&raw, diag);
    let groups = custom_groups(&raw, diag);

    let mut rules = Vec::new();
    match &raw.rule {
        None => diag.unplaced(
            "rule",
            "at least one [[rule]] with a `path` is required: nothing would be watched",
        ),
        Some(list) if list.get_ref().is_empty() => diag.at(
            list.span(),
            "rule",
            "at least one [[rule]] with a `path` is required: nothing would be watched",
        ),
        Some(list) => {
            // Normalised path → line of its first rule, for duplicate errors.
            let mut seen: HashMap<PathBuf, usize> = HashMap::new();
            for (index, rule) in list.get_ref().iter().enumerate() {
                if let Some(rule) = compile_rule(index, rule, &groups, &mut seen, diag) {
                    rules.push(rule);
                }
            }
        }
    }

    let daemon = super::daemon::compile(
        super::daemon::DaemonToml {
            scan_interval_secs: raw.scan.interval_secs.as_ref(),
            scan_max_read_mib_per_sec: raw.scan.max_read_mib_per_sec.as_ref(),
            collector: &raw.collector,
            watch: &raw.watch,
            spool: &raw.spool,
            heartbeat: &raw.heartbeat,
        },
        diag,
    );
    let metrics = super::metrics::compile(&raw.metrics, diag);

    AgentConfig {
        source: source.to_path_buf(),
        state_dir,
        scan,
        snapshots,
        sources,
        rules,
        daemon,
        metrics,
    }
}

/// The `[sources]` table: known names only, each once; a sane polling interval.
fn compile_sources(raw: &AgentToml, diag: &mut Diagnostics<'_>) -> SourceSettings {
    let mut enabled = Vec::new();
    match &raw.sources.enabled {
        None => enabled.extend(SOURCE_NAMES.iter().map(|s| (*s).to_owned())),
        Some(names) => {
            for (index, name) in names.iter().enumerate() {
                let key = format!("sources.enabled[{index}]");
                if !SOURCE_NAMES.contains(&name.get_ref().as_str()) {
                    diag.at(
                        name.span(),
                        key,
                        format!(
                            "unknown source `{}`: expected one of {}",
                            name.get_ref(),
                            SOURCE_NAMES.join(", ")
                        ),
                    );
                } else if enabled.contains(name.get_ref()) {
                    diag.at(
                        name.span(),
                        key,
                        format!("source `{}` is listed twice", name.get_ref()),
                    );
                } else {
                    enabled.push(name.get_ref().clone());
                }
            }
        }
    }
    let interval_secs = match &raw.sources.interval_secs {
        None => DEFAULT_SOURCES_INTERVAL_SECS,
        Some(secs) => match diag.in_range(
            secs,
            "sources.interval_secs",
            MAX_SOURCES_INTERVAL_SECS,
            "seconds",
        ) {
            Some(0) => {
                diag.at(
                    secs.span(),
                    "sources.interval_secs",
                    "must be at least 1 second",
                );
                DEFAULT_SOURCES_INTERVAL_SECS
            }
            Some(secs) => secs,
            None => DEFAULT_SOURCES_INTERVAL_SECS,
        },
    };
    let root = match &raw.sources.root {
        None => PathBuf::from("/"),
        Some(root) => normalize_absolute(root.get_ref()).unwrap_or_else(|why| {
            diag.at(root.span(), "sources.root", why);
            PathBuf::from("/")
        }),
    };
    SourceSettings {
        enabled,
        interval: std::time::Duration::from_secs(interval_secs),
        root,
    }
}

/// The `[groups]` table: name → attributes, or `None` for a group with errors (already
/// reported, so rules naming it add nothing).
fn custom_groups(
    raw: &AgentToml,
    diag: &mut Diagnostics<'_>,
) -> HashMap<String, Option<AttributeSet>> {
    let mut groups = HashMap::new();
    for (name, attributes) in &raw.groups {
        let key = format!("groups.{}", key_segment(name.get_ref()));
        if BUILTIN_GROUPS.contains(&name.get_ref().as_str()) {
            diag.at(
                name.span(),
                &key,
                format!(
                    "`{}` is a built-in group and cannot be redefined; choose another name",
                    name.get_ref()
                ),
            );
            continue;
        }
        let mut set = Some(AttributeSet::EMPTY);
        for (index, attribute) in attributes.get_ref().iter().enumerate() {
            match attribute.get_ref().parse::<Attribute>() {
                Ok(attr) => set = set.map(|set| set.with(attr)),
                Err(_) => {
                    let valid: Vec<&str> = Attribute::ALL.iter().map(|a| a.name()).collect();
                    diag.at(
                        attribute.span(),
                        format!("{key}[{index}]"),
                        format!(
                            "unknown attribute `{}`, expected one of: {}",
                            attribute.get_ref(),
                            valid.join(", ")
                        ),
                    );
                    set = None;
                }
            }
        }
        if attributes.get_ref().is_empty() {
            diag.at(
                attributes.span(),
                &key,
                "empty group: it would record nothing; to skip paths use the built-in `ignore` group",
            );
            set = None;
        }
        if let Some(both) = set
            && both.contains(Attribute::Size)
            && both.contains(Attribute::Growing)
        {
            diag.at(
                attributes.span(),
                &key,
                "`size` and `growing` contradict each other (`growing` lets the size grow); keep one",
            );
            set = None;
        }
        groups.insert(name.get_ref().clone(), set);
    }
    groups
}

fn compile_rule(
    index: usize,
    raw: &Spanned<RuleToml>,
    groups: &HashMap<String, Option<AttributeSet>>,
    seen: &mut HashMap<PathBuf, usize>,
    diag: &mut Diagnostics<'_>,
) -> Option<Rule> {
    let key = format!("rule[{index}]");
    let rule = raw.get_ref();

    let path = match &rule.path {
        None => {
            diag.at(
                raw.span(),
                &key,
                "missing `path`: every [[rule]] needs the absolute path it watches",
            );
            None
        }
        Some(path) => match normalize_absolute(path.get_ref()) {
            Err(why) => {
                diag.at(path.span(), format!("{key}.path"), why);
                None
            }
            Ok(normal) => {
                let line = diag.line_of(path.span().start);
                match seen.get(&normal) {
                    Some(first) => {
                        diag.at(
                            path.span(),
                            format!("{key}.path"),
                            format!(
                                "duplicate rule for `{}`: the first is on line {first}; merge them",
                                normal.display()
                            ),
                        );
                        None
                    }
                    None => {
                        seen.insert(normal.clone(), line);
                        Some(normal)
                    }
                }
            }
        },
    };

    let (group, attributes) = match &rule.group {
        None => ("content".to_owned(), AttributeSet::builtin("content")),
        Some(name) => {
            let attributes = match AttributeSet::builtin(name.get_ref()) {
                Some(set) => Some(set),
                None => match groups.get(name.get_ref()) {
                    Some(set) => *set,
                    None => {
                        let mut defined: Vec<&str> = groups.keys().map(String::as_str).collect();
                        defined.sort_unstable();
                        let defined = if defined.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", defined.join(", "))
                        };
                        diag.at(
                            name.span(),
                            format!("{key}.group"),
                            format!(
                                "unknown group `{}`, expected a built-in group ({}) or one defined in [groups]{defined}",
                                name.get_ref(),
                                BUILTIN_GROUPS.join(", ")
                            ),
                        );
                        None
                    }
                },
            };
            (name.get_ref().clone(), attributes)
        }
    };

    let include = diag.globs(&format!("{key}.include"), &rule.include);
    let exclude = diag.globs(&format!("{key}.exclude"), &rule.exclude);

    Some(Rule {
        path: path?,
        group,
        attributes: attributes?,
        recurse: rule.recurse.unwrap_or(true),
        one_filesystem: rule.one_filesystem.unwrap_or(true),
        include: include?,
        exclude: exclude?,
    })
}

/// Checks that `path` is absolute and has no `..`, and normalises it: `//` collapsed,
/// `.` components and a trailing `/` dropped.
fn normalize_absolute(path: &str) -> Result<PathBuf, String> {
    if path.contains('\0') {
        return Err("must not contain a NUL character".to_owned());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "must be an absolute path (starting with `/`), got `{path}`"
        ));
    }
    let normal: PathBuf = Path::new(path).components().collect();
    if normal.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "must not contain `..` components, got `{path}`; write the path it leads to"
        ));
    }
    Ok(normal)
}

/// Why a glob can never match or does not compile, if it is wrong.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err(
            "empty pattern: patterns match whole absolute paths, e.g. `/etc/mtab` or `**/*.swp`"
                .to_owned(),
        );
    }
    if !(pattern.starts_with('/') || pattern.starts_with("**")) {
        return Err(format!(
            "pattern `{pattern}` would never match: patterns match whole absolute paths, \
             so start it with `/` or `**`, e.g. `**/{pattern}`"
        ));
    }
    if pattern.len() > 1 && pattern.ends_with('/') {
        return Err(format!(
            "pattern `{pattern}` would never match: paths have no trailing `/`; write `{}` \
             (an excluded directory is not descended)",
            pattern.trim_end_matches('/')
        ));
    }
    GlobList::new(&[pattern])
        .map(drop)
        .map_err(|err| format!("invalid glob `{pattern}`: {}", err.reason))
}

impl Diagnostics<'_> {
    /// The value as `u64` when it lies in `0..=max`; otherwise reports it.
    fn in_range(&mut self, value: &Spanned<i64>, key: &str, max: u64, note: &str) -> Option<u64> {
        self.between(value, key, 0, max, note)
    }

    /// Compiles a pattern list, reporting every bad pattern at its own place.
    fn globs(&mut self, key: &str, patterns: &[Spanned<String>]) -> Option<GlobList> {
        let mut ok = true;
        for (index, pattern) in patterns.iter().enumerate() {
            if let Err(why) = check_pattern(pattern.get_ref()) {
                self.at(pattern.span(), format!("{key}[{index}]"), why);
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let texts: Vec<&str> = patterns.iter().map(|p| p.get_ref().as_str()).collect();
        match GlobList::new(&texts) {
            Ok(list) => Some(list),
            Err(err) => {
                // Each pattern compiled alone, so this is about the set as a whole.
                let span = patterns.get(err.index).map_or(0..0, Spanned::span);
                self.at(span, key, format!("invalid pattern list: {}", err.reason));
                None
            }
        }
    }

    /// Secret-key regular expressions, each compiled alone so an error points at its entry.
    /// An empty list is allowed: it turns masking off, which the doc says plainly.
    fn secret_keys(&mut self, key: &str, patterns: &[Spanned<String>]) -> Vec<String> {
        let mut keys = Vec::with_capacity(patterns.len());
        for (index, pattern) in patterns.iter().enumerate() {
            let text = pattern.get_ref();
            if text.trim().is_empty() {
                self.at(
                    pattern.span(),
                    format!("{key}[{index}]"),
                    "empty pattern: it would match every key and mask every value",
                );
                continue;
            }
            // Wrapped as the mask wraps it, so `a)|(b` cannot escape its group there.
            match regex::Regex::new(&format!("(?:{text})")) {
                Ok(_) => keys.push(text.clone()),
                Err(err) => {
                    // The crate's message draws a caret over several lines; its last line
                    // (`error: unclosed group`) is what fits a one-line diagnostic.
                    let text = err.to_string();
                    let why = text.lines().last().unwrap_or_default();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    self.at(
                        pattern.span(),
                        format!("{key}[{index}]"),
                        format!("invalid regular expression: {why}"),
                    )
                }
            }
        }
        keys
    }
}
