//! Passwords kept out of the config file: `password_env` and `password_file`.
//!
//! Errors name the variable or the file, never what it holds.

use crate::error::{quoted, ConfigError};

use super::ShardSpec;

/// The password named by the spec's `password_env` or `password_file`, if it names one.
pub(super) fn read_password(spec: &ShardSpec) -> Result<Option<String>, ConfigError> {
    read_secret(
        &format!("shards.{}", spec.name),
        spec.password_env.as_deref(),
        spec.password_file.as_deref(),
    )
}

/// The secret named by `env` or `file` (settings `<prefix>.password_env` and
/// `<prefix>.password_file`), if either is set.
pub(super) fn read_secret(
    prefix: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, ConfigError> {
    let bad = |key: &str, reason: String| ConfigError::InvalidValue {
        field: format!("{prefix}.{key}"),
        reason,
    };
    let password = match (env, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(bad(
                "password_env",
                "`password_env` and `password_file` are both set; use one".into(),
            ))
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                return Err(bad(
                    "password_env",
                    format!("the environment variable {} is not set", quoted(var)),
                ))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(bad(
                    "password_env",
                    format!(
                        "the environment variable {} is not valid UTF-8",
                        quoted(var)
                    ),
                ))
            }
        },
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                // io::Error's message never quotes the file's contents.
                bad(
                    "password_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // One line: the line break an editor or `echo` leaves is not part of it.
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.contains(['\n', '\r']) {
                return Err(bad(
                    "password_file",
                    format!("{} holds more than one line", path.display()),
                ));
            }
            line.to_owned()
        }
    };
    if password.is_empty() {
        let key = if env.is_some() {
            "password_env"
        } else {
            "password_file"
        };
        return Err(bad(key, "the password is empty".into()));
    }
    Ok(Some(password))
}
