//! The registry of ferry's own kinds.

use ferry_config::{Config, ConfigError};

use crate::{Registry, backup, diag, files, http, import, maintenance, notify, sql, sync};

/// Every built-in kind with its defaults, for a program that adds its own with
/// [`Registry::register`] before handing the registry to `ferry_worker::run_with`.
pub fn builtin(config: &Config) -> Registry {
    let mut registry = Registry::empty(config);
    registry.register(diag::Noop);
    registry.register(diag::Sleep);
    registry.register(diag::Fail);
    registry.register(sync::Full);
    registry.register(sync::Chunk);
    registry.register(sync::Incremental);
    registry.register(sync::Entity);
    registry.register(sync::Verify);
    registry.register(backup::Run);
    registry.register(backup::Verify);
    registry.register(backup::Prune);
    registry.register(notify::Send);
    registry.register(notify::Broadcast);
    registry.register(sql::Sql);
    registry.register(files::Migrate);
    registry.register(http::Http::default());
    registry.register(import::Run);
    registry.register(import::Chunk);
    registry.register(maintenance::Prune);
    registry
}

/// The built-in kinds with `[kinds.NAME]` applied. Fails if config overrides a kind that
/// does not exist.
pub fn registry(config: &Config) -> Result<Registry, ConfigError> {
    builtin(config).configured()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_apply_and_unknown_kinds_fail() {
        let config = Config::from_toml_str(
            "[kinds.fail]\nmax_attempts = 2\ntimeout = \"3s\"\n",
            &ferry_config::Env::empty(),
        )
        .unwrap();
        let r = registry(&config).unwrap();
        let fail = r.get("fail").unwrap();
        assert_eq!(fail.settings().max_attempts, 2);
        assert_eq!(fail.settings().timeout, std::time::Duration::from_secs(3));
        assert!(r.get("nope").err().unwrap().to_string().contains("noop"));

        let config = Config::from_toml_str(
            "[kinds.nope]\nmax_attempts = 2\n",
            &ferry_config::Env::empty(),
        )
        .unwrap();
        let e = registry(&config).err().unwrap();
        assert!(e.to_string().contains("kinds.nope"), "{e}");
    }

    #[test]
    fn validate_checks_argument_shape() {
        let r = registry(&Config::from_toml_str("", &ferry_config::Env::empty()).unwrap()).unwrap();
        assert!(r.get("sleep").unwrap().validate(r#"{"ms": 5}"#).is_ok());
        let e = r
            .get("sleep")
            .unwrap()
            .validate(r#"{"ms": "five"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("sleep"), "{e}");
        assert!(r.get("noop").unwrap().validate(r#"{"x": 1}"#).is_err());
    }
}
