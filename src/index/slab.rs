//! [`Slab`]: a typed, read-only view over bytes that someone else owns.
//!
//! Sealed index parts (codes, ids, centroids, raw vectors) are large and immutable. Keeping them in
//! `Slab`s lets the same search code run over a `Vec` built in memory and over a memory-mapped
//! segment file, with no copy and no parsing when a segment is opened.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use bytemuck::Pod;

/// Anything that owns a stable, immutable run of bytes: a `Vec`, a memory map.
pub trait ByteOwner: Send + Sync + 'static {
    /// The owned bytes; must return the same slice for the owner's whole life.
    fn bytes(&self) -> &[u8];
}

struct VecOwner<T: Pod + Send + Sync>(Vec<T>);

impl<T: Pod + Send + Sync> ByteOwner for VecOwner<T> {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Error returned when bytes cannot be viewed as a slice of `T`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlabError {
    /// The requested range lies outside the owner's bytes.
    #[error("range {offset}..{end} is outside the {available} bytes available")]
    OutOfBounds {
        /// Start of the requested byte range.
        offset: usize,
        /// End of the requested byte range.
        end: usize,
        /// Bytes the owner holds.
        available: usize,
    },
    /// The range is not aligned for the element type.
    #[error("offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// Start of the requested byte range.
        offset: usize,
        /// Alignment the element type needs.
        align: usize,
    },
}

/// A cheaply clonable `&[T]` whose bytes are kept alive by an [`ByteOwner`].
pub struct Slab<T: Pod> {
    owner: Arc<dyn ByteOwner>,
    offset: usize,
    len: usize,
    _element: PhantomData<T>,
}

impl<T: Pod> Clone for Slab<T> {
    fn clone(&self) -> Self {
        Self {
            owner: Arc::clone(&self.owner),
            offset: self.offset,
            len: self.len,
            _element: PhantomData,
        }
    }
}

impl<T: Pod + Send + Sync> From<Vec<T>> for Slab<T> {
    fn from(values: Vec<T>) -> Self {
        let len = values.len();
        Self {
            owner: Arc::new(VecOwner(values)),
            offset: 0,
            len,
            _element: PhantomData,
        }
    }
}

impl<T: Pod> Slab<T> {
    /// Views `len` elements of `T` starting at byte `offset` of `owner`.
    pub fn from_owner(
        owner: Arc<dyn ByteOwner>,
        offset: usize,
        len: usize,
    ) -> Result<Self, SlabError> {
        let available = owner.bytes().len();
        let end = len
            .checked_mul(size_of::<T>())
            .and_then(|n| n.checked_add(offset))
            .ok_or(SlabError::OutOfBounds {
                offset,
                end: usize::MAX,
                available,
            })?;
        if end > available {
            return Err(SlabError::OutOfBounds {
                offset,
                end,
                available,
            });
        }
        let align = align_of::<T>();
        if !(owner.bytes().as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(SlabError::Misaligned { offset, align });
        }
        Ok(Self {
            owner,
            offset,
            len,
            _element: PhantomData,
        })
    }

    /// The bytes behind this view, for writing it out.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.deref())
    }
}

impl<T: Pod> Deref for Slab<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let bytes = &self.owner.bytes()[self.offset..self.offset + self.len * size_of::<T>()];
        // Alignment and length were checked in `from_owner`; a `Vec<T>` owner is aligned by
        // construction.
        bytemuck::cast_slice(bytes)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Slab<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slab")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_round_trips() {
        let slab = Slab::from(vec![1.0f32, 2.0, 3.0]);
        assert_eq!(&*slab, &[1.0, 2.0, 3.0]);
        assert_eq!(slab.as_bytes().len(), 12);
    }

    #[test]
    fn owner_view_checks_bounds_and_alignment() {
        let owner: Arc<dyn ByteOwner> = Arc::new(VecOwner(vec![0u64; 4]));
        let view = Slab::<u32>::from_owner(Arc::clone(&owner), 8, 4).unwrap();
        assert_eq!(view.len(), 4);
        assert!(matches!(
            Slab::<u32>::from_owner(Arc::clone(&owner), 24, 4),
            Err(SlabError::OutOfBounds { .. })
        ));
        assert!(matches!(
            Slab::<u32>::from_owner(owner, 2, 1),
            Err(SlabError::Misaligned { .. })
        ));
    }
}
