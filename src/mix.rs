//! MurmurHash3's 64-bit finalizer, which the filter's own hashes end with (revocation
//! fingerprints, index part stamps, the verified-token cache's map): every output bit depends
//! on every input bit, so weak low bits (FNV's, FxHash's) do not show.

/// `fmix64` from MurmurHash3. Stable: values that outlive a module (shared data) use it.
pub fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}
