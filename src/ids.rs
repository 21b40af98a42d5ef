//! Random identifiers for every request (interaction ids, trace and span ids), cheaply.
//!
//! Each thread keeps a small pool of bytes from the system CSPRNG (aws-lc, the same generator
//! that makes keys) and hands out slices of it, refilling the whole pool with one call when it
//! runs out. The ids stay unpredictable — every byte still comes from the CSPRNG and no byte is
//! handed out twice — while a request no longer pays a generator call (and its locking) per id.

use std::cell::RefCell;

/// 4 KiB: 128 requests' worth of ids (one UUID, one trace id, one span id each).
const POOL_BYTES: usize = 4096;

struct Pool {
    bytes: [u8; POOL_BYTES],
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL_BYTES], used: POOL_BYTES }) };
}

/// `N` fresh random bytes (`N` ≤ the pool size).
pub fn random<const N: usize>() -> [u8; N] {
    const { assert!(N <= POOL_BYTES) };
    POOL.with_borrow_mut(|pool| {
        if pool.used + N > POOL_BYTES {
            // aws-lc's RNG does not fail on Linux; if it ever did, fail loudly rather than
            // hand out predictable ids.
            aws_lc_rs::rand::fill(&mut pool.bytes).expect("system random generator failed");
            pool.used = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&pool.bytes[pool.used..pool.used + N]);
        // Never hand the same bytes out twice.
        pool.bytes[pool.used..pool.used + N].fill(0);
        pool.used += N;
        out
    })
}

/// A random (version 4, RFC 9562) UUID in its hyphenated lower-case form.
pub fn uuid_v4() -> String {
    uuid::Builder::from_random_bytes(random::<16>())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// `N` random bytes as `2N` lower-case hex digits (W3C trace and span ids).
pub fn random_hex<const N: usize>() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * N);
    for b in random::<N>() {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn uuids_are_version_4_and_distinct_across_refills() {
        let ids: HashSet<String> = (0..2000).map(|_| uuid_v4()).collect();
        assert_eq!(ids.len(), 2000);
        for id in ids.iter().take(50) {
            let parsed = uuid::Uuid::try_parse(id).expect("valid uuid");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(id.len(), 36);
        }
    }

    #[test]
    fn hex_ids_have_the_right_shape_and_vary() {
        let a = random_hex::<16>();
        let b = random_hex::<16>();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn pool_bytes_are_not_reused_across_a_refill() {
        // 3 × 4096 bytes drawn in 16-byte slices: no two slices are equal.
        let slices: HashSet<[u8; 16]> = (0..768).map(|_| random::<16>()).collect();
        assert_eq!(slices.len(), 768);
    }
}
