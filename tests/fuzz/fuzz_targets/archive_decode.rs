//! Fuzzes the snapshot archive head decoder (`storage::archive::decode`): what a user's
//! snapshot file — possibly downloaded from anywhere — controls. Any input must decode or fail
//! with a typed error, never a panic; a decoded head lists only names that stay inside the
//! extraction directory, and members that fill the file exactly.
//!
//! Each input is tried as a whole file, and with its header checksums forged to match and its
//! length claimed a little larger, so the manifest and length checks behind them are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::storage::archive::{self, check_member_name};
use shoal::storage::envelope::HEADER_LEN;

fn check(data: &[u8], file_len: u64) {
    if let Ok(a) = archive::decode(data, file_len) {
        let mut total = a.data_start;
        for m in &a.manifest.members {
            assert!(check_member_name(&m.name).is_ok());
            total += m.len;
        }
        assert_eq!(total, file_len);
        assert!(a.data_start as usize <= data.len());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, data.len() as u64);
    check(data, data.len() as u64 + 17);
    if data.len() >= HEADER_LEN {
        let mut forged = data.to_vec();
        let body_len = (forged.len() - HEADER_LEN) as u64;
        forged[16..24].copy_from_slice(&body_len.to_le_bytes());
        let body_crc = crc32fast::hash(&forged[HEADER_LEN..]);
        forged[24..28].copy_from_slice(&body_crc.to_le_bytes());
        let crc = crc32fast::hash(&forged[..28]);
        forged[28..32].copy_from_slice(&crc.to_le_bytes());
        check(&forged, forged.len() as u64);
        check(&forged, forged.len() as u64 + 1000);
    }
});
