//! What backups need of PostgreSQL: the client tools at a compatible version, connections
//! whose password travels in the environment (never on a command line), and row counts.

use std::{collections::BTreeMap, path::PathBuf, process::Stdio};

use ferry_config::{Config, Secret};
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

use crate::{JobError, ResultExt};

/// A database to dump or restore into. The password is kept apart so it can be handed to
/// `pg_dump` and `pg_restore` as `PGPASSWORD` rather than in their arguments.
#[derive(Clone)]
pub struct Database {
    pub name: String,
    /// The URL without its password: safe to show.
    pub url: url::Url,
    password: Option<Secret>,
}

impl Database {
    pub fn parse(text: &str) -> Result<Self, JobError> {
        let mut url = url::Url::parse(text).permanent_while("not a postgres:// URL")?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(JobError::permanent(format!(
                "{} is not a postgres:// URL",
                url.scheme()
            )));
        }
        let mut password = url
            .password()
            .map(|p| Secret::new(percent_encoding::percent_decode_str(p).decode_utf8_lossy()));
        let _ = url.set_password(None);
        // libpq also takes `?password=`; it must not reach a command line either.
        if url.query_pairs().any(|(k, _)| k == "password") {
            let (secret, rest): (Vec<_>, Vec<_>) = url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .partition(|(k, _)| k == "password");
            password = password.or_else(|| secret.into_iter().next().map(|(_, v)| Secret::new(v)));
            url.set_query(None);
            if !rest.is_empty() {
                url.query_pairs_mut().extend_pairs(rest);
            }
        }
        let name = url.path().trim_start_matches('/').to_owned();
        if name.is_empty() {
            return Err(JobError::permanent(format!(
                "{url} names no database; add /DBNAME to the URL"
            )));
        }
        Ok(Self {
            name,
            url,
            password,
        })
    }

    /// Whether the URL it was parsed from carried a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The same database, connecting with `password`.
    pub fn with_password(mut self, password: Secret) -> Self {
        self.password = Some(password);
        self
    }

    /// The configured databases to back up: names on the server of `DATABASE_URL`, or that
    /// URL's own database when none are listed.
    pub fn configured(config: &Config) -> Result<Vec<Self>, JobError> {
        let base = config.postgres.url.as_deref().ok_or_else(|| {
            JobError::permanent("backups need DATABASE_URL (postgres.url): the server to dump")
        })?;
        let base = Self::parse(base)?;
        if config.backup.databases.is_empty() {
            return Ok(vec![base]);
        }
        Ok(config
            .backup
            .databases
            .iter()
            .map(|name| base.with_name(name))
            .collect())
    }

    /// The same server and credentials, another database.
    pub fn with_name(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.url.set_path(&format!("/{name}"));
        other.name = name.to_owned();
        other
    }

    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let mut url = self.url.clone();
        if let Some(p) = &self.password {
            let _ = url.set_password(Some(p.expose()));
        }
        PgConnection::connect(url.as_str()).await
    }

    /// A command for a client tool, pointed at this database.
    pub fn command(&self, program: &PathBuf) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg(format!("--dbname={}", self.url))
            .arg("--no-password")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p.expose());
        }
        cmd
    }
}

/// Why connecting to a database failed, said so an operator knows what to do.
pub fn connect_error(db: &Database, e: sqlx::Error) -> JobError {
    let doing = format!("cannot connect to database {:?} ({})", db.name, db.url);
    let hint = match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
            Some("list existing databases in backup.databases")
        }
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("28")) => {
            Some("check the user and password")
        }
        _ => None,
    };
    match hint {
        Some(hint) => JobError::permanent_from(format!("{doing} ({hint})"), e),
        None => JobError::db(doing, e),
    }
}

/// `pg_dump` and `pg_restore`, from `backup.pg_bin_dir` or `PATH`.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
}

impl Tools {
    pub fn new(config: &Config) -> Self {
        let path = |name: &str| match &config.backup.pg_bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        };
        Self {
            pg_dump: path("pg_dump"),
            pg_restore: path("pg_restore"),
        }
    }

    /// The tool's version line, after checking it can handle a server of `server_major`.
    pub async fn check(program: &PathBuf, server_major: u32) -> Result<String, JobError> {
        let name = program.display();
        let out = Command::new(program)
            .arg("--version")
            .output()
            .await
            .map_err(|e| {
                JobError::permanent(format!(
                    "cannot run {name} ({e}); install the PostgreSQL {server_major} client \
                     tools or set backup.pg_bin_dir to the directory holding them"
                ))
            })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major = version
            .split_once(')')
            .and_then(|(_, rest)| rest.trim().split(['.', ' ']).next())
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| {
                JobError::permanent(format!("{name} printed an unknown version {version:?}"))
            })?;
        if major < server_major {
            return Err(JobError::permanent(format!(
                "{name} is version {major}, older than the server ({server_major}); install \
                 the PostgreSQL {server_major} client tools or set backup.pg_bin_dir (e.g. \
                 /usr/lib/postgresql/{server_major}/bin)"
            )));
        }
        Ok(version)
    }
}

/// The server's version text and major number.
pub async fn server_version(conn: &mut PgConnection) -> Result<(String, u32), sqlx::Error> {
    let (text, num): (String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('server_version_num')",
    )
    .fetch_one(conn)
    .await?;
    Ok((text, num.parse::<u32>().unwrap_or(0) / 10_000))
}

/// Every ordinary table (partitions included, partitioned parents not, so nothing is counted
/// twice) outside the system schemas: its `schema.table` name and its quoted form.
pub async fn tables(conn: &mut PgConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.nspname || '.' || c.relname,
                quote_ident(n.nspname) || '.' || quote_ident(c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
         ORDER BY 1",
    )
    .fetch_all(conn)
    .await
}

/// Rows per table of [`tables`], keyed by `schema.table`.
pub async fn row_counts(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let mut counts = BTreeMap::new();
    for (name, quoted) in tables(&mut *conn).await? {
        // `quoted` comes from the catalog through quote_ident, not from outside.
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {quoted}"
        )))
        .fetch_one(&mut *conn)
        .await?;
        counts.insert(name, n);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url_wherever_they_are() {
        for text in [
            "postgres://u:s%40cret@h:5432/db?sslmode=disable",
            "postgres://u@h:5432/db?password=s%40cret&sslmode=disable",
            "postgres://u@h:5432/db?sslmode=disable&password=s@cret",
        ] {
            let db = Database::parse(text).unwrap();
            assert_eq!(db.url.as_str(), "postgres://u@h:5432/db?sslmode=disable");
            assert_eq!(db.password.as_ref().map(Secret::expose), Some("s@cret"));
        }
        let db = Database::parse("postgres://u@h/db?password=x").unwrap();
        assert_eq!(
            (db.url.as_str(), db.name.as_str()),
            ("postgres://u@h/db", "db")
        );
        assert!(!Database::parse("postgres://u@h/db").unwrap().has_password());
    }
}
