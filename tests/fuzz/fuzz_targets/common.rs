// Shared by the fuzz targets: open the bytes as `format` and read everything a caller could.
use shoal::datasets::{Format, VectorFile};

pub fn exercise(file: &VectorFile) {
    let _ = file.validate();
    for chunk in file.chunks_f32(7) {
        if chunk.is_err() {
            break;
        }
    }
    let _ = file.read_all_u32();
    let _ = file.read_distances();
}

#[allow(dead_code)] // not every target uses it
pub fn run(data: &[u8], formats: &[Format]) {
    // The first byte picks the format so one target covers a family.
    let Some((&pick, rest)) = data.split_first() else { return };
    let format = formats[pick as usize % formats.len()];
    if let Ok(file) = VectorFile::from_bytes("fuzz", rest.to_vec(), format) {
        exercise(&file);
    }
}
