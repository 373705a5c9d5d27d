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

/// The flags that can override the file (`url` and `ca_cert` already merged with their
/// environment variables by clap).
pub struct Overrides<'a> {
    pub config: Option<&'a Path>,
    pub url: Option<&'a str>,
    pub token_file: Option<&'a Path>,
    pub ca_cert: Option<&'a Path>,
}

/// Resolves every setting; any problem is a [`Failure::Config`] naming its source.
pub fn resolve(flags: Overrides<'_>) -> anyhow::Result<Settings> {
    let me = effective_uid();
    let file = config_file(flags.config, me)?;
    let url = match (flags.url, file.as_ref().and_then(|f| f.url.as_deref())) {
        (Some(url), _) => {
            ctl::check_url(url).map_err(|why| {
                Failure::Config.error(format!("--url or {}: {why}", ctl::URL_ENV))
            })?;
            url.to_owned()
        }
        // Checked when the file was read.
        (None, Some(url)) => url.to_owned(),
        (None, None) => ctl::DEFAULT_URL.to_owned(),
    };
    let env_token = std::env::var_os(ctl::TOKEN_ENV).filter(|v| !v.is_empty());
    let source = ctl::resolve_token(
        flags.token_file,
        std::env::var_os(ctl::TOKEN_FILE_ENV).as_deref(),
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
        .or_else(|| file.and_then(|f| f.ca_cert));
    Ok(Settings {
        url: url.trim_end_matches('/').to_owned(),
        token,
        ca_cert,
    })
}

/// `--config` / `DRIFTWATCH_CTL_CONFIG` (must exist), else the default place (may not).
fn config_file(named: Option<&Path>, me: u32) -> anyhow::Result<Option<CtlFile>> {
    let path = match named {
        Some(path) => path.to_path_buf(),
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
