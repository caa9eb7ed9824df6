//! Ids of imported rows, derived from the documents so every run maps a document to the same
//! row: an ObjectId's 12 bytes then 4 zero bytes (reversible, ordered like the ObjectId);
//! other `_id` types a UUIDv5 in a namespace of the collection; embedded elements without
//! their own `_id` a UUIDv5 of the parent's id, the array path and the index.

use bson::{Bson, oid::ObjectId};
use uuid::Uuid;

pub fn object_id_uuid(oid: &ObjectId) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..12].copy_from_slice(&oid.bytes());
    Uuid::from_bytes(bytes)
}

/// The uuid of document `id` of `collection`.
pub fn document_uuid(collection: &str, id: &Bson) -> Uuid {
    match id {
        Bson::ObjectId(oid) => object_id_uuid(oid),
        other => {
            let namespace = Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("ferry-import:{collection}").as_bytes(),
            );
            Uuid::new_v5(&namespace, source_id(other).as_bytes())
        }
    }
}

/// The uuid of element `index` of the array at `path` in the document whose row id is `parent`.
pub fn element_uuid(parent: &Uuid, path: &str, index: usize) -> Uuid {
    Uuid::new_v5(parent, format!("{path}.{index}").as_bytes())
}

/// How a document id is shown and stored with rejects: ObjectId hex, else relaxed extended
/// JSON (so the string "65..." and the ObjectId 65... stay apart).
pub fn source_id(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        other => other.clone().into_relaxed_extjson().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_map_reversibly_and_in_order() {
        let a = ObjectId::parse_str("650000000000000000002713").unwrap();
        let b = ObjectId::parse_str("650000000000000000002714").unwrap();
        let ua = object_id_uuid(&a);
        assert_eq!(ua.to_string(), "65000000-0000-0000-0000-271300000000");
        assert!(ua < object_id_uuid(&b));
        assert_eq!(&ua.as_bytes()[..12], &a.bytes());
        let s = document_uuid("users", &Bson::String("x".into()));
        assert_eq!(s, document_uuid("users", &Bson::String("x".into())));
        assert_ne!(s, document_uuid("orgs", &Bson::String("x".into())));
        assert_ne!(
            element_uuid(&ua, "lessons", 0),
            element_uuid(&ua, "lessons", 1)
        );
    }
}
