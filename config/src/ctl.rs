//! `driftctl`'s own settings: which collector, which token, which CA.
//!
//! # The file: `$XDG_CONFIG_HOME/driftwatch/driftctl.toml`
//!
//! (`~/.config/driftwatch/driftctl.toml` when `XDG_CONFIG_HOME` is unset or not absolute;
//! `--config FILE` or `DRIFTWATCH_CTL_CONFIG` name another one.)
//!
//! ```toml
//! url = "https://collector.example.org:8443"   # http:// or https://
//! token_file = "token"               # relative to this file's directory, or absolute;
//!                                    # yours and 0600 (or stricter), else refused
//! ca_cert = "/etc/driftwatch/ca.pem" # optional: trust only this CA (PEM)
//! ```
//!
//! The file holds no secret (a `token` key is refused: the token lives in `token_file`),
//! but it says where the token is sent, so it must be yours (or root's) and writable by
//! no one else, as ssh requires of `~/.ssh/config`.
//!
//! # Precedence, setting by setting
//!
//! A flag beats an environment variable (an empty one counts as unset), which beats this
//! file, which beats the default:
//!
//! | setting | flag | environment | file | default |
//! | --- | --- | --- | --- | --- |
//! | collector | `--url` | `DRIFTWATCH_URL` | `url` | `http://127.0.0.1:8443` |
//! | token | `--token-file` | `DRIFTWATCH_TOKEN_FILE` or `DRIFTWATCH_TOKEN` (not both) | `token_file` | none: an error |
//! | CA | `--ca-cert` | `DRIFTWATCH_CA_CERT` | `ca_cert` | the system's roots |
//!
//! A missing file at the default place is no error; a missing file named by `--config` or
//! `DRIFTWATCH_CTL_CONFIG` is.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::parse;
use crate::error::{ConfigError, ConfigErrors};

/// The collector when nothing names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8443";
/// Names another configuration file than the default.
pub const CONFIG_ENV: &str = "DRIFTWATCH_CTL_CONFIG";
pub const URL_ENV: &str = "DRIFTWATCH_URL";
pub const TOKEN_FILE_ENV: &str = "DRIFTWATCH_TOKEN_FILE";
pub const TOKEN_ENV: &str = "DRIFTWATCH_TOKEN";
pub const CA_CERT_ENV: &str = "DRIFTWATCH_CA_CERT";

/// `driftctl.toml`, validated; paths resolved against the file's directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtlFile {
    /// Where it came from, for messages.
    pub source: PathBuf,
    pub url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CtlToml {
    url: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    ca_cert: Option<Spanned<String>>,
    /// Only to refuse it with a useful message.
    token: Option<Spanned<toml::Value>>,
}

impl CtlFile {
    /// Reads `path` after checking that nobody else could have written it (`me`: the
    /// effective user id).
    pub fn load(path: &Path, me: u32) -> Result<CtlFile, ConfigErrors> {
        let unplaced = |message: String| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: None,
                message,
            }])
        };
        let meta = std::fs::metadata(path)
            .map_err(|err| unplaced(format!("cannot read the file: {err}").to_lowercase()))?;
        if let Some(problem) = file_problem(FileRole::Settings, &meta, me) {
            return Err(unplaced(problem));
        }
        let bytes = std::fs::read(path)
            .map_err(|err| unplaced(format!("cannot read the file: {err}").to_lowercase()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| unplaced("invalid utf-8: a TOML file must be utf-8 encoded".into()))?;
        CtlFile::from_toml(&text, path)
    }

    /// Validates TOML text; `source` names it in errors and anchors relative paths.
    pub fn from_toml(text: &str, source: &Path) -> Result<CtlFile, ConfigErrors> {
        let (raw, mut diag) = parse::<CtlToml>(text, source)?;
        let base = source.parent().unwrap_or(Path::new("."));
        let mut path = |value: &Option<Spanned<String>>, key: &str| {
            let value = value.as_ref()?;
            let text = value.get_ref();
            if text.is_empty() {
                diag.at(value.span(), key, "must not be empty");
                None
            } else if text.starts_with('~') {
                diag.at(
                    value.span(),
                    key,
                    format!(
                        "`~` is not expanded: write `{text}` relative to this file's directory \
                         or as an absolute path"
                    ),
                );
                None
            } else {
                Some(base.join(text))
            }
        };
        let token_file = path(&raw.token_file, "token_file");
        let ca_cert = path(&raw.ca_cert, "ca_cert");
        if let Some(url) = &raw.url
            && let Err(why) = check_url(url.get_ref())
        {
            diag.at(url.span(), "url", why);
        }
        if let Some(token) = &raw.token {
            diag.at(
                token.span(),
                "token",
                "a token does not belong in this file: put it in a file only you can read \
                 (chmod 600) and name that file with `token_file`",
            );
        }
        diag.result(CtlFile {
            source: source.to_path_buf(),
            url: raw.url.map(Spanned::into_inner),
            token_file,
            ca_cert,
        })
    }
}

/// `http://` or `https://` and a host.
pub fn check_url(text: &str) -> Result<(), String> {
    match text.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        Some(("http" | "https", _)) => Err(format!("`{text}` names no host")),
        _ => Err(format!(
            "`{text}` is not a collector URL: it starts with https:// (or http://)"
        )),
    }
}

/// The default file: `$XDG_CONFIG_HOME/driftwatch/driftctl.toml` when that is set and
/// absolute (the XDG rule), else `$HOME/.config/driftwatch/driftctl.toml`; none without a
/// home.
pub fn default_path(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    let base = match xdg_config_home.map(Path::new) {
        Some(dir) if dir.is_absolute() => dir.to_path_buf(),
        _ => Path::new(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("driftwatch").join("driftctl.toml"))
}

/// Where the token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// A file, and what named it (`--token-file`, `DRIFTWATCH_TOKEN_FILE` or the config
    /// file's path).
    File { path: PathBuf, named_by: String },
    /// The token itself in `DRIFTWATCH_TOKEN`.
    Env,
}

/// Flag > environment > config file. `DRIFTWATCH_TOKEN_FILE` and `DRIFTWATCH_TOKEN` both
/// set is refused: neither is more explicit than the other.
pub fn resolve_token(
    flag: Option<&Path>,
    env_file: Option<&OsStr>,
    env_token_set: bool,
    file: Option<&CtlFile>,
) -> Result<TokenSource, String> {
    let env_file = env_file.filter(|v| !v.is_empty());
    if let Some(path) = flag {
        return Ok(TokenSource::File {
            path: path.to_path_buf(),
            named_by: "--token-file".into(),
        });
    }
    match (env_file, env_token_set) {
        (Some(_), true) => Err(format!(
            "both {TOKEN_ENV} and {TOKEN_FILE_ENV} are set: unset one (or pass --token-file)"
        )),
        (Some(path), false) => Ok(TokenSource::File {
            path: PathBuf::from(path),
            named_by: TOKEN_FILE_ENV.into(),
        }),
        (None, true) => Ok(TokenSource::Env),
        (None, false) => match file.and_then(|f| Some((f.token_file.clone()?, &f.source))) {
            Some((path, source)) => Ok(TokenSource::File {
                path,
                named_by: source.display().to_string(),
            }),
            None => Err(format!(
                "no token: pass --token-file, set {TOKEN_FILE_ENV} or {TOKEN_ENV}, or name \
                 token_file in {}",
                file.map_or_else(
                    || "driftctl's config file".to_owned(),
                    |f| f.source.display().to_string()
                )
            )),
        },
    }
}

/// What a file holds, which decides who else may touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// A secret (the token): yours, and no permission for group or others.
    Secret,
    /// Settings that say where the token goes: yours or root's, writable by no one else.
    Settings,
}

/// Why `meta` (of a file) may not be trusted by user `me`, or `None`.
pub fn file_problem(role: FileRole, meta: &std::fs::Metadata, me: u32) -> Option<String> {
    if !meta.is_file() {
        return Some("not a regular file".into());
    }
    permission_problem(role, meta.mode() & 0o7777, meta.uid(), me)
}

/// [`file_problem`] on the numbers alone.
pub fn permission_problem(role: FileRole, mode: u32, owner: u32, me: u32) -> Option<String> {
    match role {
        FileRole::Secret if owner != me => Some(format!(
            "owned by uid {owner}, not by you (uid {me}): a token file must be your own"
        )),
        FileRole::Secret if mode & 0o077 != 0 => Some(format!(
            "has mode {mode:04o}: a token file must be readable by you alone (chmod 600)"
        )),
        FileRole::Settings if owner != me && owner != 0 => Some(format!(
            "owned by uid {owner}, not by you (uid {me}) or root: whoever owns it can send \
             your token to another server"
        )),
        FileRole::Settings if mode & 0o022 != 0 => Some(format!(
            "has mode {mode:04o}: others could write it and send your token to another \
             server (chmod go-w)"
        )),
        _ => None,
    }
}

/// Reads a token file after [`file_problem`] for a secret; the token is trimmed. Errors
/// name the file.
pub fn read_token_file(path: &Path, me: u32) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|err| format!("cannot read the token file {shown}: {err}").to_lowercase())?;
    if let Some(problem) = file_problem(FileRole::Secret, &meta, me) {
        return Err(format!("the token file {shown} {problem}"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the token file {shown}: {err}").to_lowercase())?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {shown} is empty"));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CtlFile, String> {
        CtlFile::from_toml(text, Path::new("/home/u/.config/driftwatch/driftctl.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_names_the_collector_and_paths_relative_to_itself() {
        let file = parse(
            "url = \"https://c.example:8443\"\ntoken_file = \"token\"\nca_cert = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(file.url.as_deref(), Some("https://c.example:8443"));
        assert_eq!(
            file.token_file.unwrap(),
            Path::new("/home/u/.config/driftwatch/token")
        );
        assert_eq!(file.ca_cert.unwrap(), Path::new("/etc/ca.pem"));
        assert_eq!(parse("").unwrap().url, None);
    }

    #[test]
    fn the_example_file_is_valid() {
        let file = CtlFile::from_toml(
            include_str!("../examples/driftctl.toml"),
            Path::new("/etc/skel/driftctl.toml"),
        )
        .unwrap();
        assert_eq!(
            file.url.as_deref(),
            Some("https://collector.example.org:8443")
        );
        assert_eq!(file.token_file.unwrap(), Path::new("/etc/skel/token"));
    }

    #[test]
    fn mistakes_are_located_by_line_and_key() {
        let err = parse("url = \"https://c\"\ntoken_file = 3\n").unwrap_err();
        assert!(
            err.starts_with("/home/u/.config/driftwatch/driftctl.toml:2:"),
            "{err}"
        );
        assert!(err.contains("token_file"), "{err}");
        let err = parse("url = \"https://c\"\nurl = \"x\"\n").unwrap_err();
        assert!(
            err.contains(":2:") && err.contains("duplicate key"),
            "{err}"
        );
        let err = parse("\nurll = \"https://c\"\n").unwrap_err();
        assert!(err.contains(":2:1: urll: unknown field `urll`"), "{err}");
        let err = parse("url = \"ftp://c\"\n").unwrap_err();
        assert!(
            err.contains(":1:7: url: `ftp://c` is not a collector URL"),
            "{err}"
        );
        let err = parse("token = \"dwt_secret\"\n").unwrap_err();
        assert!(
            err.contains(":1:9: token: a token does not belong in this file"),
            "{err}"
        );
        assert!(
            !err.contains("dwt_secret"),
            "the secret is not repeated: {err}"
        );
        let err = parse("token_file = \"~/token\"\n").unwrap_err();
        assert!(err.contains("`~` is not expanded"), "{err}");
        let err = parse("url = [\n").unwrap_err();
        assert!(err.contains(":1:") && err.contains("syntax error"), "{err}");
    }

    #[test]
    fn the_default_file_follows_xdg() {
        let at = |xdg: Option<&str>, home: Option<&str>| {
            default_path(xdg.map(OsStr::new), home.map(OsStr::new))
        };
        assert_eq!(
            at(Some("/x/conf"), Some("/home/u")).unwrap(),
            Path::new("/x/conf/driftwatch/driftctl.toml")
        );
        // Relative or empty XDG_CONFIG_HOME is ignored, as the spec says.
        for xdg in [None, Some(""), Some("rel")] {
            assert_eq!(
                at(xdg, Some("/home/u")).unwrap(),
                Path::new("/home/u/.config/driftwatch/driftctl.toml")
            );
        }
        assert_eq!(at(None, None), None);
    }

    #[test]
    fn the_token_comes_from_the_flag_then_the_environment_then_the_file() {
        let file = CtlFile {
            source: "/c/driftctl.toml".into(),
            token_file: Some("/c/token".into()),
            ..CtlFile::default()
        };
        let from = |flag: Option<&str>, env_file: Option<&str>, env_token: bool| {
            resolve_token(
                flag.map(Path::new),
                env_file.map(OsStr::new),
                env_token,
                Some(&file),
            )
        };
        let named = |path: &str, by: &str| {
            Ok(TokenSource::File {
                path: path.into(),
                named_by: by.into(),
            })
        };
        assert_eq!(
            from(Some("/f"), Some("/e"), true),
            named("/f", "--token-file")
        );
        assert_eq!(from(None, Some("/e"), false), named("/e", TOKEN_FILE_ENV));
        assert_eq!(from(None, None, true), Ok(TokenSource::Env));
        assert_eq!(
            from(None, None, false),
            named("/c/token", "/c/driftctl.toml")
        );
        assert_eq!(
            from(None, Some(""), false),
            named("/c/token", "/c/driftctl.toml")
        );
        let both = from(None, Some("/e"), true).unwrap_err();
        assert!(
            both.contains("both DRIFTWATCH_TOKEN and DRIFTWATCH_TOKEN_FILE"),
            "{both}"
        );
        let none = resolve_token(None, None, false, None).unwrap_err();
        assert!(none.starts_with("no token: pass --token-file"), "{none}");
    }

    #[test]
    fn a_token_file_is_yours_alone_and_settings_are_writable_by_you_alone() {
        use FileRole::*;
        assert_eq!(permission_problem(Secret, 0o600, 1000, 1000), None);
        assert_eq!(permission_problem(Secret, 0o400, 1000, 1000), None);
        let open = permission_problem(Secret, 0o640, 1000, 1000).unwrap();
        assert!(
            open.contains("mode 0640") && open.contains("chmod 600"),
            "{open}"
        );
        let theirs = permission_problem(Secret, 0o600, 0, 1000).unwrap();
        assert!(theirs.contains("uid 0, not by you (uid 1000)"), "{theirs}");
        assert_eq!(permission_problem(Settings, 0o644, 1000, 1000), None);
        assert_eq!(permission_problem(Settings, 0o644, 0, 1000), None);
        assert!(permission_problem(Settings, 0o664, 1000, 1000).is_some());
        assert!(permission_problem(Settings, 0o646, 1000, 1000).is_some());
        assert!(permission_problem(Settings, 0o644, 1001, 1000).is_some());
    }

    #[test]
    fn token_files_are_checked_before_they_are_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "dwt_abc\n").unwrap();
        let me = std::fs::metadata(&path).unwrap().uid();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token_file(&path, me).unwrap_err();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("0644"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path, me).unwrap(), "dwt_abc");
        let err = read_token_file(&path, me + 1).unwrap_err();
        assert!(err.contains("not by you"), "{err}");
        std::fs::write(&path, " \n").unwrap();
        assert!(read_token_file(&path, me).unwrap_err().contains("is empty"));
        let missing = read_token_file(&dir.path().join("nope"), me).unwrap_err();
        assert!(missing.contains("cannot read the token file"), "{missing}");
    }
}
