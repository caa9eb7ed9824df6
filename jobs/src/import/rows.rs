//! One document → its row and its child rows, or the reason it cannot become them.

use bson::{Bson, Document};

use super::{
    convert, ids,
    mapping::{CollectionPlan, ColumnMap, From, TablePlan},
};
use crate::sync::mapping::Scalar;

/// A row as the text of each mapped column (`None`: NULL), in [`TablePlan::columns`] order.
pub type Row = Vec<Option<String>>;

/// A column holding the id of a document of another collection, to check it was imported.
#[derive(Debug, Clone)]
pub struct RefUse {
    pub collection: String,
    /// The referenced row's key as text.
    pub key: String,
    /// The referenced document's id, as stored with rejects.
    pub source_id: String,
    pub raw: Bson,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct DocRows {
    pub row: Row,
    /// Per child plan, its rows.
    pub children: Vec<Vec<Row>>,
    pub refs: Vec<RefUse>,
}

/// A document read from the source, converted or refused.
#[derive(Debug)]
pub struct Converted {
    pub source_id: String,
    pub id: Bson,
    pub document: Document,
    pub rows: Result<DocRows, String>,
}

impl Converted {
    pub fn new(plan: &CollectionPlan, document: Document) -> Self {
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        let rows = convert_doc(plan, &document);
        Self {
            source_id: ids::source_id(&id),
            id,
            document,
            rows,
        }
    }

    pub fn reject(&mut self, reason: String) {
        self.rows = Err(reason);
    }
}

/// The value at a dotted path; absent → None.
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut v = doc.get(parts.next()?)?;
    for p in parts {
        v = v.as_document()?.get(p)?;
    }
    Some(v)
}

fn convert_doc(plan: &CollectionPlan, doc: &Document) -> Result<DocRows, String> {
    let mut refs = Vec::new();
    let row = table_row(&plan.name, &plan.rows, doc, None, &mut refs)?;
    let parent_key = row[plan.rows.key].clone().unwrap_or_default();
    let parent_uuid = uuid::Uuid::parse_str(&parent_key)
        .unwrap_or_else(|_| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, parent_key.as_bytes()));
    let mut children = Vec::new();
    for child in &plan.children {
        let items = match get_path(doc, &child.path) {
            None | Some(Bson::Null) => &[][..],
            Some(Bson::Array(items)) => &items[..],
            Some(other) => {
                return Err(format!(
                    "{} is {}, not an array (child table {})",
                    child.path,
                    convert::kind(other),
                    child.rows.table.name
                ));
            }
        };
        let mut rows = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Bson::Document(element) = item else {
                return Err(format!(
                    "{}.{i} is {}, not an embedded document (child table {})",
                    child.path,
                    convert::kind(item),
                    child.rows.table.name
                ));
            };
            let at = Element {
                index: i,
                path: &child.path,
                parent_key: &parent_key,
                parent_uuid: &parent_uuid,
            };
            rows.push(
                table_row(&plan.name, &child.rows, element, Some(at), &mut refs)
                    .map_err(|e| format!("{}.{i}: {e}", child.path))?,
            );
        }
        children.push(rows);
    }
    Ok(DocRows {
        row,
        children,
        refs,
    })
}

#[derive(Clone, Copy)]
struct Element<'a> {
    index: usize,
    path: &'a str,
    parent_key: &'a str,
    parent_uuid: &'a uuid::Uuid,
}

fn table_row(
    collection: &str,
    plan: &TablePlan,
    doc: &Document,
    element: Option<Element<'_>>,
    refs: &mut Vec<RefUse>,
) -> Result<Row, String> {
    let mut row = Vec::with_capacity(plan.columns.len());
    for m in &plan.columns {
        let value = value(collection, m, doc, element, refs)?;
        if value.is_none() && m.column.not_null {
            return Err(format!(
                "{} is missing or null, and {}.{} is NOT NULL; fix: set it in the document",
                m.from.describe(),
                plan.table.name,
                m.column.name
            ));
        }
        row.push(value);
    }
    Ok(row)
}

fn value(
    collection: &str,
    m: &ColumnMap,
    doc: &Document,
    element: Option<Element<'_>>,
    refs: &mut Vec<RefUse>,
) -> Result<Option<String>, String> {
    let col = &m.column;
    let fail = |path: &str, e: String| format!("{path} → {} ({}): {e}", col.name, col.type_name);
    let uuid_col = col.ty.scalar == Scalar::Uuid && !col.ty.array;
    match &m.from {
        From::Index => {
            let i = element.map_or(0, |e| e.index) as i64;
            convert::to_text(&Bson::Int64(i), col).map_err(|e| fail("$index", e))
        }
        From::Parent => Ok(element.map(|e| e.parent_key.to_owned())),
        From::ElementId => {
            let e = element.expect("element ids are only planned for child tables");
            Ok(Some(match doc.get("_id") {
                Some(id) if uuid_col => ids::document_uuid(collection, id).to_string(),
                Some(id) => return convert::to_text(id, col).map_err(|e| fail("_id", e)),
                None => ids::element_uuid(e.parent_uuid, e.path, e.index).to_string(),
            }))
        }
        From::Path(p) if p == "_id" && element.is_none() && uuid_col => {
            Ok(get_path(doc, p).map(|id| ids::document_uuid(collection, id).to_string()))
        }
        From::Path(p) => match get_path(doc, p) {
            None => Ok(None),
            Some(v) => convert::to_text(v, col).map_err(|e| fail(p, e)),
        },
        From::Ref {
            path,
            collection: target,
        } => {
            let Some(v) = get_path(doc, path).filter(|v| !matches!(v, Bson::Null)) else {
                return Ok(None);
            };
            let key = if uuid_col {
                ids::document_uuid(target, v).to_string()
            } else {
                match convert::to_text(v, col).map_err(|e| fail(path, e))? {
                    Some(k) => k,
                    None => return Ok(None),
                }
            };
            refs.push(RefUse {
                collection: target.clone(),
                key: key.clone(),
                source_id: ids::source_id(v),
                raw: v.clone(),
                path: path.clone(),
            });
            Ok(Some(key))
        }
    }
}
