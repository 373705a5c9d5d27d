//! Which collector, token and CA: flags, environment, the config file, defaults (in that
//! order; the file's format and the rules are `driftwatch_config::ctl`).

use std::path::{Path, PathBuf};

use driftwatch_config::ctl::{self, CtlFile, TokenSource};

use super::exit::Failure;

/// What a command needs to talk to the collector.
pub struct Settings {
    pub url: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
}

/// The flags that override everything else.
pub struct Overrides<'a> {
    pub config: Option<&'a Path>,
    pub url: Option<&'a str>,
    pub token_file: Option<&'a Path>,
    pub ca_cert: Option<&'a Path>,
}

/// An environment variable, unless unset or empty (an empty one counts as unset, as
/// shells and most tools treat it).
fn env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Resolves every setting; any problem is a [`Failure::Config`] naming its source.
pub fn resolve(flags: Overrides<'_>) -> anyhow::Result<Settings> {
    let me = effective_uid();
    let named_config = flags
        .config
        .map(Path::to_path_buf)
        .or_else(|| env(ctl::CONFIG_ENV).map(PathBuf::from));
    let file = config_file(named_config, me)?;
    let env_url = env(ctl::URL_ENV).map(|v| v.to_string_lossy().into_owned());
    let url = match (
        flags.url,
        env_url,
        file.as_ref().and_then(|f| f.url.clone()),
    ) {
        (Some(url), _, _) => checked_url(url, "--url")?,
        (None, Some(url), _) => checked_url(&url, ctl::URL_ENV)?,
        // Checked when the file was read.
        (None, None, Some(url)) => url,
        (None, None, None) => ctl::DEFAULT_URL.to_owned(),
    };
    let env_token = env(ctl::TOKEN_ENV);
    let source = ctl::resolve_token(
        flags.token_file,
        env(ctl::TOKEN_FILE_ENV).as_deref(),
        env_token.is_some(),
        file.as_ref(),
    )
    .map_err(|why| Failure::Config.error(why))?;
    let token = match source {
        TokenSource::Env => env_token
            .and_then(|t| t.into_string().ok())
            .map(|t| t.trim().to_owned())
            .ok_or_else(|| Failure::Config.error(format!("{} is not UTF-8", ctl::TOKEN_ENV)))?,
        TokenSource::File { path, named_by } => ctl::read_token_file(&path, me)
            .map_err(|why| Failure::Config.error(format!("{why} (named by {named_by})")))?,
    };
    let ca_cert = flags
        .ca_cert
        .map(Path::to_path_buf)
        .or_else(|| env(ctl::CA_CERT_ENV).map(PathBuf::from))
        .or_else(|| file.and_then(|f| f.ca_cert));
    Ok(Settings {
        url: url.trim_end_matches('/').to_owned(),
        token,
        ca_cert,
    })
}

fn checked_url(url: &str, from: &str) -> anyhow::Result<String> {
    ctl::check_url(url).map_err(|why| Failure::Config.error(format!("{from}: {why}")))?;
    Ok(url.to_owned())
}

/// The file named by `--config` or `DRIFTWATCH_CTL_CONFIG` (must exist), else the one at
/// the default place (may not).
fn config_file(named: Option<PathBuf>, me: u32) -> anyhow::Result<Option<CtlFile>> {
    let path = match named {
        Some(path) => path,
        None => {
            let Some(path) = ctl::default_path(
                std::env::var_os("XDG_CONFIG_HOME").as_deref(),
                std::env::var_os("HOME").as_deref(),
            ) else {
                return Ok(None);
            };
            if !path.exists() {
                return Ok(None);
            }
            path
        }
    };
    CtlFile::load(&path, me)
        .map(Some)
        .map_err(|errors| Failure::Config.error(errors.to_string()))
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}
