//! Row-level security that applies to ferry's own role. A table with RLS enabled shows a role
//! without `BYPASSRLS` (that is not its owner) only the rows its policies allow, and says
//! nothing about the rest: a mirror, a verify's counts or a backup's manifest would silently
//! cover part of the table. Postgres answers the exact question with `row_security_active`.

use sqlx::PgExecutor;

/// Tables whose rows row-level security filters for the connected role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    pub role: String,
    /// `schema.table`, sorted.
    pub tables: Vec<String>,
}

impl std::fmt::Display for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "row-level security hides rows of {} from role {:?} (it lacks BYPASSRLS and does \
             not own them), so counts and copies would cover only the rows its policies show; \
             connect as a role with BYPASSRLS (ALTER ROLE {} BYPASSRLS) or as the tables' owner",
            self.tables.join(", "),
            self.role,
            crate::sync::catalog::quote(&self.role)
        )
    }
}

/// Which of `tables` (`schema.table`) RLS filters for the current role; None when none.
pub async fn hidden<'e>(
    db: impl PgExecutor<'e>,
    tables: &[String],
) -> Result<Option<Hidden>, sqlx::Error> {
    let (role, hidden): (String, Vec<String>) = sqlx::query_as(
        "SELECT current_user::text, ARRAY(
             SELECT n.nspname || '.' || c.relname
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relrowsecurity AND n.nspname || '.' || c.relname = ANY($1)
               AND row_security_active(c.oid)
             ORDER BY 1)",
    )
    .bind(tables)
    .fetch_one(db)
    .await?;
    Ok((!hidden.is_empty()).then_some(Hidden {
        role,
        tables: hidden,
    }))
}
