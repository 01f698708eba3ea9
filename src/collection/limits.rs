//! The bounds every front end enforces, so that a collection, a search or a point that passes
//! them can be served; and [`validate_name`].

use super::Error;

/// Longest accepted collection name.
pub const MAX_NAME_LEN: usize = 255;
/// Largest accepted dimension.
pub const MAX_DIM: u64 = 65_536;
/// Largest shard count a collection may ask for.
pub const MAX_SHARDS: u32 = 1024;
/// Largest `nlist` a collection may ask for.
pub const MAX_NLIST: usize = 1 << 20;
/// Largest re-rank factor a search or a collection accepts.
pub const MAX_RERANK: usize = 100;
/// Largest `offset` a search accepts.
pub const MAX_OFFSET: usize = 100_000;
/// Largest `limit` of a search or a scroll page.
pub const MAX_LIMIT: usize = 10_000;

/// Checks a collection name: 1 to 255 characters of `[A-Za-z0-9_-]` (it names directories and
/// metric labels, so nothing else is allowed).
pub fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::bad(format!(
            "invalid collection name {name:?}: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ -"
        )));
    }
    Ok(())
}

/// Checks a `limit`: 1 to [`MAX_LIMIT`].
pub fn check_limit(l: usize) -> Result<usize, Error> {
    if l == 0 || l > MAX_LIMIT {
        return Err(Error::bad(format!(
            "limit = {l} must be in 1..={MAX_LIMIT}"
        )));
    }
    Ok(l)
}

/// Checks a vector against a collection's dimension: the right length, every component finite.
pub fn check_vector(v: &[f32], dim: usize, what: &str) -> Result<(), Error> {
    if v.len() != dim {
        return Err(Error::bad(format!(
            "{what}: wrong vector dimension: expected {dim}, got {}",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::bad(format!(
            "{what}: component {i} ({}) is not a finite 32-bit float",
            v[i]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "A-z_0", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", ".", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(
                matches!(validate_name(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn vectors_and_limits_are_checked() {
        assert!(check_vector(&[1.0, 2.0], 2, "q").is_ok());
        assert!(check_vector(&[1.0], 2, "q").is_err());
        assert!(check_vector(&[1.0, f32::NAN], 2, "q").is_err());
        assert!(check_vector(&[f32::INFINITY, 0.0], 2, "q").is_err());
        assert_eq!(check_limit(1).unwrap(), 1);
        assert!(check_limit(0).is_err());
        assert!(check_limit(MAX_LIMIT + 1).is_err());
    }
}
