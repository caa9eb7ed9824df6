//! BSON values to the text form of a target column's type, checked so that Postgres's cast
//! of that text is exact: a value that would be rounded, truncated or reinterpreted is an
//! error naming why, which the caller turns into a reject.
//!
//! | BSON | accepted by |
//! |---|---|
//! | string | text, uuid (when it parses), enum (when a label), other types Postgres parses |
//! | ObjectId | uuid (mapped id), text (hex) |
//! | int32, int64 | integers in range, numeric, float8 (when exact), float4 (when exact) |
//! | double | float8, float4 (when exact), numeric, integers (when integral and in range) |
//! | Decimal128 | numeric (exactly; within the column's precision and scale), integers when integral |
//! | date | timestamptz, timestamp (UTC), date (midnight UTC only) |
//! | bool | boolean |
//! | anything | json, jsonb (relaxed extended JSON) |
//! | array of scalars | SQL arrays, elements converted alike |
//! | binary | bytea; uuid (subtype 4) |

use bson::{Bson, spec::BinarySubtype};
use chrono::{SecondsFormat, Timelike};

use super::{catalog::TargetColumn, ids};
use crate::sync::mapping::Scalar;

/// The column's text, or `None` for NULL; `Err` says why the value does not fit.
pub fn to_text(v: &Bson, col: &TargetColumn) -> Result<Option<String>, String> {
    if matches!(v, Bson::Null | Bson::Undefined) {
        return Ok(None);
    }
    if col.ty.array {
        let Bson::Array(items) = v else {
            return Err(format!("is {}, not an array", kind(v)));
        };
        let mut out = String::from("{");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if matches!(item, Bson::Array(_)) {
                return Err("holds nested arrays, which a one-dimensional column cannot".into());
            }
            match scalar(item, col).map_err(|e| format!("element {i} {e}"))? {
                None => out.push_str("NULL"),
                Some(text) => {
                    out.push('"');
                    out.push_str(&text.replace('\\', "\\\\").replace('"', "\\\""));
                    out.push('"');
                }
            }
        }
        out.push('}');
        return Ok(Some(out));
    }
    scalar(v, col)
}

fn scalar(v: &Bson, col: &TargetColumn) -> Result<Option<String>, String> {
    if matches!(v, Bson::Null | Bson::Undefined) {
        return Ok(None);
    }
    let wrong = || {
        Err(format!(
            "is {}, which {} cannot hold",
            kind(v),
            col.type_name
        ))
    };
    let text = match col.ty.scalar {
        Scalar::Json => {
            serde_json::to_string(&v.clone().into_relaxed_extjson()).map_err(|e| e.to_string())?
        }
        Scalar::Text => match v {
            Bson::String(s) | Bson::Symbol(s) => s.clone(),
            Bson::ObjectId(o) => o.to_hex(),
            _ => return wrong(),
        },
        Scalar::Uuid => match v {
            Bson::ObjectId(o) => ids::object_id_uuid(o).to_string(),
            Bson::String(s) => uuid::Uuid::parse_str(s)
                .map_err(|_| format!("{s:?} is not a uuid"))?
                .to_string(),
            Bson::Binary(b) if b.subtype == BinarySubtype::Uuid => uuid::Uuid::from_slice(&b.bytes)
                .map_err(|e| e.to_string())?
                .to_string(),
            _ => return wrong(),
        },
        Scalar::Bool => match v {
            Bson::Boolean(b) => b.to_string(),
            _ => return wrong(),
        },
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => {
            let (lo, hi) = match col.ty.scalar {
                Scalar::Int2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
                Scalar::Int4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            let n: i64 = match v {
                Bson::Int32(i) => i64::from(*i),
                Bson::Int64(i) => *i,
                Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => *f as i64,
                Bson::Double(f) => return Err(format!("{f} is not a whole number in range")),
                Bson::Decimal128(d) => {
                    let (plain, _, frac) = plain_decimal(&d.to_string())?;
                    if frac > 0 {
                        return Err(format!("{d} is not a whole number"));
                    }
                    plain.parse().map_err(|_| format!("{d} is out of range"))?
                }
                _ => return wrong(),
            };
            if n < lo || n > hi {
                return Err(format!("{n} is out of range for {}", col.type_name));
            }
            n.to_string()
        }
        Scalar::Float8 | Scalar::Float4 => {
            let f = match v {
                Bson::Int32(i) => f64::from(*i),
                Bson::Int64(i) if i.unsigned_abs() <= 1 << 53 => *i as f64,
                Bson::Double(f) => *f,
                Bson::Int64(_) | Bson::Decimal128(_) => {
                    return Err(format!(
                        "{} would be rounded by {}; make the column numeric",
                        bson_text(v),
                        col.type_name
                    ));
                }
                _ => return wrong(),
            };
            if col.ty.scalar == Scalar::Float4 {
                let narrow = f as f32;
                if f64::from(narrow) != f && !f.is_nan() {
                    return Err(format!(
                        "{f} would be rounded by real; make the column float8"
                    ));
                }
            }
            float_text(f)
        }
        Scalar::Numeric => {
            let text = match v {
                Bson::Int32(i) => i.to_string(),
                Bson::Int64(i) => i.to_string(),
                Bson::Double(f) if f.is_finite() => f.to_string(),
                Bson::Decimal128(d) => d.to_string(),
                Bson::Double(f) => return Err(format!("{f} is not a finite number")),
                _ => return wrong(),
            };
            let (plain, int_digits, frac_digits) = plain_decimal(&text)?;
            if let Some((p, s)) = numeric_bounds(&col.type_name) {
                if frac_digits > s {
                    return Err(format!(
                        "{text} has {frac_digits} decimal places and {} keeps {s}: it would be rounded",
                        col.type_name
                    ));
                }
                if int_digits > p.saturating_sub(s) {
                    return Err(format!("{text} is too large for {}", col.type_name));
                }
            }
            plain
        }
        Scalar::Timestamptz | Scalar::Timestamp | Scalar::Date => {
            let Bson::DateTime(d) = v else {
                return wrong();
            };
            // `to_chrono` clamps dates beyond chrono's range; refuse them instead.
            if d.try_to_rfc3339_string().is_err() {
                return Err(format!("date {} ms is out of range", d.timestamp_millis()));
            }
            let t = d.to_chrono();
            match col.ty.scalar {
                Scalar::Timestamptz => t.to_rfc3339_opts(SecondsFormat::Millis, true),
                Scalar::Timestamp => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                _ => {
                    if t.num_seconds_from_midnight() != 0 || t.nanosecond() != 0 {
                        return Err(format!(
                            "{} has a time of day that a date column would drop",
                            t.to_rfc3339_opts(SecondsFormat::Millis, true)
                        ));
                    }
                    t.format("%Y-%m-%d").to_string()
                }
            }
        }
        Scalar::Bytea => match v {
            Bson::Binary(b) => {
                let mut s = String::with_capacity(2 + b.bytes.len() * 2);
                s.push_str("\\x");
                for byte in &b.bytes {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            _ => return wrong(),
        },
        // Enums, and types Postgres parses from text (inet, interval, ...): only strings;
        // Postgres refuses what does not parse and the document becomes a reject.
        Scalar::Other => match v {
            Bson::String(s) if col.labels.is_empty() || col.labels.contains(s) => s.clone(),
            Bson::String(s) => {
                return Err(format!(
                    "{s:?} is not a value of {} (values: {})",
                    col.type_name.trim_end_matches("[]"),
                    col.labels.join(", ")
                ));
            }
            _ => return wrong(),
        },
    };
    if text.contains('\0') {
        return Err("holds a NUL character, which PostgreSQL text cannot".into());
    }
    Ok(Some(text))
}

/// Postgres's float input reads the shortest round-trip form exactly.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        f.to_string()
    }
}

fn bson_text(v: &Bson) -> String {
    match v {
        Bson::Decimal128(d) => d.to_string(),
        Bson::Int64(i) => i.to_string(),
        other => other.to_string(),
    }
}

/// A decimal (`-1.25E+3`, `0.001`) as plain digits, with its count of significant integer
/// digits and of fractional digits (trailing zeros dropped).
pub fn plain_decimal(text: &str) -> Result<(String, usize, usize), String> {
    let bad = || format!("{text} is not a finite decimal");
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    if exp.abs() > 10_000 {
        return Err(bad());
    }
    let digits: String = format!("{int}{frac}");
    // Position of the decimal point within `digits`.
    let point = int.len() as i64 + exp;
    let (mut int_part, mut frac_part) = if point <= 0 {
        (String::new(), "0".repeat((-point) as usize) + &digits)
    } else if point as usize >= digits.len() {
        (
            digits.clone() + &"0".repeat(point as usize - digits.len()),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_owned(),
            digits[point as usize..].to_owned(),
        )
    };
    int_part = int_part.trim_start_matches('0').to_owned();
    frac_part = frac_part.trim_end_matches('0').to_owned();
    let (ni, nf) = (int_part.len(), frac_part.len());
    let zero = ni == 0 && nf == 0;
    let mut plain = String::from(if zero { "" } else { sign });
    plain.push_str(if int_part.is_empty() { "0" } else { &int_part });
    if nf > 0 {
        plain.push('.');
        plain.push_str(&frac_part);
    }
    Ok((plain, ni, nf))
}

/// `numeric(p,s)` → (p, s); `numeric(p)` → (p, 0); unconstrained → None.
fn numeric_bounds(type_name: &str) -> Option<(usize, usize)> {
    let inner = type_name.strip_prefix("numeric(")?;
    let inner = inner.split(')').next()?;
    let mut parts = inner.split(',');
    let p = parts.next()?.trim().parse().ok()?;
    let s = parts.next().map_or(Some(0), |s| s.trim().parse().ok())?;
    Some((p, s))
}

/// A BSON value's kind, for messages.
pub fn kind(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "a double",
        Bson::String(_) => "a string",
        Bson::Array(_) => "an array",
        Bson::Document(_) => "a document",
        Bson::Boolean(_) => "a boolean",
        Bson::Null => "null",
        Bson::Int32(_) => "an int32",
        Bson::Int64(_) => "an int64",
        Bson::Decimal128(_) => "a Decimal128",
        Bson::DateTime(_) => "a date",
        Bson::ObjectId(_) => "an ObjectId",
        Bson::Binary(_) => "binary data",
        _ => "a BSON value of another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::mapping::ColumnType;

    fn col(scalar: Scalar, array: bool, type_name: &str) -> TargetColumn {
        TargetColumn {
            name: "c".into(),
            quoted: "\"c\"".into(),
            ty: ColumnType { scalar, array },
            type_name: type_name.into(),
            cast: type_name.into(),
            not_null: false,
            defaulted: false,
            labels: if type_name == "mood" {
                vec!["happy".into(), "sad".into()]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn decimals_become_plain_digits() {
        assert_eq!(plain_decimal("1.2E+3").unwrap(), ("1200".into(), 4, 0));
        assert_eq!(plain_decimal("-0.0500").unwrap(), ("-0.05".into(), 0, 2));
        assert_eq!(plain_decimal("12.345").unwrap(), ("12.345".into(), 2, 3));
        assert_eq!(plain_decimal("5E-3").unwrap(), ("0.005".into(), 0, 3));
        assert!(plain_decimal("NaN").is_err());
    }

    #[test]
    fn values_fit_exactly_or_are_refused() {
        let money = col(Scalar::Numeric, false, "numeric(10,2)");
        let d = |s: &str| Bson::Decimal128(s.parse().unwrap());
        assert_eq!(to_text(&d("19.90"), &money).unwrap().unwrap(), "19.9");
        assert!(
            to_text(&d("19.999"), &money)
                .unwrap_err()
                .contains("rounded")
        );
        assert!(
            to_text(&d("123456789.1"), &money)
                .unwrap_err()
                .contains("too large")
        );
        let int4 = col(Scalar::Int4, false, "integer");
        assert_eq!(to_text(&Bson::Double(3.0), &int4).unwrap().unwrap(), "3");
        assert!(to_text(&Bson::Double(3.5), &int4).is_err());
        assert!(to_text(&Bson::Int64(1 << 40), &int4).is_err());
        assert!(to_text(&Bson::String("3".into()), &int4).is_err());
        let mood = col(Scalar::Other, false, "mood");
        assert!(
            to_text(&Bson::String("angry".into()), &mood)
                .unwrap_err()
                .contains("happy")
        );
        let tags = col(Scalar::Text, true, "text[]");
        let arr = Bson::Array(vec![Bson::String("a\"b".into()), Bson::Null]);
        assert_eq!(to_text(&arr, &tags).unwrap().unwrap(), "{\"a\\\"b\",NULL}");
        let day = col(Scalar::Date, false, "date");
        let noon = Bson::DateTime(bson::DateTime::from_millis(43_200_000));
        assert!(to_text(&noon, &day).is_err());
        let real = col(Scalar::Float4, false, "real");
        assert!(to_text(&Bson::Double(0.1), &real).is_err());
        assert_eq!(to_text(&Bson::Double(0.5), &real).unwrap().unwrap(), "0.5");
    }
}
