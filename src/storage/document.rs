//! Small JSON documents (a shard's manifest of live segments, a node's persisted state) stored
//! with the same guarantees as every other shoal file.
//!
//! A document is a [`Container`] with no sections whose metadata is
//! `{"kind": <kind>, "value": <the document>}`: it gets the magic number, the format version, the
//! checksum over the metadata and the atomic commit for free, and `kind` stops one kind of file
//! from being read as another.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Container, ContainerWriter, StorageError};

#[derive(Serialize)]
struct Envelope<'a, T> {
    kind: &'a str,
    value: &'a T,
}

#[derive(serde::Deserialize)]
struct OwnedEnvelope<T> {
    kind: String,
    value: T,
}

/// Atomically replaces `path` with `value`, tagged with `kind`.
pub fn write_document<T: Serialize>(
    path: impl AsRef<Path>,
    kind: &str,
    value: &T,
) -> Result<(), StorageError> {
    let path = path.as_ref();
    let bytes = serde_json::to_vec(&Envelope { kind, value }).map_err(|e| {
        StorageError::InvalidSection {
            path: path.to_path_buf(),
            reason: format!("document does not serialise: {e}"),
        }
    })?;
    ContainerWriter::create(path)?.finish(&bytes)
}

/// Reads a document written by [`write_document`] with the same `kind`.
pub fn read_document<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    kind: &str,
) -> Result<T, StorageError> {
    let container = Container::open(path)?;
    container.verify()?;
    let envelope: OwnedEnvelope<T> = container.metadata_json()?;
    if envelope.kind != kind {
        return Err(StorageError::Corrupted {
            path: container.path().to_path_buf(),
            reason: format!("a {:?} document, expected {kind:?}", envelope.kind),
        });
    }
    Ok(envelope.value)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Manifest {
        segments: Vec<String>,
        applied_index: u64,
    }

    #[test]
    fn documents_round_trip_and_are_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MANIFEST");
        let manifest = Manifest {
            segments: vec!["seg-1.ivfpq".into(), "seg-2.ivfpq".into()],
            applied_index: 77,
        };
        assert!(matches!(
            read_document::<Manifest>(&path, "manifest"),
            Err(StorageError::NotFound { .. })
        ));
        write_document(&path, "manifest", &manifest).unwrap();
        assert_eq!(
            read_document::<Manifest>(&path, "manifest").unwrap(),
            manifest
        );

        // Another kind of document is refused, and so is a document of the wrong shape.
        assert!(matches!(
            read_document::<Manifest>(&path, "node-state"),
            Err(StorageError::Corrupted { .. })
        ));
        assert!(matches!(
            read_document::<Vec<u64>>(&path, "manifest"),
            Err(StorageError::Corrupted { .. })
        ));

        // Any damaged byte is caught.
        let good = fs::read(&path).unwrap();
        for at in [0, 9, 30, 62, good.len() - 3] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x20;
            fs::write(&path, &bytes).unwrap();
            assert!(
                read_document::<Manifest>(&path, "manifest").is_err(),
                "byte {at}"
            );
        }
    }
}
