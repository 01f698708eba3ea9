//! From stored parts to a searchable index and back: every size is checked against the metadata
//! (so a search on a restored index never indexes out of bounds), and the tables a scanner needs
//! are derived here, once per load, rather than stored.

use rayon::prelude::*;
use std::sync::OnceLock;

use super::{
    COARSE8_FROM_BYTES, IvfPqIndex, IvfPqMeta, IvfPqParts, LAYOUT_VERSION, OLDEST_LAYOUT_VERSION,
    corrupted,
};
use crate::index::Metric;
use crate::index::Slab;
use crate::index::coarse::CoarseTable;
use crate::index::coarse8::Coarse8;
use crate::index::distance;
use crate::index::error::IndexError;
use crate::index::fastscan::{self, SimdLevel};
use crate::index::pq::{self, ProductQuantizer};

impl IvfPqIndex {
    /// Rebuilds an index from stored parts, checking that every size agrees with the metadata.
    pub fn from_parts(parts: IvfPqParts) -> Result<Self, IndexError> {
        let IvfPqParts {
            meta,
            centroids,
            codebooks,
            list_offsets,
            codes,
            ids,
            vectors,
            spill_offsets,
            spill_rows,
        } = parts;
        if !(OLDEST_LAYOUT_VERSION..=LAYOUT_VERSION).contains(&meta.version) {
            return Err(corrupted(format!(
                "layout version {} (this build reads {OLDEST_LAYOUT_VERSION} to {LAYOUT_VERSION})",
                meta.version
            )));
        }
        let IvfPqMeta {
            dim,
            metric,
            nlist,
            pq_m,
            pq_bits,
            n,
            spilled,
            ..
        } = meta;
        pq::check_params(dim, pq_m, pq_bits).map_err(|e| corrupted(e.to_string()))?;
        if nlist == 0 {
            return Err(corrupted("nlist is 0"));
        }
        if pq_bits == 4 && fastscan::padded_m(pq_m) > fastscan::MAX_SUBSPACES {
            return Err(corrupted("too many sub-spaces for 4-bit codes"));
        }
        let expect = |what: &str, got: usize, want: Option<usize>| match want {
            Some(w) if w == got => Ok(()),
            _ => Err(corrupted(format!(
                "{what}: {got} elements, expected {want:?}"
            ))),
        };
        expect("centroids", centroids.len(), nlist.checked_mul(dim))?;
        if centroids.iter().any(|v| !v.is_finite()) {
            return Err(corrupted("centroids contain a non-finite value"));
        }
        let pq = ProductQuantizer::from_codebooks(dim, pq_m, pq_bits, codebooks)?;
        expect("list offsets", list_offsets.len(), nlist.checked_add(1))?;
        if list_offsets[0] != 0
            || list_offsets.windows(2).any(|w| w[0] > w[1])
            || list_offsets[nlist] != n as u64
        {
            return Err(corrupted("list offsets are not increasing from 0 to n"));
        }
        expect("ids", ids.len(), Some(n))?;
        expect("vectors", vectors.len(), n.checked_mul(dim))?;
        check_spills(&meta, &spill_offsets, &spill_rows)?;
        let spilled_in = |l: usize| match spilled {
            0 => 0,
            _ => (spill_offsets[l + 1] - spill_offsets[l]) as usize,
        };
        // Entries a list holds, its own rows and those spilled to it (offsets checked above).
        let entries_in =
            |l: usize| (list_offsets[l + 1] - list_offsets[l]) as usize + spilled_in(l);
        let mut block_offsets = Vec::new();
        if pq_bits == 4 {
            let bb = fastscan::block_bytes(pq_m);
            let mut at = 0usize;
            block_offsets.reserve(nlist + 1);
            for l in 0..nlist {
                block_offsets.push(at);
                at = fastscan::blocks_for(entries_in(l))
                    .checked_mul(bb)
                    .and_then(|b| b.checked_add(at))
                    .ok_or_else(|| corrupted("code size overflows"))?;
            }
            block_offsets.push(at);
            expect("codes", codes.len(), Some(at))?;
        } else {
            expect("codes", codes.len(), n.checked_mul(pq_m))?;
        }
        let centroid_norms = centroids.chunks_exact(dim).map(distance::norm_sq).collect();
        let list_filled = (0..nlist).map(|l| entries_in(l) > 0).collect();
        let coarse = CoarseTable::new(&centroids, dim);
        let coarse8 = (nlist * dim * 4 >= COARSE8_FROM_BYTES)
            .then(|| Coarse8::new(&centroids, dim))
            .flatten();
        let mut precomputed = Vec::new();
        // Keep the tables only while they are small next to the codes (at most a quarter), so
        // that resident memory stays close to codes + ids + centroids.
        let table_bytes = nlist * pq_m * 16 * 4;
        if metric == Metric::L2 && pq_bits == 4 && table_bytes <= codes.len() / 4 {
            let per_list = pq_m * 16;
            precomputed = vec![0.0f32; nlist * per_list];
            precomputed
                .par_chunks_mut(per_list)
                .zip(centroids.par_chunks(dim))
                .for_each(|(out, c)| pq.residual_terms(c, out));
        }
        let mut code_terms = Vec::new();
        if metric == Metric::L2 && pq_bits == 8 && pq_m >= 8 {
            let per_vector: Vec<Vec<f32>> = (0..nlist)
                .into_par_iter()
                .map(|l| {
                    let (s, e) = (list_offsets[l] as usize, list_offsets[l + 1] as usize);
                    let mut table = vec![[0.0f32; 256]; pq_m];
                    pq.residual_terms(&centroids[l * dim..(l + 1) * dim], table.as_flattened_mut());
                    codes[s * pq_m..e * pq_m]
                        .chunks_exact(pq_m)
                        .map(|c| c.iter().zip(&table).map(|(&k, t)| t[k as usize]).sum())
                        .collect()
                })
                .collect();
            code_terms = per_vector.concat();
        }
        let spill_ids = spill_rows
            .iter()
            .map(|&r| ids.get(r as usize).copied().unwrap_or(u64::MAX))
            .collect();
        Ok(IvfPqIndex {
            dim,
            metric,
            nlist,
            n,
            pq,
            centroids,
            coarse,
            coarse8,
            centroid_norms,
            list_filled,
            list_offsets,
            spill_offsets,
            spill_rows,
            spill_ids,
            block_offsets,
            precomputed,
            code_terms,
            codes,
            ids,
            vectors,
            sq8: None,
            lists_of_rows: OnceLock::new(),
            simd: SimdLevel::detect(),
        })
    }

    /// The parts to store; [`IvfPqIndex::from_parts`] turns them back into the same index.
    pub fn to_parts(&self) -> IvfPqParts {
        IvfPqParts {
            meta: IvfPqMeta {
                version: LAYOUT_VERSION,
                dim: self.dim,
                metric: self.metric,
                nlist: self.nlist,
                pq_m: self.pq.m(),
                pq_bits: self.pq.bits(),
                n: self.n,
                spilled: self.spill_rows.len(),
            },
            centroids: self.centroids.clone(),
            codebooks: self.pq.codebooks().clone(),
            list_offsets: self.list_offsets.clone(),
            codes: self.codes.clone(),
            ids: self.ids.clone(),
            vectors: self.vectors.clone(),
            spill_offsets: self.spill_offsets.clone(),
            spill_rows: self.spill_rows.clone(),
        }
    }
}

/// Checks the spilled entries against the metadata: none in layout version 1 or with 8-bit
/// codes; otherwise `nlist + 1` offsets rising from 0 to `spilled`, and rows below `n`, each
/// spilled at most once (so a hit can reach the candidates at most twice, which the search's
/// de-duplication relies on).
fn check_spills(meta: &IvfPqMeta, offsets: &Slab<u64>, rows: &Slab<u32>) -> Result<(), IndexError> {
    if meta.spilled == 0 {
        return match offsets.is_empty() && rows.is_empty() {
            true => Ok(()),
            false => Err(corrupted("spilled entries stored but none declared")),
        };
    }
    if meta.version < 2 || meta.pq_bits != 4 {
        return Err(corrupted(
            "spilled entries need layout version 2 and 4-bit codes",
        ));
    }
    if offsets.len() != meta.nlist + 1
        || offsets[0] != 0
        || offsets.windows(2).any(|w| w[0] > w[1])
        || offsets[meta.nlist] != meta.spilled as u64
        || rows.len() != meta.spilled
    {
        return Err(corrupted(
            "spill offsets are not increasing from 0 to the spilled entries",
        ));
    }
    let mut seen = vec![false; meta.n];
    for &r in rows.iter() {
        match seen.get_mut(r as usize) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(corrupted(format!(
                    "spilled row {r} is out of range or repeated"
                )));
            }
        }
    }
    Ok(())
}
