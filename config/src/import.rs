//! `[import]`: MongoDB collections into existing PostgreSQL tables.
//!
//! Only what can be checked without connecting is checked here (names, references between
//! collections); tables, columns and paths are checked against the catalog and a sample of
//! documents before an import writes anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, is_sql_name};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Import {
    /// Schema of target tables named without one.
    pub schema: String,
    /// Documents per read and per write transaction.
    pub batch_size: usize,
    /// Documents per `import.chunk` job.
    pub docs_per_chunk: usize,
    /// Documents read to check paths and infer mappings.
    pub sample_size: usize,
    #[serde(rename = "collection")]
    pub collections: Vec<ImportCollection>,
}

impl Default for Import {
    fn default() -> Self {
        Self {
            schema: "public".into(),
            batch_size: 1000,
            docs_per_chunk: 20_000,
            sample_size: 1000,
            collections: Vec::new(),
        }
    }
}

/// One collection and the table it becomes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportCollection {
    pub name: String,
    /// `table` (in `import.schema`) or `schema.table`.
    pub table: String,
    /// Target column → source. Columns not listed take the field of the same name or its
    /// snake_case form when the sample has one.
    #[serde(default)]
    pub columns: BTreeMap<String, Source>,
    /// Embedded arrays that become rows of child tables.
    #[serde(default, rename = "child")]
    pub children: Vec<ImportChild>,
}

/// An embedded array: one row per element.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportChild {
    /// Dotted path of the array in the parent document.
    pub path: String,
    pub table: String,
    /// Column receiving the parent row's id.
    pub parent: String,
    #[serde(default)]
    pub columns: BTreeMap<String, Source>,
}

/// `"dotted.path"` (or `"$index"` in a child), or `{ path, ref }` for an ObjectId reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Source {
    Path(String),
    Ref(RefSource),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefSource {
    pub path: String,
    /// The configured collection the value points into.
    #[serde(rename = "ref")]
    pub collection: String,
}

impl Source {
    pub fn path(&self) -> &str {
        match self {
            Self::Path(p) => p,
            Self::Ref(r) => &r.path,
        }
    }
}

/// The element's position in its array, for child columns.
pub const INDEX: &str = "$index";

impl Import {
    pub fn collection(&self, name: &str) -> Option<&ImportCollection> {
        self.collections.iter().find(|c| c.name == name)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !is_sql_name(&self.schema) {
            return Err(ConfigError::new(
                "import.schema",
                format!("{:?} is not a schema name", self.schema),
                "use a plain name such as \"public\"",
            ));
        }
        for (key, v) in [
            ("import.batch_size", self.batch_size),
            ("import.docs_per_chunk", self.docs_per_chunk),
            ("import.sample_size", self.sample_size),
        ] {
            if v == 0 {
                return Err(ConfigError::new(key, "is 0", "use 1 or more"));
            }
        }
        if self.batch_size > 50_000 {
            return Err(ConfigError::new(
                "import.batch_size",
                format!("{} is too large", self.batch_size),
                "use 1 to 50000 (default 1000)",
            ));
        }
        let names: BTreeSet<&str> = self.collections.iter().map(|c| c.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        let mut tables = BTreeMap::new();
        for (i, c) in self.collections.iter().enumerate() {
            let key = |field: &str| format!("import.collection[{i}] ({}).{field}", c.name);
            if c.name.is_empty() || c.name.starts_with("system.") || c.name.contains('$') {
                return Err(ConfigError::new(
                    key("name"),
                    format!("{:?} is not a usable collection name", c.name),
                    "name an existing MongoDB collection",
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(ConfigError::new(
                    key("name"),
                    "is configured twice",
                    "keep one [[import.collection]] per collection",
                ));
            }
            let mut all_tables = vec![(key("table"), &c.table)];
            for (j, child) in c.children.iter().enumerate() {
                all_tables.push((key(&format!("child[{j}].table")), &child.table));
            }
            for (k, t) in all_tables {
                check_table(&k, t)?;
                let full = self.qualified(t);
                if let Some(other) = tables.insert(full.clone(), k.clone()) {
                    return Err(ConfigError::new(
                        k,
                        format!("table {full} is already the target of {other}"),
                        "give every collection and child its own table",
                    ));
                }
            }
            check_columns(&key("columns"), &c.columns, &names, false)?;
            for (j, child) in c.children.iter().enumerate() {
                let ck = |field: &str| key(&format!("child[{j}].{field}"));
                check_path(&ck("path"), &child.path)?;
                if !is_sql_name(&child.parent) {
                    return Err(ConfigError::new(
                        ck("parent"),
                        format!("{:?} is not a column name", child.parent),
                        "name the child table's column that holds the parent id",
                    ));
                }
                if child.columns.contains_key(&child.parent) {
                    return Err(ConfigError::new(
                        ck("columns"),
                        format!(
                            "{} is the parent column and is filled by ferry",
                            child.parent
                        ),
                        "remove it from columns",
                    ));
                }
                check_columns(&ck("columns"), &child.columns, &names, true)?;
            }
        }
        Ok(())
    }

    /// `schema.table` for a configured table name.
    pub fn qualified(&self, table: &str) -> String {
        if table.contains('.') {
            table.to_owned()
        } else {
            format!("{}.{table}", self.schema)
        }
    }
}

fn check_table(key: &str, table: &str) -> Result<(), ConfigError> {
    let ok = match table.split_once('.') {
        Some((s, t)) => is_sql_name(s) && is_sql_name(t),
        None => is_sql_name(table),
    };
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{table:?} is not a table name"),
            "write \"table\" or \"schema.table\" with letters, digits and underscores",
        ))
    }
}

fn check_path(key: &str, path: &str) -> Result<(), ConfigError> {
    if path.is_empty() || path.split('.').any(|p| p.is_empty() || p.starts_with('$')) {
        return Err(ConfigError::new(
            key,
            format!("{path:?} is not a field path"),
            "write a dotted path such as \"profile.name\"",
        ));
    }
    Ok(())
}

fn check_columns(
    key: &str,
    columns: &BTreeMap<String, Source>,
    collections: &BTreeSet<&str>,
    child: bool,
) -> Result<(), ConfigError> {
    for (column, source) in columns {
        let key = format!("{key}.{column}");
        if !is_sql_name(column) {
            return Err(ConfigError::new(
                &key,
                format!("{column:?} is not a column name"),
                "use the table's column names",
            ));
        }
        match source {
            Source::Path(p) if p == INDEX && child => {}
            Source::Path(p) if p == INDEX => {
                return Err(ConfigError::new(
                    key,
                    "$index is only meaningful in [[import.collection.child]]",
                    "map the column to a field path",
                ));
            }
            Source::Path(p) => check_path(&key, p)?,
            Source::Ref(r) => {
                check_path(&format!("{key}.path"), &r.path)?;
                if !collections.contains(r.collection.as_str()) {
                    return Err(ConfigError::new(
                        format!("{key}.ref"),
                        format!("{:?} is not a configured collection", r.collection),
                        format!(
                            "add [[import.collection]] name = \"{}\", or ref one of: {}",
                            r.collection,
                            collections.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    fn load(text: &str) -> Result<Config, crate::ConfigError> {
        Config::from_toml_str(text, &Env::empty())
    }

    const GOOD: &str = r#"
[import]
schema = "app"
[[import.collection]]
name = "users"
table = "users"
columns = { id = "_id", full_name = "profile.name", org_id = { path = "org", ref = "users" } }
[[import.collection]]
name = "courses"
table = "courses"
[[import.collection.child]]
path = "lessons"
table = "lessons"
parent = "course_id"
columns = { position = "$index", title = "title" }
"#;

    #[test]
    fn import_section_parses() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.import.collections.len(), 2);
        assert_eq!(c.import.collections[1].children[0].parent, "course_id");
        assert_eq!(c.import.qualified("users"), "app.users");
    }

    #[test]
    fn bad_import_config_names_the_key() {
        let e = load(&GOOD.replace("ref = \"users\"", "ref = \"orgs\"")).unwrap_err();
        assert!(
            e.key.contains("columns.org_id.ref") && e.fix.contains("orgs"),
            "{e}"
        );
        let e = load(&GOOD.replace("table = \"lessons\"", "table = \"users\"")).unwrap_err();
        assert!(e.key.contains("child[0].table"), "{e}");
        let e = load(&GOOD.replace("\"profile.name\"", "\"profile..name\"")).unwrap_err();
        assert!(e.key.contains("columns.full_name"), "{e}");
        let e = load(&GOOD.replace("id = \"_id\"", "id = \"$index\"")).unwrap_err();
        assert!(e.key.contains("columns.id"), "{e}");
        let e = load(&GOOD.replace("table = \"courses\"", "table = \"a b\"")).unwrap_err();
        assert!(e.key.contains("(courses).table"), "{e}");
        let e = load(&GOOD.replace("name = \"courses\"", "name = \"users\"")).unwrap_err();
        assert!(e.problem.contains("twice"), "{e}");
        let e = load(&GOOD.replace("{ path = \"org\",", "{ pth = \"org\",")).unwrap_err();
        assert!(
            e.to_string().contains("org_id") || e.key == "ferry.toml",
            "{e}"
        );
    }
}
