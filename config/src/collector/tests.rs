use std::path::Path;
use std::time::Duration;

use super::*;
use crate::error::ConfigError;

const FILE: &str = "/etc/driftwatch/collector.toml";

fn parse(text: &str) -> Result<CollectorConfig, ConfigErrors> {
    CollectorConfig::from_toml(text, Path::new(FILE))
}

fn valid(text: &str) -> CollectorConfig {
    parse(text).unwrap_or_else(|errors| panic!("unexpected errors:\n{errors}\nin:\n{text}"))
}

/// `(line, column, key, message fragment)` of one expected error.
type Expected<'a> = (usize, usize, &'a str, &'a str);

/// Asserts that `text` fails with exactly `expected`, in order.
#[track_caller]
fn check(text: &str, expected: &[Expected<'_>]) {
    let errors = match parse(text) {
        Ok(config) => panic!("expected errors, got {config:#?}\nfrom:\n{text}"),
        Err(ConfigErrors(errors)) => errors,
    };
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
fn the_shipped_file_is_valid_and_loopback_only() {
    let config = valid(DEFAULT_COLLECTOR_TOML);
    assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(config.transport, Transport::PlainHttp);
    assert_eq!(
        config.db_path(),
        Path::new("/var/lib/driftwatch-collector/collector.db")
    );
    assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(config.max_export_rows, DEFAULT_MAX_EXPORT_ROWS);
    assert_eq!(config.hold, Duration::from_secs(300));
    assert_eq!(
        config.alerts,
        vec![AlertSink {
            name: "jsonl".into(),
            retry_max: Duration::from_secs(DEFAULT_RETRY_MAX_SECS),
            target: SinkTarget::JsonLines {
                path: "/var/lib/driftwatch-collector/alerts.jsonl".into()
            }
        }]
    );
    // And it loads from disk the same way (the file packaging installs).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/collector.toml");
    assert_eq!(CollectorConfig::load(&path).unwrap().listen, config.listen);
}

#[test]
fn the_shipped_commented_sinks_are_valid_when_uncommented() {
    // Only the sink examples (after the first commented [[alert]]), not [tls].
    let mut in_sinks = false;
    let uncommented: String = DEFAULT_COLLECTOR_TOML
        .lines()
        .map(|line| {
            in_sinks |= line == "# [[alert]]";
            let key = line.strip_prefix("# ").filter(|rest| {
                in_sinks
                    && (rest.starts_with("[[alert]]")
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }))
            });
            format!("{}\n", key.unwrap_or(line))
        })
        .collect();
    let config = valid(&uncommented);
    let kinds: Vec<(&str, &str)> = config
        .alerts
        .iter()
        .map(|s| (s.name.as_str(), s.target.type_name()))
        .collect();
    assert_eq!(
        kinds,
        [("jsonl", "jsonl"), ("soc", "webhook"), ("syslog", "syslog")]
    );
}

#[test]
fn defaults_apply_to_unset_keys() {
    let config = valid("plain_http = true\n");
    assert_eq!(config.state_dir, Path::new(DEFAULT_COLLECTOR_STATE_DIR));
    assert_eq!(config.burst, Duration::from_secs(DEFAULT_BURST_SECS));
    assert_eq!(config.clock_skew_tolerance, Duration::from_secs(60));
    assert_eq!(config.silent_after, Duration::from_secs(300));
    assert_eq!(config.emergency_approval, Duration::from_secs(86_400));
    assert!(config.alerts.is_empty());
}

#[test]
fn tls_and_zero_hold_are_accepted() {
    let config = valid(
        "listen = \"0.0.0.0:8443\"\nhold_secs = 0\n[tls]\ncert = \"/etc/c.pem\"\nkey = \"/etc/k.pem\"\n",
    );
    assert_eq!(
        config.transport,
        Transport::Tls {
            cert: "/etc/c.pem".into(),
            key: "/etc/k.pem".into()
        }
    );
    assert_eq!(config.hold, Duration::ZERO);
    assert!(config.check_listen("10.0.0.1:443".parse().unwrap()).is_ok());
}

#[test]
fn plain_http_on_the_network_needs_an_explicit_allowance() {
    check(
        "listen = \"0.0.0.0:8080\"\nplain_http = true\n",
        &[(2, 14, "plain_http", "would send tokens in clear text")],
    );
    let config =
        valid("listen = \"0.0.0.0:8080\"\nplain_http = true\nallow_plain_http_on_network = true\n");
    assert!(config.check_listen("0.0.0.0:8080".parse().unwrap()).is_ok());
    // A loopback file, overridden on the command line with a network address.
    let loopback = valid("plain_http = true\n");
    assert!(loopback.check_listen("[::1]:0".parse().unwrap()).is_ok());
    let err = loopback
        .check_listen("192.0.2.1:80".parse().unwrap())
        .unwrap_err();
    assert!(err.contains("allow_plain_http_on_network"), "{err}");
}

#[test]
fn each_validation_error_names_its_place() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("listen = \"localhost:80\"\nplain_http = true\n",
            (1, 10, "listen", "expected an IP address and port")),
        ("plain_http = true\n[tls]\ncert = \"/c\"\nkey = \"/k\"\n",
            (2, 1, "tls", "both [tls] and plain_http = true")),
        ("[tls]\ncert = \"/c\"\n",
            (1, 1, "tls", "missing `key`")),
        ("[tls]\ncert = \"c.pem\"\nkey = \"/k\"\n",
            (2, 8, "tls.cert", "must be an absolute path")),
        ("plain_http = false\n",
            (1, 14, "plain_http", "no [tls] is configured")),
        ("plain_http = true\nstate_dir = \"/var/../x\"\n",
            (2, 13, "state_dir", "must not contain `..`")),
        ("plain_http = true\nmax_body_bytes = 10\n",
            (2, 18, "max_body_bytes", "must be between 1024 and 268435456, got 10")),
        ("plain_http = true\nmax_export_rows = 0\n",
            (2, 19, "max_export_rows", "must be between 1 and 10000000, got 0")),
        ("plain_http = true\nhold_secs = -1\n",
            (2, 13, "hold_secs", "must be between 0 and 86400, got -1")),
        ("plain_http = true\nemergency_approval_secs = 59\n",
            (2, 27, "emergency_approval_secs", "between 60 and 2592000, got 59")),
        ("plain_http = true\nsilent_after_secs = 1\n",
            (2, 21, "silent_after_secs", "between 10 and 604800")),
        ("plain_http = true\n[[alert]]\ntype = \"slack\"\n",
            (3, 8, "alert[0].type", "use type = \"webhook\" with format = \"slack\"")),
        ("plain_http = true\n[[alert]]\ntype = \"email\"\n",
            (3, 8, "alert[0].type", "unknown alert type `email`")),
        ("plain_http = true\n[[alert]]\npath = \"/x\"\n",
            (2, 1, "alert[0]", "missing `type`")),
        ("plain_http = true\n[[alert]]\ntype = \"jsonl\"\n",
            (2, 1, "alert[0]", "missing `path`")),
        ("plain_http = true\n[[alert]]\ntype = \"jsonl\"\npath = \"/x\"\nurl = \"u\"\n",
            (5, 7, "alert[0].url", "does not apply to a jsonl sink (it takes path)")),
        ("[tls]\ncert = \"/c\"\nkey = \"/k\"\nallow_plain_http_on_network = true\n",
            (4, 1, "tls.allow_plain_http_on_network", "unknown field `allow_plain_http_on_network`, expected one of `cert`, `key`, `client_ca`")),
    ];
    for (text, expected) in cases {
        check(text, &[*expected]);
    }
}

#[test]
fn a_file_without_a_transport_says_how_to_choose() {
    let errors = parse("listen = \"127.0.0.1:1\"\n").unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key.as_deref(), Some("tls"));
    assert!(
        errors[0].message.contains("plain_http = true"),
        "{}",
        errors[0]
    );
}

#[test]
fn collects_every_error_in_file_order() {
    check(
        "\
listen = \"nowhere\"
plain_http = true
hold_secs = 100000

[[alert]]
type = \"slack\"

[[alert]]
type = \"jsonl\"
path = \"relative.jsonl\"
",
        &[
            (1, 10, "listen", "expected an IP address"),
            (3, 13, "hold_secs", "between 0 and 86400"),
            (6, 8, "alert[0].type", "unknown alert type `slack`"),
            (10, 8, "alert[1].path", "absolute"),
        ],
    );
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("plain_http = true\nhold = 3\n",
            (2, 1, "hold", "unknown field `hold`")),
        ("plain_http = \"yes\"\n",
            (1, 14, "plain_http", "expected a boolean")),
        ("plain_http = true\nhold_secs = \"5\"\n",
            (2, 13, "hold_secs", "expected an integer")),
        ("plain_http = true\nalert = 3\n",
            (2, 9, "alert", "expected an array")),
    ];
    for (text, expected) in cases {
        check(text, &[*expected]);
    }
}

#[test]
fn syntax_errors_have_a_place() {
    let errors = parse("plain_http = true\nlisten = \n").unwrap_err().0;
    assert!(errors[0].line.is_some(), "{errors:?}");
    assert!(errors[0].message.starts_with("syntax error"), "{errors:?}");
}

const PLAIN: &str = "plain_http = true\n";

#[test]
fn every_sink_type_compiles_with_its_settings() {
    let config = valid(&format!(
        "{PLAIN}\
[[alert]]
type = \"webhook\"
name = \"soc-hook\"
url = \"https://hooks.example:8443/dw?x=1\"
format = \"slack\"
ca_file = \"/etc/driftwatch/ca.pem\"
secret_file = \"/etc/driftwatch/hook.secret\"
secret_header = \"X-Hook-Token\"
signing_secret_file = \"/etc/driftwatch/hook.signing\"
timeout_secs = 3
retry_max_secs = 60

[[alert]]
type = \"syslog\"
address = \"[::1]:6514\"
protocol = \"tcp\"
facility = \"local3\"
app_name = \"dw-prod\"

[[alert]]
type = \"webhook\"
url = \"http://127.0.0.1:9000/\"
"
    ));
    assert_eq!(
        config.alerts,
        vec![
            AlertSink {
                name: "soc-hook".into(),
                retry_max: Duration::from_secs(60),
                target: SinkTarget::Webhook(Webhook {
                    url: "https://hooks.example:8443/dw?x=1".into(),
                    format: WebhookFormat::Slack,
                    ca_file: Some("/etc/driftwatch/ca.pem".into()),
                    secret_file: Some("/etc/driftwatch/hook.secret".into()),
                    secret_header: Some("X-Hook-Token".into()),
                    signing_secret_file: Some("/etc/driftwatch/hook.signing".into()),
                    timeout: Duration::from_secs(3),
                }),
            },
            AlertSink {
                name: "syslog".into(),
                retry_max: Duration::from_secs(DEFAULT_RETRY_MAX_SECS),
                target: SinkTarget::Syslog(Syslog {
                    address: "[::1]:6514".into(),
                    protocol: SyslogProtocol::Tcp,
                    facility: 19,
                    app_name: "dw-prod".into(),
                    timeout: Duration::from_secs(DEFAULT_SINK_TIMEOUT_SECS),
                }),
            },
            AlertSink {
                name: "webhook".into(),
                retry_max: Duration::from_secs(DEFAULT_RETRY_MAX_SECS),
                target: SinkTarget::Webhook(Webhook {
                    url: "http://127.0.0.1:9000/".into(),
                    format: WebhookFormat::Json,
                    ca_file: None,
                    secret_file: None,
                    secret_header: None,
                    signing_secret_file: None,
                    timeout: Duration::from_secs(DEFAULT_SINK_TIMEOUT_SECS),
                }),
            },
        ]
    );
    let udp = valid(&format!(
        "{PLAIN}[[alert]]\ntype = \"syslog\"\naddress = \"logs.example:514\"\n"
    ));
    match &udp.alerts[0].target {
        SinkTarget::Syslog(syslog) => {
            assert_eq!(syslog.protocol, SyslogProtocol::Udp);
            assert_eq!(syslog.facility, DEFAULT_SYSLOG_FACILITY);
            assert_eq!(syslog.app_name, "driftwatch");
        }
        other => panic!("not syslog: {other:?}"),
    }
}

#[test]
fn each_bad_sink_setting_names_its_place() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        ("[[alert]]\ntype = \"webhook\"\n",
            (2, 1, "alert[0]", "missing `url`")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"ftp://x/\"\n",
            (4, 7, "alert[0].url", "unsupported URL scheme `ftp`")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"hooks.example/x\"\n",
            (4, 7, "alert[0].url", "expected an http:// or https:// URL")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https:///x\"\n",
            (4, 7, "alert[0].url", "has no host")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://u:p@h/\"\n",
            (4, 7, "alert[0].url", "credentials in the URL are refused")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"http://hooks.example/\"\nsecret_file = \"/s\"\n",
            (4, 7, "alert[0].url", "secret would be sent in clear text")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\nformat = \"teams\"\n",
            (5, 10, "alert[0].format", "unknown webhook format `teams`")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\nsecret_file = \"hook.secret\"\n",
            (5, 15, "alert[0].secret_file", "must be an absolute path")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\nsigning_secret_file = \"hook.key\"\n",
            (5, 23, "alert[0].signing_secret_file", "must be an absolute path")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\nsecret_header = \"X-Token\"\n",
            (5, 17, "alert[0].secret_header", "needs `secret_file`")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\nsecret_file = \"/s\"\nsecret_header = \"X Token\"\n",
            (6, 17, "alert[0].secret_header", "not an HTTP header name")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\ntimeout_secs = 0\n",
            (5, 16, "alert[0].timeout_secs", "between 1 and 300, got 0")),
        ("[[alert]]\ntype = \"webhook\"\nurl = \"https://h/\"\nfacility = \"auth\"\n",
            (5, 12, "alert[0].facility", "does not apply to a webhook sink")),
        ("[[alert]]\ntype = \"syslog\"\n",
            (2, 1, "alert[0]", "missing `address`")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"127.0.0.1\"\n",
            (4, 11, "alert[0].address", "expected host:port")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"127.0.0.1:0\"\n",
            (4, 11, "alert[0].address", "port must be a number from 1 to 65535")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"::1:514\"\n",
            (4, 11, "alert[0].address", "expected host:port")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"h:514\"\nprotocol = \"tls\"\n",
            (5, 12, "alert[0].protocol", "syslog over TLS (RFC 5425) is not supported yet")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"h:514\"\nprotocol = \"sctp\"\n",
            (5, 12, "alert[0].protocol", "unknown syslog protocol `sctp`, expected udp or tcp")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"h:514\"\nfacility = \"local8\"\n",
            (5, 12, "alert[0].facility", "unknown syslog facility `local8`")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"h:514\"\napp_name = \"drift watch\"\n",
            (5, 12, "alert[0].app_name", "1 to 48 printable ASCII")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"h:514\"\nurl = \"https://h/\"\n",
            (5, 7, "alert[0].url", "does not apply to a syslog sink")),
        ("[[alert]]\ntype = \"syslog\"\naddress = \"h:514\"\nretry_max_secs = 0\n",
            (5, 18, "alert[0].retry_max_secs", "between 1 and 86400")),
        ("[[alert]]\ntype = \"jsonl\"\npath = \"/x\"\nname = \"a b\"\n",
            (5, 8, "alert[0].name", "1 to 64 letters")),
        ("[[alert]]\ntype = \"jsonl\"\npath = \"/x\"\nsecret = \"s\"\n",
            (5, 1, "alert[0].secret", "unknown field `secret`")),
    ];
    for (text, expected) in cases {
        let (line, column, key, fragment) = *expected;
        check(&format!("{PLAIN}{text}"), &[(line, column, key, fragment)]);
    }
}

#[test]
fn sink_names_are_unique() {
    check(
        &format!(
            "{PLAIN}[[alert]]\ntype = \"jsonl\"\npath = \"/a\"\n\
             [[alert]]\ntype = \"jsonl\"\npath = \"/b\"\n\
             [[alert]]\ntype = \"syslog\"\naddress = \"h:1\"\nname = \"jsonl\"\n"
        ),
        &[
            (5, 1, "alert[1]", "another sink is already named `jsonl`"),
            (
                11,
                8,
                "alert[2].name",
                "another sink is already named `jsonl`",
            ),
        ],
    );
    let named = valid(&format!(
        "{PLAIN}[[alert]]\ntype = \"jsonl\"\npath = \"/a\"\n\
         [[alert]]\ntype = \"jsonl\"\nname = \"second\"\npath = \"/b\"\n"
    ));
    let names: Vec<&str> = named.alerts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["jsonl", "second"]);
}

#[test]
fn the_audit_section_names_the_key_file_and_the_interval() {
    let defaults = valid("plain_http = true\nstate_dir = \"/srv/dw\"\n");
    assert_eq!(defaults.audit, AuditSettings::default());
    assert_eq!(
        defaults.audit_key_path(),
        Path::new("/srv/dw").join(DEFAULT_AUDIT_KEY_FILE_NAME)
    );
    let set = valid(
        "plain_http = true\n[audit]\nsigning_key_file = \"/etc/driftwatch/audit.key\"\n\
         checkpoint_interval_secs = 60\n",
    );
    assert_eq!(set.audit_key_path(), Path::new("/etc/driftwatch/audit.key"));
    assert_eq!(set.audit.checkpoint_interval, Duration::from_secs(60));
    check(
        "plain_http = true\n[audit]\nsigning_key_file = \"audit.key\"\n",
        &[(3, 20, "audit.signing_key_file", "must be an absolute path")],
    );
    check(
        "plain_http = true\n[audit]\ncheckpoint_interval_secs = 0\n",
        &[(
            3,
            28,
            "audit.checkpoint_interval_secs",
            "must be between 1 and 86400, got 0",
        )],
    );
}

#[test]
fn limits_metrics_and_client_ca_have_defaults_and_compile() {
    let config = valid("plain_http = true\n");
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.limits.header_read_timeout, Duration::from_secs(10));
    assert!(config.metrics.require_token);
    assert_eq!(config.metrics.listen, None);
    assert_eq!(config.tls_client_ca, None);

    let config = valid(
        "listen = \"127.0.0.1:8443\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
         client_ca = \"/agents-ca.pem\"\n[limits]\nheader_read_timeout_secs = 2\n\
         idle_timeout_secs = 5\nmax_connections = 64\nauth_failures_per_minute = 6\n\
         auth_failure_burst = 3\nlockout_failures = 4\nlockout_secs = 9\n\
         max_streams = 2\nstream_heartbeat_secs = 1\n\
         [metrics]\nrequire_token = false\nlisten = \"127.0.0.1:9464\"\n",
    );
    assert_eq!(
        config.limits,
        Limits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            max_connections: 64,
            auth_failures_per_minute: 6,
            auth_failure_burst: 3,
            lockout_failures: 4,
            lockout: Duration::from_secs(9),
            max_streams: 2,
            stream_heartbeat: Duration::from_secs(1),
        }
    );
    assert!(!config.metrics.require_token);
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(
        config.tls_client_ca.as_deref(),
        Some(Path::new("/agents-ca.pem"))
    );
}

#[test]
fn bad_limits_metrics_and_client_ca_name_their_place() {
    check(
        "plain_http = true\n[limits]\nheader_read_timeout_secs = 0\nmax_connections = 1\n\
         lockout_secs = -1\n[metrics]\nlisten = \"nowhere\"\n",
        &[
            (
                3,
                28,
                "limits.header_read_timeout_secs",
                "between 1 and 300",
            ),
            (4, 19, "limits.max_connections", "between 8 and 65536"),
            (5, 16, "limits.lockout_secs", "between 1 and 86400"),
            (7, 10, "metrics.listen", "IP address and port"),
        ],
    );
    check(
        "plain_http = true\n[limits]\nsurprise = 1\n",
        &[(3, 1, "limits.surprise", "unknown")],
    );
    check(
        "listen = \"127.0.0.1:8443\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
         client_ca = \"relative.pem\"\n",
        &[(5, 13, "tls.client_ca", "absolute path")],
    );
    check(
        "listen = \"127.0.0.1:8443\"\nplain_http = true\n[metrics]\nlisten = \"127.0.0.1:8443\"\n",
        &[(4, 10, "metrics.listen", "main `listen`")],
    );
}

#[test]
fn heartbeat_age_hosts_has_a_default_and_a_range() {
    assert_eq!(
        valid("plain_http = true\n").metrics.heartbeat_age_hosts,
        500
    );
    let config = valid("plain_http = true\n[metrics]\nheartbeat_age_hosts = 0\n");
    assert_eq!(config.metrics.heartbeat_age_hosts, 0);
    assert!(
        config.metrics.require_token,
        "other keys keep their defaults"
    );
    check(
        "plain_http = true\n[metrics]\nheartbeat_age_hosts = 10001\n",
        &[(3, 23, "metrics.heartbeat_age_hosts", "between 0 and 10000")],
    );
}
