//! PostgreSQL values to BSON, losslessly where BSON can hold them.
//!
//! | Postgres | BSON |
//! |---|---|
//! | int2, int4 / int8 | Int32 / Int64 |
//! | float4, float8 | Double |
//! | numeric | Decimal128 with the same digits; beyond 34 significant digits: string (reported) |
//! | bool, text, varchar, char, name | bool, string |
//! | uuid | string |
//! | timestamptz, timestamp | date (ms; finer digits lost, reported) or ISO-8601 string (`timestamps = "iso"`) |
//! | date | date at midnight UTC, or `YYYY-MM-DD` |
//! | json, jsonb | documents and arrays |
//! | bytea | Binary (generic) |
//! | arrays | arrays, elements mapped alike |
//! | enums, domains | their base value |
//! | anything else (interval, inet, ranges, tsvector, money, ...) | its text form |
//! | NULL | null |

use bson::{Binary, Bson, Decimal128, spec::BinarySubtype};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use ferry_config::Timestamps;
use sqlx::{Row, postgres::PgRow};

/// How a column is read and mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text,
    Uuid,
    Timestamptz,
    Timestamp,
    Date,
    Json,
    Bytea,
    /// Read as text, stored as Decimal128.
    Numeric,
    /// Read as text, stored as a string.
    Other,
}

impl Scalar {
    /// From the name of the (domain-resolved) base type.
    pub fn from_type_name(name: &str) -> Self {
        match name {
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "bool" => Self::Bool,
            "text" | "varchar" | "bpchar" | "name" | "char" => Self::Text,
            "uuid" => Self::Uuid,
            "timestamptz" => Self::Timestamptz,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "json" | "jsonb" => Self::Json,
            "bytea" => Self::Bytea,
            "numeric" => Self::Numeric,
            _ => Self::Other,
        }
    }

    /// Whether the value is read in Postgres's text form.
    fn as_text(self) -> bool {
        matches!(self, Self::Numeric | Self::Other)
    }
}

/// A column's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub scalar: Scalar,
    pub array: bool,
}

impl ColumnType {
    /// The select expression for quoted column `col`.
    pub fn select_expr(&self, col: &str) -> String {
        match (self.scalar.as_text(), self.array) {
            (true, false) => format!("{col}::text"),
            (true, true) => format!("{col}::text[]"),
            (false, _) => col.to_owned(),
        }
    }

    /// Why this column's values may not come back identical, if they may not.
    /// `type_name` is the column's type as Postgres prints it (`numeric(12,2)`).
    pub fn loss(&self, type_name: &str, timestamps: Timestamps) -> Option<&'static str> {
        match self.scalar {
            Scalar::Timestamptz | Scalar::Timestamp if timestamps == Timestamps::Date => {
                Some("sub-millisecond digits dropped (sync.timestamps = \"iso\" keeps them)")
            }
            Scalar::Numeric if numeric_precision(type_name).is_none_or(|p| p > 34) => {
                Some("values over 34 digits stored as strings")
            }
            Scalar::Json => Some("JSON numbers read as double or integer"),
            _ => None,
        }
    }
}

/// The declared precision of `numeric(p,s)`; `None` when unconstrained.
fn numeric_precision(type_name: &str) -> Option<u32> {
    let inner = type_name.strip_prefix("numeric(")?;
    inner.split([',', ')']).next()?.trim().parse().ok()
}

/// Decodes column `i` of `row`. The row was selected with [`ColumnType::select_expr`].
/// `inexact` counts numerics stored as strings because Decimal128 cannot hold them.
pub fn decode(
    row: &PgRow,
    i: usize,
    ty: &ColumnType,
    timestamps: Timestamps,
    inexact: &mut u64,
) -> Result<Bson, sqlx::Error> {
    if ty.array {
        return decode_array(row, i, ty.scalar, timestamps, inexact);
    }
    // Domains reach us with their own type oid; their wire format is the base type's.
    macro_rules! get {
        ($t:ty) => {
            match row.try_get_unchecked::<Option<$t>, _>(i)? {
                None => return Ok(Bson::Null),
                Some(v) => v,
            }
        };
    }
    Ok(match ty.scalar {
        Scalar::Int2 => Bson::Int32(i32::from(get!(i16))),
        Scalar::Int4 => Bson::Int32(get!(i32)),
        Scalar::Int8 => Bson::Int64(get!(i64)),
        Scalar::Float4 => Bson::Double(f64::from(get!(f32))),
        Scalar::Float8 => Bson::Double(get!(f64)),
        Scalar::Bool => Bson::Boolean(get!(bool)),
        Scalar::Text | Scalar::Other => Bson::String(get!(String)),
        Scalar::Uuid => Bson::String(get!(uuid::Uuid).to_string()),
        Scalar::Timestamptz => instant(get!(DateTime<Utc>), timestamps),
        Scalar::Timestamp => instant(get!(NaiveDateTime).and_utc(), timestamps),
        Scalar::Date => date(get!(NaiveDate), timestamps),
        Scalar::Json => json(get!(serde_json::Value)),
        Scalar::Bytea => binary(get!(Vec<u8>)),
        Scalar::Numeric => numeric(get!(String), inexact),
    })
}

fn decode_array(
    row: &PgRow,
    i: usize,
    scalar: Scalar,
    timestamps: Timestamps,
    inexact: &mut u64,
) -> Result<Bson, sqlx::Error> {
    macro_rules! arr {
        ($t:ty, $f:expr) => {
            match row.try_get_unchecked::<Option<Vec<Option<$t>>>, _>(i)? {
                None => Bson::Null,
                Some(items) => Bson::Array(
                    items
                        .into_iter()
                        .map(|v| v.map_or(Bson::Null, $f))
                        .collect(),
                ),
            }
        };
    }
    Ok(match scalar {
        Scalar::Int2 => arr!(i16, |v| Bson::Int32(i32::from(v))),
        Scalar::Int4 => arr!(i32, Bson::Int32),
        Scalar::Int8 => arr!(i64, Bson::Int64),
        Scalar::Float4 => arr!(f32, |v| Bson::Double(f64::from(v))),
        Scalar::Float8 => arr!(f64, Bson::Double),
        Scalar::Bool => arr!(bool, Bson::Boolean),
        Scalar::Text | Scalar::Other => arr!(String, Bson::String),
        Scalar::Uuid => arr!(uuid::Uuid, |v| Bson::String(v.to_string())),
        Scalar::Timestamptz => arr!(DateTime<Utc>, |v| instant(v, timestamps)),
        Scalar::Timestamp => arr!(NaiveDateTime, |v| instant(v.and_utc(), timestamps)),
        Scalar::Date => arr!(NaiveDate, |v| date(v, timestamps)),
        Scalar::Json => arr!(serde_json::Value, json),
        Scalar::Bytea => arr!(Vec<u8>, binary),
        Scalar::Numeric => arr!(String, |v| numeric(v, inexact)),
    })
}

fn instant(t: DateTime<Utc>, timestamps: Timestamps) -> Bson {
    match timestamps {
        Timestamps::Date => Bson::DateTime(bson::DateTime::from_millis(t.timestamp_millis())),
        Timestamps::Iso => Bson::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

fn date(d: NaiveDate, timestamps: Timestamps) -> Bson {
    match timestamps {
        Timestamps::Date => instant(
            d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            timestamps,
        ),
        Timestamps::Iso => Bson::String(d.format("%Y-%m-%d").to_string()),
    }
}

fn json(v: serde_json::Value) -> Bson {
    Bson::try_from(v).unwrap_or(Bson::Null)
}

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

fn numeric(text: String, inexact: &mut u64) -> Bson {
    match text.parse::<Decimal128>() {
        Ok(d) => Bson::Decimal128(d),
        Err(_) => {
            *inexact += 1;
            Bson::String(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_map_to_scalars() {
        assert_eq!(Scalar::from_type_name("int8"), Scalar::Int8);
        assert_eq!(Scalar::from_type_name("bpchar"), Scalar::Text);
        assert_eq!(Scalar::from_type_name("interval"), Scalar::Other);
        assert_eq!(Scalar::from_type_name("jsonb"), Scalar::Json);
    }

    #[test]
    fn text_read_columns_are_cast() {
        let numeric = ColumnType {
            scalar: Scalar::Numeric,
            array: false,
        };
        assert_eq!(numeric.select_expr("\"price\""), "\"price\"::text");
        let arr = ColumnType {
            scalar: Scalar::Other,
            array: true,
        };
        assert_eq!(arr.select_expr("\"x\""), "\"x\"::text[]");
        let uuid = ColumnType {
            scalar: Scalar::Uuid,
            array: false,
        };
        assert_eq!(uuid.select_expr("\"id\""), "\"id\"");
    }

    #[test]
    fn numerics_keep_their_digits_or_fall_back_to_strings() {
        let mut inexact = 0;
        assert_eq!(
            numeric("12.50".into(), &mut inexact).to_string(),
            Bson::Decimal128("12.50".parse().unwrap()).to_string()
        );
        let long = "3.14159265358979323846264338327950288";
        assert_eq!(
            numeric(long.into(), &mut inexact),
            Bson::String(long.into())
        );
        assert_eq!(inexact, 1);
    }

    #[test]
    fn bounded_numerics_are_not_reported_lossy() {
        let n = ColumnType {
            scalar: Scalar::Numeric,
            array: false,
        };
        assert_eq!(n.loss("numeric(12,2)", Timestamps::Date), None);
        assert!(n.loss("numeric", Timestamps::Date).is_some());
        assert!(n.loss("numeric(40,2)", Timestamps::Date).is_some());
    }

    #[test]
    fn instants_in_both_modes() {
        let t = DateTime::parse_from_rfc3339("2024-03-01T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            instant(t, Timestamps::Iso),
            Bson::String("2024-03-01T10:00:00.123456Z".into())
        );
        assert_eq!(
            instant(t, Timestamps::Date),
            Bson::DateTime(bson::DateTime::from_millis(1709287200123))
        );
        let d = NaiveDate::from_ymd_opt(1965, 7, 4).unwrap();
        assert_eq!(date(d, Timestamps::Iso), Bson::String("1965-07-04".into()));
    }
}
