//! The seeds' backup variables: `BACKUP_SCHEDULE` (cron of the nightly backup),
//! `BACKUP_TIMEZONE` (its zone) and `BACKUP_RETENTION_DAYS` (daily generations kept).
//!
//! `BACKUP_SCHEDULE` and `BACKUP_TIMEZONE` change the first `[[schedule]]` of kind
//! `backup.run`, or add one named `nightly-backup` when the file has none.

use crate::{CatchUp, Config, ConfigError, Env, Schedule};

pub(crate) fn apply(config: &mut Config, env: &Env) -> Result<(), ConfigError> {
    if let Some(days) = env.get("BACKUP_RETENTION_DAYS") {
        config.backup.retention.daily = days.trim().parse().map_err(|_| {
            ConfigError::new(
                "BACKUP_RETENTION_DAYS (backup.retention.daily)",
                format!("{days:?} is not a whole number of days"),
                "give the number of daily backups to keep, e.g. 30",
            )
        })?;
    }
    let cron = env.get("BACKUP_SCHEDULE");
    let zone = env.get("BACKUP_TIMEZONE");
    if cron.is_none() && zone.is_none() {
        return Ok(());
    }
    let index = match config.schedules.iter().position(|s| s.kind == "backup.run") {
        Some(i) => i,
        None => {
            config.schedules.push(Schedule {
                name: "nightly-backup".into(),
                cron: "0 0 2 * * *".into(),
                timezone: "UTC".into(),
                kind: "backup.run".into(),
                args: serde_json::json!({}),
                enabled: true,
                catch_up: CatchUp::Latest,
            });
            config.schedules.len() - 1
        }
    };
    let schedule = &mut config.schedules[index];
    if let Some(cron) = cron {
        // The seeds write comments after the value (`0 2 * * *  # Daily at 2 AM`).
        schedule.cron = cron.split('#').next().unwrap_or_default().trim().to_owned();
    }
    if let Some(zone) = zone {
        schedule.timezone = zone;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    #[test]
    fn seed_variables_set_the_backup_schedule_and_retention() {
        let env = Env::from_pairs([
            ("BACKUP_SCHEDULE", "0 0 3 * * *  # nightly"),
            ("BACKUP_TIMEZONE", "Europe/Berlin"),
            ("BACKUP_RETENTION_DAYS", "30"),
        ]);
        let c = Config::from_toml_str("", &env).unwrap();
        let s = &c.schedules[0];
        assert_eq!(
            (
                s.name.as_str(),
                s.cron.as_str(),
                s.timezone.as_str(),
                s.kind.as_str()
            ),
            (
                "nightly-backup",
                "0 0 3 * * *",
                "Europe/Berlin",
                "backup.run"
            )
        );
        assert_eq!(c.backup.retention.daily, 30);

        let file =
            "[[schedule]]\nname = \"backup\"\ncron = \"0 0 2 * * *\"\nkind = \"backup.run\"\n";
        let env = Env::from_pairs([("BACKUP_SCHEDULE", "0 15 1 * * *")]);
        let c = Config::from_toml_str(file, &env).unwrap();
        assert_eq!(c.schedules.len(), 1);
        assert_eq!(c.schedules[0].cron, "0 15 1 * * *");

        let env = Env::from_pairs([("BACKUP_RETENTION_DAYS", "a month")]);
        let e = Config::from_toml_str("", &env).unwrap_err();
        assert!(e.to_string().contains("BACKUP_RETENTION_DAYS"), "{e}");
    }
}
