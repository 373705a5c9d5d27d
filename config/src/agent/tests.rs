use std::path::Path;
use std::time::Duration;

use driftwatch_common::attrs::{Attribute, AttributeSet};

use super::*;
use crate::error::ConfigError;

const FILE: &str = "/etc/driftwatch/agent.toml";

fn parse(text: &str) -> Result<AgentConfig, ConfigErrors> {
    AgentConfig::from_toml(text, Path::new(FILE))
}

fn valid(text: &str) -> AgentConfig {
    parse(text).unwrap_or_else(|errors| panic!("unexpected errors:\n{errors}\nin:\n{text}"))
}

fn failures(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("expected errors, got {config:#?}\nfrom:\n{text}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// `(line, column, key, message fragment)` of one expected error.
type Expected<'a> = (usize, usize, &'a str, &'a str);

/// Asserts that `text` fails with exactly `expected`, in order.
fn check(text: &str, expected: &[Expected<'_>]) {
    let errors = failures(text);
    let shown = ConfigErrors(errors.clone()).to_string();
    assert_eq!(errors.len(), expected.len(), "got:\n{shown}\nfrom:\n{text}");
    for (error, &(line, column, key, fragment)) in errors.iter().zip(expected) {
        assert_eq!(error.file, Path::new(FILE));
        assert_eq!(
            (error.line, error.column, error.key.as_deref()),
            (Some(line), Some(column), Some(key)),
            "got:\n{shown}\nfrom:\n{text}"
        );
        assert!(
            error.message.contains(fragment),
            "{error:?} lacks {fragment:?}"
        );
        assert_message_style(error);
    }
}

fn assert_message_style(error: &ConfigError) {
    let first = error.message.chars().next().expect("non-empty message");
    assert!(!first.is_uppercase(), "not lowercase: {error}");
    assert!(!error.message.ends_with('.'), "trailing period: {error}");
}

#[test]
fn each_validation_error_names_its_place_and_what_was_expected() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("state_dir = \"var/lib/dw\"\n[[rule]]\npath = \"/etc\"\n",
            (1, 13, "state_dir", "must be an absolute path")),
        ("[[rule]]\npath = \"etc\"\n",
            (2, 8, "rule[0].path", "must be an absolute path (starting with `/`), got `etc`")),
        ("[[rule]]\npath = \"\"\n",
            (2, 8, "rule[0].path", "must be an absolute path")),
        ("[[rule]]\npath = \"/etc/../usr\"\n",
            (2, 8, "rule[0].path", "must not contain `..`")),
        ("[[rule]]\npath = \"/etc\\u0000\"\n",
            (2, 8, "rule[0].path", "must not contain a NUL character")),
        ("[[rule]]\ngroup = \"content\"\n",
            (1, 1, "rule[0]", "missing `path`")),
        ("rule = []\n",
            (1, 8, "rule", "at least one [[rule]]")),
        ("[[rule]]\npath = \"/etc\"\n\n[[rule]]\npath = \"//etc/./\"\n",
            (5, 8, "rule[1].path", "duplicate rule for `/etc`: the first is on line 2")),
        ("[[rule]]\npath = \"/etc\"\ngroup = \"strcit\"\n",
            (3, 9, "rule[0].group", "unknown group `strcit`, expected a built-in group (content, permissions, growing, full, ignore)")),
        ("[groups]\nstrict = [\"hash\"]\n[[rule]]\npath = \"/etc\"\ngroup = \"strcit\"\n",
            (5, 9, "rule[0].group", "or one defined in [groups] (strict)")),
        ("[groups]\ncontent = [\"hash\"]\n[[rule]]\npath = \"/etc\"\n",
            (2, 1, "groups.content", "`content` is a built-in group and cannot be redefined")),
        ("[groups]\nstrict = [\"mode\", \"md5\"]\n[[rule]]\npath = \"/etc\"\n",
            (2, 19, "groups.strict[1]", "unknown attribute `md5`, expected one of: type, mode, uid, gid, size, growing")),
        ("[groups]\nnothing = []\n[[rule]]\npath = \"/etc\"\n",
            (2, 11, "groups.nothing", "use the built-in `ignore` group")),
        ("[groups]\nlogs = [\"type\", \"size\", \"growing\"]\n[[rule]]\npath = \"/etc\"\n",
            (2, 8, "groups.logs", "`size` and `growing` contradict each other")),
        ("[[rule]]\npath = \"/etc\"\nexclude = [\"/ok\", \"/etc/[a\"]\n",
            (3, 19, "rule[0].exclude[1]", "invalid glob `/etc/[a`")),
        ("[[rule]]\npath = \"/etc\"\nexclude = [\"*.swp\"]\n",
            (3, 12, "rule[0].exclude[0]", "would never match: patterns match whole absolute paths, so start it with `/` or `**`, e.g. `**/*.swp`")),
        ("[[rule]]\npath = \"/etc\"\ninclude = [\"\"]\n",
            (3, 12, "rule[0].include[0]", "empty pattern")),
        ("[[rule]]\npath = \"/etc\"\ninclude = [\"/etc/lvm/\"]\n",
            (3, 12, "rule[0].include[0]", "no trailing `/`; write `/etc/lvm`")),
        ("[snapshots]\nexclude = [\"id_rsa\"]\n[[rule]]\npath = \"/etc\"\n",
            (2, 12, "snapshots.exclude[0]", "e.g. `**/id_rsa`")),
        ("[scan]\nworkers = 257\n[[rule]]\npath = \"/etc\"\n",
            (2, 11, "scan.workers", "must be between 0 and 256 (0 = one per core), got 257")),
        ("[scan]\nworkers = -1\n[[rule]]\npath = \"/etc\"\n",
            (2, 11, "scan.workers", "got -1")),
        ("[scan]\nfull_rehash_interval_hours = -3\n[[rule]]\npath = \"/etc\"\n",
            (2, 30, "scan.full_rehash_interval_hours", "0 = never")),
        ("[snapshots]\nmax_bytes = 16777217\n[[rule]]\npath = \"/etc\"\n",
            (2, 13, "snapshots.max_bytes", "must be between 0 and 16777216 (16 MiB; 0 disables snapshots)")),
        ("[snapshots]\nsecret_keys = [\"pass\", \"api(_key\"]\n[[rule]]\npath = \"/etc\"\n",
            (2, 24, "snapshots.secret_keys[1]", "invalid regular expression: unclosed group")),
        ("[snapshots]\nsecret_keys = [\" \"]\n[[rule]]\npath = \"/etc\"\n",
            (2, 16, "snapshots.secret_keys[0]", "empty pattern: it would match every key")),
    ];
    for (text, expected) in cases {
        check(text, &[*expected]);
    }
}

#[test]
fn missing_rules_are_reported_without_a_place() {
    let errors = failures("state_dir = \"/var/lib/driftwatch\"\n");
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!((error.line, error.column), (None, None));
    assert_eq!(error.key.as_deref(), Some("rule"));
    assert!(error.message.contains("at least one [[rule]]"), "{error}");
}

#[test]
fn collects_every_semantic_error_in_file_order() {
    let text = "\
state_dir = \"relative\"

[scan]
workers = 1000

[groups]
strict = [\"mode\", \"checksum\"]

[[rule]]
path = \"/etc\"
exclude = [\"*.swp\", \"/etc/[x\"]

[[rule]]
path = \"/etc/\"
group = \"nope\"

[[rule]]
group = \"strict\"
";
    check(
        text,
        &[
            (1, 13, "state_dir", "absolute"),
            (4, 11, "scan.workers", "between 0 and 256"),
            (7, 19, "groups.strict[1]", "unknown attribute `checksum`"),
            (11, 12, "rule[0].exclude[0]", "`**/*.swp`"),
            (11, 21, "rule[0].exclude[1]", "invalid glob"),
            (14, 8, "rule[1].path", "first is on line 10"),
            (15, 9, "rule[1].group", "unknown group `nope`"),
            // A rule naming a group that is itself broken adds nothing beyond its own problems.
            (17, 1, "rule[2]", "missing `path`"),
        ],
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("[[rule]]\npath = \"/etc\"\nrecursive = false\n",
            (3, 1, "rule[0].recursive", "unknown field `recursive`, expected one of `path`, `group`")),
        ("[[rules]]\npath = \"/etc\"\n",
            (1, 3, "rules", "unknown field `rules`")),
        ("[scan]\nthreads = 4\n[[rule]]\npath = \"/etc\"\n",
            (2, 1, "scan.threads", "unknown field `threads`")),
        ("[snapshots]\nmax_size = 4\n[[rule]]\npath = \"/etc\"\n",
            (2, 1, "snapshots.max_size", "unknown field `max_size`")),
    ];
    for (text, expected) in cases {
        check(text, &[*expected]);
    }
}

#[test]
fn wrong_types_are_errors_in_toml_terms() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("[[rule]]\npath = \"/etc\"\nrecurse = \"yes\"\n",
            (3, 11, "rule[0].recurse", "invalid type: string \"yes\", expected a boolean")),
        ("[scan]\nworkers = \"4\"\n",
            (2, 11, "scan.workers", "expected an integer")),
        ("[scan]\nworkers = 1.5\n",
            (2, 11, "scan.workers", "expected an integer")),
        ("scan = 4\n",
            (1, 8, "scan", "expected a table")),
        ("[[rule]]\npath = \"/etc\"\nexclude = \"/etc/mtab\"\n",
            (3, 11, "rule[0].exclude", "expected an array")),
        ("[[rule]]\npath = \"/etc\"\nexclude = [\"/a\", 3]\n",
            (3, 18, "rule[0].exclude[1]", "invalid type: integer `3`, expected a string")),
        ("[groups]\nstrict = \"hash\"\n",
            (2, 10, "groups.strict", "expected an array")),
    ];
    for (text, expected) in cases {
        check(text, &[*expected]);
    }
}

#[test]
fn syntax_errors_are_all_reported() {
    let errors = failures("[[rule]]\npath = \"/etc\nrecurse = = true\n");
    assert!(!errors.is_empty());
    let error = &errors[0];
    // The string runs to the end of the line, where the missing quote is reported.
    assert_eq!((error.line, error.column), (Some(2), Some(13)), "{error}");
    assert!(error.message.starts_with("syntax error: "), "{error}");
    for error in &errors {
        assert_message_style(error);
    }

    let more = failures("[scan\nworkers = 1\nx = = 2\n");
    let places: Vec<_> = more.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        places,
        [(Some(1), Some(6)), (Some(3), Some(5)), (Some(3), Some(7))],
        "{}",
        ConfigErrors(more.clone())
    );
    assert!(more[0].message.contains("unclosed table"), "{}", more[0]);
}

#[test]
fn duplicate_keys_are_syntax_errors_naming_the_key() {
    let errors = failures("[scan]\nworkers = 1\nworkers = 2\n[[rule]]\npath = \"/etc\"\n");
    let [error] = errors.as_slice() else {
        panic!("one error expected: {errors:?}")
    };
    assert_eq!((error.line, error.column), (Some(3), Some(1)), "{error}");
    assert_eq!(error.message, "syntax error: duplicate key `workers`");
}

#[test]
fn defaults_apply_to_everything_left_out() {
    let config = valid("[[rule]]\npath = \"/srv\"\n");
    assert_eq!(config.source, Path::new(FILE));
    assert_eq!(config.state_dir, Path::new("/var/lib/driftwatch"));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(config.scan.workers, cores);
    assert_eq!(
        config.scan.full_rehash_interval,
        Some(Duration::from_secs(168 * 3600))
    );
    assert_eq!(config.snapshots.max_bytes, 65536);
    assert_eq!(
        config.snapshots.exclude.patterns(),
        DEFAULT_SNAPSHOT_EXCLUDE
    );
    let [rule] = config.rules.as_slice() else {
        panic!("one rule expected: {:?}", config.rules)
    };
    assert_eq!(rule.path, Path::new("/srv"));
    assert_eq!(rule.group, "content");
    assert_eq!(Some(rule.attributes), AttributeSet::builtin("content"));
    assert!(rule.recurse && rule.one_filesystem);
    assert!(rule.include.is_empty() && rule.exclude.is_empty());
}

#[test]
fn explicit_settings_are_taken_as_written() {
    let config = valid(
        "state_dir = \"/srv/dw/\"
[scan]
workers = 3
full_rehash_interval_hours = 0
[snapshots]
max_bytes = 0
exclude = [\"/srv/secret/**\"]
secret_keys = [\"^db_\", \"apikey\"]
[[rule]]
path = \"/srv\"
group = \"permissions\"
recurse = false
one_filesystem = false
include = [\"/srv/*.conf\"]
exclude = [\"**/*.tmp\"]
",
    );
    assert_eq!(config.state_dir, Path::new("/srv/dw"));
    assert_eq!(config.scan.workers, 3);
    assert_eq!(config.scan.full_rehash_interval, None);
    assert_eq!(config.snapshots.max_bytes, 0);
    assert_eq!(config.snapshots.exclude.patterns(), ["/srv/secret/**"]);
    assert_eq!(config.snapshots.secret_keys, ["^db_", "apikey"]);
    let rule = &config.rules[0];
    assert_eq!(rule.group, "permissions");
    assert!(!rule.attributes.reads_content());
    assert!(!rule.recurse && !rule.one_filesystem);
    assert!(rule.include.is_match(Path::new("/srv/a.conf")));
    assert!(!rule.include.is_match(Path::new("/srv/sub/a.conf")));
    assert!(rule.exclude.is_match(Path::new("/srv/sub/x.tmp")));
}

#[test]
fn extreme_values_in_range_are_accepted() {
    let config = valid(
        "[scan]\nworkers = 256\nfull_rehash_interval_hours = 87600\n\
         [snapshots]\nmax_bytes = 16777216\n[[rule]]\npath = \"/\"\n",
    );
    assert_eq!(config.scan.workers, 256);
    assert_eq!(
        config.scan.full_rehash_interval,
        Some(Duration::from_secs(87_600 * 3600))
    );
    assert_eq!(config.snapshots.max_bytes, 16 * 1024 * 1024);
    assert_eq!(config.rules[0].path, Path::new("/"));
}

#[test]
fn rule_paths_are_normalised() {
    let cases = [
        ("/etc/", "/etc"),
        ("//etc//ssh//", "/etc/ssh"),
        ("/etc/./ssh/.", "/etc/ssh"),
        ("/", "/"),
        ("//", "/"),
        ("/./", "/"),
    ];
    for (written, normal) in cases {
        let config = valid(&format!("[[rule]]\npath = {written:?}\n"));
        assert_eq!(config.rules[0].path, Path::new(normal), "{written}");
    }
}

#[test]
fn custom_groups_resolve_to_their_attributes() {
    let config = valid(
        "[groups]
strict = [\"type\", \"mode\", \"uid\", \"gid\", \"size\", \"hash\", \"xattrs\", \"inode\"]
appendonly = [\"type\", \"mode\", \"growing\"]
[[rule]]
path = \"/etc\"
group = \"strict\"
[[rule]]
path = \"/var/log/wtmp\"
group = \"appendonly\"
[[rule]]
path = \"/tmp\"
group = \"ignore\"
",
    );
    use Attribute::*;
    let [strict, appendonly, ignore] = config.rules.as_slice() else {
        panic!("three rules expected")
    };
    assert_eq!(strict.group, "strict");
    assert_eq!(
        strict.attributes,
        AttributeSet::of(&[Type, Mode, Uid, Gid, Size, Hash, Xattrs, Inode])
    );
    assert_eq!(
        appendonly.attributes,
        AttributeSet::of(&[Type, Mode, Growing])
    );
    assert!(ignore.attributes.is_empty());
}

#[test]
fn error_display_shows_file_line_column_key_and_message() {
    let errors = parse("[[rule]]\npath = \"/etc\"\nexclude = [\"*.swp\"]\n").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "/etc/driftwatch/agent.toml:3:12: rule[0].exclude[0]: pattern `*.swp` would never match: \
         patterns match whole absolute paths, so start it with `/` or `**`, e.g. `**/*.swp`"
    );
}

#[test]
fn the_example_file_is_valid_and_covers_the_essentials() {
    let config = AgentConfig::default_policy();
    assert_eq!(config.source, Path::new("<built-in default>"));
    assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
    for path in [
        "/etc",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/boot",
        "/root/.ssh",
        "/var/spool/cron",
    ] {
        let rule = config
            .rules
            .iter()
            .find(|rule| rule.path == Path::new(path))
            .unwrap_or_else(|| panic!("no rule for {path}"));
        assert!(rule.attributes.reads_content(), "{path} is not hashed");
    }
    let etc = &config.rules[0];
    for noisy in [
        "/etc/mtab",
        "/etc/adjtime",
        "/etc/ld.so.cache",
        "/etc/lvm/archive",
        "/etc/x/.y.conf.swp",
    ] {
        assert!(
            etc.exclude.is_match(Path::new(noisy)),
            "{noisy} not excluded"
        );
    }
    assert!(!etc.exclude.is_match(Path::new("/etc/ssh/sshd_config")));
    // Every line of the shipped file parses the same when loaded from disk by its packaged name.
    let again = AgentConfig::from_toml(DEFAULT_AGENT_TOML, Path::new(FILE)).unwrap();
    assert_eq!(again.policy_digest(), config.policy_digest());
}

#[test]
fn the_example_spells_out_the_built_in_snapshot_exclusions() {
    let config = AgentConfig::default_policy();
    assert_eq!(
        config.snapshots.exclude.patterns(),
        DEFAULT_SNAPSHOT_EXCLUDE
    );
    assert_eq!(config.snapshots.max_bytes, DEFAULT_SNAPSHOT_MAX_BYTES);
    assert_eq!(config.snapshots.secret_keys, DEFAULT_SECRET_KEYS);
    let secrets = &config.snapshots.exclude;
    for secret in [
        "/etc/shadow",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssl/private/site.key",
        "/etc/pki/tls/private/site",
        "/root/.ssh/id_ed25519",
        "/etc/NetworkManager/system-connections/wifi.nmconnection",
    ] {
        assert!(
            secrets.is_match(Path::new(secret)),
            "{secret} would be snapshotted"
        );
    }
    for public in [
        "/etc/passwd",
        "/etc/ssh/sshd_config",
        "/etc/ssh/ssh_host_ed25519_key.pub",
        "/root/.ssh/authorized_keys",
    ] {
        assert!(
            !secrets.is_match(Path::new(public)),
            "{public} would not be snapshotted"
        );
    }
}

#[test]
fn adhoc_watches_one_path_with_defaults() {
    let config = AgentConfig::adhoc(Path::new("/srv//www/./"));
    assert_eq!(config.source, Path::new("<command line>"));
    assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
    assert!(config.scan.workers >= 1);
    assert_eq!(
        config.scan.full_rehash_interval,
        Some(Duration::from_secs(
            DEFAULT_FULL_REHASH_INTERVAL_HOURS * 3600
        ))
    );
    assert_eq!(config.snapshots.max_bytes, DEFAULT_SNAPSHOT_MAX_BYTES);
    assert_eq!(
        config.snapshots.exclude.patterns(),
        DEFAULT_SNAPSHOT_EXCLUDE
    );
    let [rule] = config.rules.as_slice() else {
        panic!("one rule expected")
    };
    assert_eq!(rule.path, Path::new("/srv/www"));
    assert_eq!(rule.group, "content");
    assert_eq!(Some(rule.attributes), AttributeSet::builtin("content"));
    assert!(rule.recurse && rule.one_filesystem);
    assert!(rule.include.is_empty() && rule.exclude.is_empty());
    // Same policy as the equivalent file (ad-hoc checks track no state sources).
    let file = valid("[sources]\nenabled = []\n[[rule]]\npath = \"/srv/www\"\n");
    assert_eq!(config.policy_digest(), file.policy_digest());
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[[rule]]\npath = \"/etc\"\n").unwrap();
    let config = AgentConfig::load(&path).unwrap();
    assert_eq!(config.source, path);

    std::fs::write(&path, "[[rule]]\npath = \"etc\"\n").unwrap();
    let errors = AgentConfig::load(&path).unwrap_err();
    assert_eq!(errors.0[0].file, path);
    assert_eq!(errors.0[0].line, Some(2));
}

#[test]
fn load_of_a_missing_file_gives_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let ConfigErrors(errors) = AgentConfig::load(&path).unwrap_err();
    let [error] = errors.as_slice() else {
        panic!("one error expected: {errors:?}")
    };
    assert_eq!(error.file, path);
    assert_eq!(
        (error.line, error.column, error.key.as_deref()),
        (None, None, None)
    );
    assert!(
        error
            .message
            .starts_with("cannot read the file: no such file or directory"),
        "{error}"
    );
    assert_message_style(error);
}

#[test]
fn load_rejects_text_that_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, b"[[rule]]\npath = \"/et\xffc\"\n").unwrap();
    let ConfigErrors(errors) = AgentConfig::load(&path).unwrap_err();
    assert_eq!((errors[0].line, errors[0].column), (Some(2), Some(12)));
    assert!(errors[0].message.contains("utf-8"), "{}", errors[0]);
}

const DIGEST_BASE: &str = "
[snapshots]
max_bytes = 4096
exclude = [\"/etc/shadow\", \"**/*.key\"]
[[rule]]
path = \"/etc\"
exclude = [\"/etc/mtab\", \"**/*.swp\"]
[[rule]]
path = \"/usr/bin\"
group = \"permissions\"
";

#[test]
fn policy_digest_is_stable() {
    let digest = valid(DIGEST_BASE).policy_digest();
    assert_eq!(digest, valid(DIGEST_BASE).policy_digest());
    // Pinned: baselines store this digest, so a change in the serialisation would make every
    // existing baseline look like it was made under another policy. Change it only on purpose.
    assert_eq!(
        digest.to_hex(),
        "7a7bd4378afc145046c6a73a06cf40faa4b21e92bc4b26fb9aa1188e8e2fc593",
    );
}

#[test]
fn policy_digest_ignores_what_does_not_decide_what_is_recorded() {
    let base = valid(DIGEST_BASE).policy_digest();
    let same = [
        // Operational settings.
        DIGEST_BASE.replace("[snapshots]", "state_dir = \"/srv/dw\"\n[scan]\nworkers = 7\nfull_rehash_interval_hours = 1\n[snapshots]"),
        // Rule order and pattern order.
        "[snapshots]\nmax_bytes = 4096\nexclude = [\"**/*.key\", \"/etc/shadow\"]\n\
         [[rule]]\npath = \"/usr/bin\"\ngroup = \"permissions\"\n\
         [[rule]]\npath = \"/etc/\"\nexclude = [\"**/*.swp\", \"/etc/mtab\"]\n"
            .to_owned(),
        // A custom group with the same attributes under another name.
        DIGEST_BASE.replace("group = \"permissions\"", "group = \"perms\"")
            + "[groups]\nperms = [\"type\", \"mode\", \"uid\", \"gid\", \"xattrs\", \"link_target\", \"rdev\"]\n",
    ];
    for text in same {
        assert_eq!(valid(&text).policy_digest(), base, "{text}");
    }
}

#[test]
fn policy_digest_changes_with_anything_that_decides_what_is_recorded() {
    let variants = [
        DIGEST_BASE.replace("path = \"/usr/bin\"", "path = \"/usr/sbin\""),
        DIGEST_BASE.replace("group = \"permissions\"", "group = \"full\""),
        DIGEST_BASE.replace(
            "group = \"permissions\"",
            "group = \"permissions\"\nrecurse = false",
        ),
        DIGEST_BASE.replace(
            "group = \"permissions\"",
            "group = \"permissions\"\none_filesystem = false",
        ),
        DIGEST_BASE.replace(
            "group = \"permissions\"",
            "group = \"permissions\"\ninclude = [\"/usr/bin/s*\"]",
        ),
        DIGEST_BASE.replace(
            "group = \"permissions\"",
            "group = \"permissions\"\nexclude = [\"/usr/bin/s*\"]",
        ),
        DIGEST_BASE.replace("\"/etc/mtab\", ", ""),
        // The same pattern moved from exclude to include.
        DIGEST_BASE.replace(
            "exclude = [\"/etc/mtab\", \"**/*.swp\"]",
            "include = [\"/etc/mtab\", \"**/*.swp\"]",
        ),
        DIGEST_BASE.replace("max_bytes = 4096", "max_bytes = 4097"),
        DIGEST_BASE.replace("\"/etc/shadow\", \"**/*.key\"", "\"/etc/shadow\""),
        DIGEST_BASE.replace(
            "[[rule]]\npath = \"/usr/bin\"\ngroup = \"permissions\"\n",
            "",
        ),
    ];
    let mut seen = vec![valid(DIGEST_BASE).policy_digest()];
    for text in &variants {
        let digest = valid(text).policy_digest();
        assert!(
            !seen.contains(&digest),
            "digest did not change for:\n{text}"
        );
        seen.push(digest);
    }
}

#[test]
fn snapshot_include_limits_and_exclude_overrides() {
    let config = AgentConfig::from_toml(
        "[snapshots]\ninclude = [\"/etc/**\"]\nexclude = [\"/etc/shadow\"]\n[[rule]]\npath = \"/\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let snapshots = &config.snapshots;
    assert!(snapshots.allows(Path::new("/etc/ssh/sshd_config")));
    assert!(!snapshots.allows(Path::new("/etc/shadow")));
    assert!(!snapshots.allows(Path::new("/usr/share/doc/x.txt")));
    let shipped = AgentConfig::default_policy();
    assert!(shipped.snapshots.allows(Path::new("/etc/nginx/nginx.conf")));
    assert!(!shipped.snapshots.allows(Path::new("/usr/lib/python3/x.py")));
}

#[test]
fn sources_default_to_all_and_reject_unknown_names() {
    let all = AgentConfig::from_toml("[[rule]]\npath = \"/etc\"\n", Path::new("t.toml")).unwrap();
    assert_eq!(all.sources.enabled, SOURCE_NAMES);
    assert_eq!(all.sources.interval, Duration::from_secs(300));
    let some = AgentConfig::from_toml(
        "[sources]\nenabled = [\"package\", \"user\"]\ninterval_secs = 60\n[[rule]]\npath = \"/etc\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(some.sources.enabled, ["package", "user"]);
    let errors = AgentConfig::from_toml(
        "[sources]\nenabled = [\"packages\", \"user\", \"user\"]\ninterval_secs = 0\n[[rule]]\npath = \"/etc\"\n",
        Path::new("t.toml"),
    )
    .unwrap_err();
    let keys: Vec<_> = errors
        .0
        .iter()
        .map(|e| (e.line, e.key.clone().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            (Some(2), "sources.enabled[0]".to_owned()),
            (Some(2), "sources.enabled[2]".to_owned()),
            (Some(3), "sources.interval_secs".to_owned())
        ]
    );
    assert!(
        errors.0[0]
            .message
            .contains("expected one of package, sysctl")
    );
    assert!(
        AgentConfig::adhoc(Path::new("/srv"))
            .sources
            .enabled
            .is_empty()
    );
    assert_eq!(all.sources.root, Path::new("/"));
    let image = AgentConfig::from_toml(
        "[sources]\nroot = \"/mnt/image/\"\n[[rule]]\npath = \"/etc\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(image.sources.root, Path::new("/mnt/image"));
    assert_ne!(image.policy_digest(), all.policy_digest());
}

#[test]
fn daemon_sections_default_sensibly() {
    let config = valid("[[rule]]\npath = \"/etc\"\n");
    let daemon = &config.daemon;
    assert_eq!(daemon.scan_interval, Some(Duration::from_secs(3600)));
    assert_eq!(daemon.scan_max_read_bytes_per_sec, Some(64 << 20));
    assert_eq!(daemon.collector.url, None);
    assert_eq!(daemon.collector.timeout, Duration::from_secs(30));
    assert!(daemon.watch.enabled);
    assert_eq!(daemon.watch.max_watches, None);
    assert_eq!(daemon.spool.max_events, 100_000);
    assert_eq!(daemon.heartbeat.interval, Duration::from_secs(60));
    assert_eq!(
        daemon.credential_file(&config.state_dir),
        Path::new("/var/lib/driftwatch/credential.json")
    );
}

#[test]
fn daemon_sections_are_read() {
    let config = valid(
        "[scan]\ninterval_secs = 0\nmax_read_mib_per_sec = 0\n\
         [collector]\nurl = \"https://c.example.org:8443/\"\nca_file = \"/etc/driftwatch/ca.pem\"\n\
         client_cert_file = \"/etc/driftwatch/a.pem\"\nclient_key_file = \"/etc/driftwatch/a.key\"\n\
         credential_file = \"/var/lib/dw/cred.json\"\ntimeout_secs = 5\nbatch_max_events = 10\n\
         batch_max_bytes = 2048\nbatch_linger_ms = 0\nretry_max_secs = 9\n\
         [watch]\nenabled = false\nsettle_ms = 0\nmax_delay_ms = 50\nmax_watches = 7\n\
         queue_capacity = 16\nfallback_scan_secs = 2\n\
         [spool]\nmax_events = 3\nmax_bytes = 4096\n[heartbeat]\ninterval_secs = 1\n\
         [[rule]]\npath = \"/etc\"\n",
    );
    let d = &config.daemon;
    assert_eq!(d.scan_interval, None);
    assert_eq!(d.scan_max_read_bytes_per_sec, None);
    assert_eq!(
        d.collector.url.as_deref(),
        Some("https://c.example.org:8443")
    );
    assert_eq!(
        d.collector.ca_file.as_deref(),
        Some(Path::new("/etc/driftwatch/ca.pem"))
    );
    assert_eq!(d.collector.batch_max_events, 10);
    assert_eq!(d.collector.batch_linger, Duration::ZERO);
    assert_eq!(d.collector.retry_max, Duration::from_secs(9));
    assert!(!d.watch.enabled);
    assert_eq!(d.watch.max_watches, Some(7));
    assert_eq!(d.watch.max_delay, Duration::from_millis(50));
    assert_eq!(d.watch.fallback_scan_interval, Duration::from_secs(2));
    assert_eq!((d.spool.max_events, d.spool.max_bytes), (3, 4096));
    assert_eq!(d.heartbeat.interval, Duration::from_secs(1));
    assert_eq!(
        d.credential_file(&config.state_dir),
        Path::new("/var/lib/dw/cred.json")
    );
}

#[test]
fn daemon_errors_name_their_place() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("[collector]\nurl = \"http://collector.example.org\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 7, "collector.url", "plain `http` is only allowed to a loopback address")),
        ("[collector]\nurl = \"ftp://x\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 7, "collector.url", "scheme must be `https`")),
        ("[collector]\nurl = \"collector:8443\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 7, "collector.url", "must be an absolute URL")),
        ("[collector]\nurl = \"https://u:p@c.example.org\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 7, "collector.url", "must not contain a user or password")),
        ("[collector]\nurl = \"https://c.example.org:99999\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 7, "collector.url", "port must be a number from 1 to 65535")),
        ("[collector]\nca_file = \"ca.pem\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 11, "collector.ca_file", "must be an absolute path")),
        ("[collector]\nclient_cert_file = \"/etc/a.pem\"\n[[rule]]\npath = \"/etc\"\n",
            (2, 20, "collector.client_cert_file", "needs its key")),
        ("[collector]\ntimeout_secs = 0\n[[rule]]\npath = \"/etc\"\n",
            (2, 16, "collector.timeout_secs", "must be between 1 and 3600")),
        ("[watch]\nsettle_ms = 500\nmax_delay_ms = 100\n[[rule]]\npath = \"/etc\"\n",
            (3, 16, "watch.max_delay_ms", "must be at least watch.settle_ms")),
        ("[watch]\nqueue_capacity = 1\n[[rule]]\npath = \"/etc\"\n",
            (2, 18, "watch.queue_capacity", "must be between 16 and")),
        ("[spool]\nmax_events = -1\n[[rule]]\npath = \"/etc\"\n",
            (2, 14, "spool.max_events", "got -1")),
        ("[heartbeat]\ninterval_secs = 0\n[[rule]]\npath = \"/etc\"\n",
            (2, 17, "heartbeat.interval_secs", "must be between 1 and 86400")),
        ("[scan]\ninterval_secs = -5\n[[rule]]\npath = \"/etc\"\n",
            (2, 17, "scan.interval_secs", "0 = never")),
        ("[watch]\nenable = true\n[[rule]]\npath = \"/etc\"\n",
            (2, 1, "watch.enable", "unknown field `enable`")),
    ];
    for (text, expected) in cases {
        check(text, std::slice::from_ref(expected));
    }
}

#[test]
fn loopback_http_is_allowed_for_local_collectors_and_tests() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9/x",
    ] {
        let text = format!("[collector]\nurl = \"{url}\"\n[[rule]]\npath = \"/etc\"\n");
        assert_eq!(valid(&text).daemon.collector.url.as_deref(), Some(url));
    }
}

#[test]
fn agent_metrics_are_off_by_default_and_compile() {
    let config = valid("[[rule]]\npath = \"/etc\"\n");
    assert_eq!(config.metrics, metrics::MetricsSettings::default());
    assert_eq!(
        (config.metrics.listen, config.metrics.textfile),
        (None, None)
    );
    let config = valid(
        "[[rule]]\npath = \"/etc\"\n[metrics]\nlisten = \"127.0.0.1:9465\"\n\
         textfile = \"/var/lib/prometheus/node-exporter//driftwatch.prom\"\n\
         textfile_interval_secs = 60\n",
    );
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9465".parse().unwrap())
    );
    assert_eq!(
        config.metrics.textfile.as_deref(),
        Some(Path::new(
            "/var/lib/prometheus/node-exporter/driftwatch.prom"
        ))
    );
    assert_eq!(config.metrics.textfile_interval, Duration::from_secs(60));
}

#[test]
fn bad_agent_metrics_name_their_place() {
    check(
        "[[rule]]\npath = \"/etc\"\n[metrics]\nlisten = \"localhost\"\n\
         textfile = \"/var/lib/node/driftwatch.txt\"\ntextfile_interval_secs = 0\n",
        &[
            (4, 10, "metrics.listen", "IP address and port"),
            (5, 12, "metrics.textfile", "`.prom`"),
            (
                6,
                26,
                "metrics.textfile_interval_secs",
                "between 1 and 3600",
            ),
        ],
    );
    check(
        "[[rule]]\npath = \"/etc\"\n[metrics]\ntextfile = \"driftwatch.prom\"\n",
        &[(4, 12, "metrics.textfile", "absolute path")],
    );
    check(
        "[[rule]]\npath = \"/etc\"\n[metrics]\nport = 9465\n",
        &[(4, 1, "metrics.port", "unknown")],
    );
}
